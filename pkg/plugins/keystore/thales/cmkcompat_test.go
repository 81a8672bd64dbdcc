package thales_test

import (
	"testing"

	"github.com/openkcm/plugin-sdk/pkg/catalog"

	"github.com/apeirora/apeiro-cmk/internal/testpeers/softhsm"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/cmkcompat"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/host"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/thales"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/plugintest"
)

// TestCMKCompat drives the THALES plugins the way a stock CMK does, against SoftHSM, in both load modes. NoBYOK:
// the keystore generates keys inside the HSM and does not import material (docs/keystore-thales.md).
func TestCMKCompat(t *testing.T) {
	tok := softhsm.Start(t, softhsm.Main)
	y := pluginYAML(tok)
	cmkcompat.RunKeystore(t, cmkcompat.Keystore{
		Name: "THALES",
		Management: plugintest.Spec{YAML: y, Package: binaryPkg, Args: []string{"management"},
			BuiltIn: func() catalog.BuiltInPlugin { return thales.NewManagementBuiltIn("THALES") }},
		Operations: plugintest.Spec{YAML: y, Package: binaryPkg, Args: []string{"operations"},
			BuiltIn: func() catalog.BuiltInPlugin { return thales.NewOperationsBuiltIn("THALES") }},
		Regions: []host.SupportedRegion{{Name: "HSM Frankfurt", TechnicalName: region}},
		NoBYOK:  true,
	})
}
