package static_test

import (
	"testing"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/identity/contracttest"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/identity/static"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/plugintest"
)

func TestMain(m *testing.M) { plugintest.Main(m) }

// The suite runs against a tenant-scoped directory: it exercises the
// AuthContext path CMK uses and shows that another tenant sees nothing.
const contractYAML = `
tenantKey: app_tid
tenants:
  tenant-a:
    users:
      - {id: u-alice, name: Alice, email: alice@example.org, groups: [g-admins, g-auditors]}
      - {id: u-bob, name: Bob, email: bob@example.org, groups: [g-admins]}
    groups:
      - {id: g-admins, name: KeyAdmins}
      - {id: g-auditors, name: Auditors}
  tenant-b:
    users:
      - {id: u-mallory, name: Mallory, groups: [g-b-admins]}
    groups:
      - {id: g-b-admins, name: KeyAdmins}
`

func TestContract(t *testing.T) {
	contracttest.Run(t, contracttest.Config{
		BuiltIn:            static.NewBuiltIn,
		BinaryPackage:      "github.com/apeirora/apeiro-cmk/cmd/plugins/identity-static",
		YAML:               contractYAML,
		ConfigOptional:     true,
		InvalidYAMLMessage: "identity static: invalid configuration",
		Fixtures: contracttest.Fixtures{
			AuthContext:        map[string]string{"app_tid": "tenant-a", "issuer": "https://idp.example", "client_id": "cmk"},
			OtherAuthContext:   map[string]string{"app_tid": "tenant-b", "issuer": "https://idp.example", "client_id": "cmk"},
			User:               contracttest.User{ID: "u-alice", Name: "Alice", Email: "alice@example.org"},
			Group:              contracttest.Group{ID: "g-admins", Name: "KeyAdmins"},
			UserGroups:         []string{"g-admins", "g-auditors"},
			GroupMembers:       []string{"u-alice", "u-bob"},
			AllGroups:          []string{"g-admins", "g-auditors"},
			StrictListNotFound: true,
		},
	})
}

// TestContractUnscoped runs the suite against a directory without tenant
// scoping, as most profiles configure it (builtin only: the external path is
// identical and covered above).
func TestContractUnscoped(t *testing.T) {
	contracttest.Run(t, contracttest.Config{
		BuiltIn:        static.NewBuiltIn,
		YAML:           "users: [{id: u-1, name: One, groups: [g-1]}]\ngroups: [{id: g-1, name: Ops}]",
		ConfigOptional: true,
		InvalidYAML:    "users: [{id: u-1, unknown: x}]",
		Fixtures: contracttest.Fixtures{
			User:               contracttest.User{ID: "u-1", Name: "One"},
			Group:              contracttest.Group{ID: "g-1", Name: "Ops"},
			UserGroups:         []string{"g-1"},
			GroupMembers:       []string{"u-1"},
			AllGroups:          []string{"g-1"},
			StrictListNotFound: true,
		},
	})
}
