// Command keystore-aws serves the AWS KMS keystore (IRSA only) as an external OpenKCM CMK plugin:
// `keystore-aws management` serves KeystoreProvider, `keystore-aws operations` serves KeystoreInstanceKeyOperation.
// Both entries of a profile use the same name (AWS). The process authenticates with the pod's web identity
// (AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE) and refuses static AWS keys; see docs/keystore-aws.md.
package main

import (
	"github.com/openkcm/plugin-sdk/api"
	managementv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/management/v1"
	operationsv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/operations/v1"
	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/host/pluginmain"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/aws"
)

func main() {
	pluginmain.ServeMode("keystore-aws", map[string]pluginmain.Mode{
		"management": func() (api.PluginServer, []api.ServiceServer) {
			m := aws.NewManagement()
			return managementv1.KeystoreProviderPluginServer(m), []api.ServiceServer{configv1.ConfigServiceServer(m)}
		},
		"operations": func() (api.PluginServer, []api.ServiceServer) {
			o := aws.NewOperations()
			return operationsv1.KeystoreInstanceKeyOperationPluginServer(o), []api.ServiceServer{configv1.ConfigServiceServer(o)}
		},
	})
}
