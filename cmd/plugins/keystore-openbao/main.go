// Command keystore-openbao serves the OpenBao transit keystore as an external OpenKCM CMK plugin:
// `keystore-openbao management` serves KeystoreProvider, `keystore-openbao operations` serves
// KeystoreInstanceKeyOperation. Both entries of a profile use the same name (OPENBAO). The process logs in to
// OpenBao with Kubernetes, AppRole or cert auth and holds no long-lived token; see docs/keystore-openbao.md.
package main

import (
	"github.com/openkcm/plugin-sdk/api"
	managementv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/management/v1"
	operationsv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/operations/v1"
	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/host/pluginmain"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/openbao"
)

func main() {
	pluginmain.ServeMode("keystore-openbao", map[string]pluginmain.Mode{
		"management": func() (api.PluginServer, []api.ServiceServer) {
			m := openbao.NewManagement()
			return managementv1.KeystoreProviderPluginServer(m), []api.ServiceServer{configv1.ConfigServiceServer(m)}
		},
		"operations": func() (api.PluginServer, []api.ServiceServer) {
			o := openbao.NewOperations()
			return operationsv1.KeystoreInstanceKeyOperationPluginServer(o), []api.ServiceServer{configv1.ConfigServiceServer(o)}
		},
	})
}
