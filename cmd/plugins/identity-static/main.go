// Command identity-static serves the static-directory IdentityManagementService
// plugin (package pkg/plugins/identity/static) as an external OpenKCM plugin:
//
//	plugins:
//	  - name: APEIRO_IDENTITY
//	    type: IdentityManagementService
//	    path: /etc/plugins/identity-management/identity-static
//	    yamlConfiguration: |
//	      users: [{id: u-1, name: Alice, email: alice@example.org, groups: [g-admins]}]
//	      groups: [{id: g-admins, name: KeyAdmins}]
package main

import (
	identity_managementv1 "github.com/openkcm/plugin-sdk/proto/plugin/identity_management/v1"
	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/host/pluginmain"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/identity/static"
)

func main() {
	p := static.New()
	pluginmain.Serve(identity_managementv1.IdentityManagementServicePluginServer(p), configv1.ConfigServiceServer(p))
}
