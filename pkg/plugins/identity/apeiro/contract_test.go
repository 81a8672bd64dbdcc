package apeiro

import (
	"testing"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/identity/contracttest"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/plugintest"
)

func TestMain(m *testing.M) { plugintest.Main(m) }

// TestContract runs the identity contract suite in both load modes against the fake directory (Keycloak response
// shapes from testdata/keycloak): realm per tenant, workspace roles as groups.
func TestContract(t *testing.T) {
	kc := newFakeKeycloak(t)
	contracttest.Run(t, contracttest.Config{
		BuiltIn:            NewBuiltIn,
		BinaryPackage:      "github.com/apeirora/apeiro-cmk/cmd/plugins/identity-apeiro",
		YAML:               kc.yaml(""),
		ConfigOptional:     true,
		InvalidYAMLMessage: "identity apeiro: invalid configuration",
		Fixtures: contracttest.Fixtures{
			AuthContext:        map[string]string{"app_tid": "tenant-a", "issuer": "https://idp.example", "client_id": "cmk"},
			OtherAuthContext:   map[string]string{"app_tid": "tenant-b", "issuer": "https://idp.example", "client_id": "cmk"},
			User:               contracttest.User{ID: aliceID, Name: "Alice Liddell", Email: "alice@acme.example"},
			Group:              contracttest.Group{ID: adminGroupID, Name: "Admin"},
			UserGroups:         []string{adminGroupID, viewerGroupID},
			GroupMembers:       []string{aliceID, bobID},
			AllGroups:          []string{adminGroupID, viewerGroupID, memberGroupID},
			StrictListNotFound: true,
		},
	})
}
