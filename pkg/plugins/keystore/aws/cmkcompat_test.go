package aws_test

import (
	"testing"

	"github.com/openkcm/plugin-sdk/pkg/catalog"

	"github.com/apeirora/apeiro-cmk/internal/testpeers/moto"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/cmkcompat"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/host"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/aws"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/plugintest"
)

// TestCMKCompat drives the AWS plugins the way a stock CMK does, against moto, in both load modes. The BYOK import
// round trip is skipped (NoBYOK) only because moto 5.2 has no GetParametersForImport/ImportKeyMaterial; the plugin
// implements both and TestBYOK checks the exact shapes CMK exchanges against a fake KMS.
func TestCMKCompat(t *testing.T) {
	srv := moto.Start(t, moto.Options{})
	srv.Setenv(t)
	y := pluginYAML(srv)
	cmkcompat.RunKeystore(t, cmkcompat.Keystore{
		Name: "AWS",
		Management: plugintest.Spec{YAML: y, Package: binaryPkg, Args: []string{"management"},
			BuiltIn: func() catalog.BuiltInPlugin { return aws.NewManagementBuiltIn("AWS") }},
		Operations: plugintest.Spec{YAML: y, Package: binaryPkg, Args: []string{"operations"},
			BuiltIn: func() catalog.BuiltInPlugin { return aws.NewOperationsBuiltIn("AWS") }},
		Regions: []host.SupportedRegion{{Name: "Europe (Frankfurt)", TechnicalName: srv.Region}},
		NoBYOK:  true,
	})
}
