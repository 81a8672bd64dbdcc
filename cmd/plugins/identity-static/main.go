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
	"fmt"
	"os"

	"github.com/openkcm/plugin-sdk/pkg/plugin"
	identity_managementv1 "github.com/openkcm/plugin-sdk/proto/plugin/identity_management/v1"
	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"

	pluginoption "github.com/openkcm/plugin-sdk/api/plugin-option"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/identity/static"
)

func main() {
	p := static.New()
	if err := plugin.ServeOptions(
		pluginoption.WithPluginServer(identity_managementv1.IdentityManagementServicePluginServer(p)),
		pluginoption.WithServiceServer(configv1.ConfigServiceServer(p)),
		pluginoption.EnableInputValidation(),
	); err != nil {
		fmt.Fprintf(os.Stderr, "identity-static: %v\n", err)
		os.Exit(1)
	}
}
