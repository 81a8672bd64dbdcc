// Command identity-apeiro serves the Apeiro IdentityManagementService plugin (package
// pkg/plugins/identity/apeiro: Platform Mesh directory users, workspace roles as groups) as an external OpenKCM
// plugin:
//
//	plugins:
//	  - name: APEIRO_IDENTITY
//	    type: IdentityManagementService
//	    path: /etc/plugins/identity-management/identity-apeiro
//	    yamlConfiguration: |
//	      tenantKey: app_tid
//	      directory:
//	        url: https://keycloak.example.org
//	        clientID: cmk-directory
//	        clientSecret: {source: env, env: KEYCLOAK_CLIENT_SECRET}
package main

import (
	idmv1 "github.com/openkcm/plugin-sdk/proto/plugin/identity_management/v1"
	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/host/pluginmain"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/identity/apeiro"
)

func main() {
	p := apeiro.New()
	pluginmain.Serve(idmv1.IdentityManagementServicePluginServer(p), configv1.ConfigServiceServer(p))
}
