package static_test

import (
	"testing"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/plugintest"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/sis/contracttest"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/sis/static"
)

func TestMain(m *testing.M) { plugintest.Main(m) }

const contractYAML = `
resources:
  - type: region
    id: eu-central
    metadata: {audiences: "cmk, apeiro-webhook", displayName: EU Central}
  - type: region
    id: us-east
    metadata: {audiences: cmk}
  - type: tenant
    id: tenant-a
    parent: {type: region, id: eu-central}
  - type: system
    id: sys-billing
    parent: {type: tenant, id: tenant-a}
    metadata: {name: billing}
`

func TestContract(t *testing.T) {
	contracttest.Run(t, contracttest.Config{
		BuiltIn:                   static.NewBuiltIn,
		BinaryPackage:             "github.com/apeirora/apeiro-cmk/cmd/plugins/sis-static",
		ServedWithInputValidation: true,
		YAML:                      contractYAML,
		ConfigOptional:            true,
		InvalidYAMLMessage:        "sis static: invalid configuration",
		Fixtures: contracttest.Fixtures{
			Resources: []contracttest.Resource{
				{Type: "region", ID: "eu-central", Metadata: map[string]string{"displayName": "EU Central", static.KeyRegion: "eu-central"}},
				{Type: "tenant", ID: "tenant-a", Metadata: map[string]string{static.KeyRegion: "eu-central", static.KeyTenant: "tenant-a",
					static.KeyParentType: "region", static.KeyParentID: "eu-central"}},
				{Type: "system", ID: "sys-billing", Metadata: map[string]string{"name": "billing", static.KeyTenant: "tenant-a", static.KeyRegion: "eu-central"}},
			},
			Regions: []contracttest.Region{
				{ID: "eu-central", Audiences: []string{"cmk", "apeiro-webhook"}},
				{ID: "us-east", Audiences: []string{"cmk"}},
			},
		},
	})
}
