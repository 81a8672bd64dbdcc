package resourcegraph_test

import (
	"testing"

	"github.com/apeirora/apeiro-cmk/pkg/kcp/kcpserver"
	"github.com/apeirora/apeiro-cmk/pkg/kcp/kcptest"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/plugintest"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/sis/contracttest"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/sis/resourcegraph"
)

func TestMain(m *testing.M) { plugintest.Main(m) }

// TestContractKCP runs the SystemInformationService contract suite, builtin and as an external process, against a
// real kcp holding the standard fixture (pkg/kcp/kcptest).
func TestContractKCP(t *testing.T) {
	s := kcptest.Start(t)
	w := kcptest.NewWorld(t, s)
	contracttest.Run(t, contracttest.Config{
		Name:                      resourcegraph.BuiltinName,
		BuiltIn:                   resourcegraph.NewBuiltIn,
		BinaryPackage:             "github.com/apeirora/apeiro-cmk/cmd/plugins/sis-resourcegraph",
		ServedWithInputValidation: true,
		YAML:                      "kubeconfig: " + s.Kubeconfig + "\ncontext: " + kcpserver.AdminContext + "\nsyncTimeout: 30s\n",
		InvalidYAMLMessage:        "sis resourcegraph: invalid configuration",
		Fixtures: contracttest.Fixtures{
			Resources: []contracttest.Resource{
				{Type: "tenant", ID: "acme.eu", Metadata: map[string]string{"tenantType": "Nested", "parent": "acme", "workspace": w.AcmeEU}},
				{Type: "tenant", ID: "acme-dr", Metadata: map[string]string{"tenantType": "Shadow", "shadowOf": "acme"}},
				{Type: "workspace", ID: w.Acme, Metadata: map[string]string{"tenant": "acme", "phase": "Ready"}},
				{Type: "account", ID: w.Globex + "/keys/main", Metadata: map[string]string{"tenant": "globex", "namespace": "keys"}},
				{Type: "region", ID: "us-east", Metadata: map[string]string{"region": "us-east"}},
			},
			Regions: []contracttest.Region{{ID: "eu-central", Audiences: []string{"cmk", "apeiro-webhook"}}},
		},
	})
}
