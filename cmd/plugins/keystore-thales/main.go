// Command keystore-thales serves the Thales (PKCS#11) HSM keystore as an external OpenKCM CMK plugin:
// `keystore-thales management` serves KeystoreProvider, `keystore-thales operations` serves
// KeystoreInstanceKeyOperation. Both entries of a profile use the same name (THALES). The PKCS#11 module is loaded
// with cgo on the first call that needs the token; see docs/keystore-thales.md.
package main

import (
	"github.com/openkcm/plugin-sdk/api"
	managementv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/management/v1"
	operationsv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/operations/v1"
	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/host/pluginmain"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/thales"
)

func main() {
	pluginmain.ServeMode("keystore-thales", map[string]pluginmain.Mode{
		"management": func() (api.PluginServer, []api.ServiceServer) {
			m := thales.NewManagement()
			return managementv1.KeystoreProviderPluginServer(m), []api.ServiceServer{configv1.ConfigServiceServer(m)}
		},
		"operations": func() (api.PluginServer, []api.ServiceServer) {
			o := thales.NewOperations()
			return operationsv1.KeystoreInstanceKeyOperationPluginServer(o), []api.ServiceServer{configv1.ConfigServiceServer(o)}
		},
	})
}
