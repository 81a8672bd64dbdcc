// Command keystore-local serves the local software keystore as an external
// OpenKCM CMK plugin: `keystore-local management` serves KeystoreProvider,
// `keystore-local operations` serves KeystoreInstanceKeyOperation. Both
// entries of a profile use the same name (LOCAL) and, to share keystore
// instances, the same `dir:` or `secret:` in their yamlConfiguration.
package main

import (
	"github.com/openkcm/plugin-sdk/api"
	managementv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/management/v1"
	operationsv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/operations/v1"
	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/host/pluginmain"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/local"
)

func main() {
	pluginmain.ServeMode("keystore-local", map[string]pluginmain.Mode{
		"management": func() (api.PluginServer, []api.ServiceServer) {
			m := local.NewManagement()
			return managementv1.KeystoreProviderPluginServer(m), []api.ServiceServer{configv1.ConfigServiceServer(m)}
		},
		"operations": func() (api.PluginServer, []api.ServiceServer) {
			o := local.NewOperations()
			return operationsv1.KeystoreInstanceKeyOperationPluginServer(o), []api.ServiceServer{configv1.ConfigServiceServer(o)}
		},
	})
}
