package thales_test

import (
	"fmt"
	"os"
	"testing"

	"google.golang.org/protobuf/types/known/structpb"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"

	"github.com/apeirora/apeiro-cmk/internal/testpeers/softhsm"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/host"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/contracttest"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/thales"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/plugintest"
	operationsv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/operations/v1"
)

func TestMain(m *testing.M) {
	code := m.Run()
	plugintest.Cleanup()
	softhsm.Cleanup()
	os.Exit(code)
}

const (
	binaryPkg = "github.com/apeirora/apeiro-cmk/cmd/plugins/keystore-thales"
	region    = "eu-hsm-1"
)

// pluginYAML configures the plugins for a SoftHSM token: the PIN comes from the token's PIN file.
func pluginYAML(tok *softhsm.Token) string {
	return fmt.Sprintf("module: %s\ntokens:\n  - label: %s\n    pin: {source: file, file: {path: %s}}\nregion: %s\n", tok.Module, tok.Label, tok.PINFile, region)
}

func contractConfig(tok *softhsm.Token) contracttest.Config {
	y := pluginYAML(tok)
	return contracttest.Config{
		Name:                    "THALES",
		ManagementBuiltIn:       thales.NewManagementBuiltIn,
		OperationsBuiltIn:       thales.NewOperationsBuiltIn,
		ManagementPackage:       binaryPkg,
		OperationsPackage:       binaryPkg,
		ManagementArgs:          []string{"management"},
		OperationsArgs:          []string{"operations"},
		ManagementYAML:          y,
		OperationsYAML:          y,
		ConfigOptional:          true,
		InvalidYAMLMessage:      "invalid thales keystore configuration",
		SupportedRegions:        []host.SupportedRegion{{Name: "HSM Frankfurt", TechnicalName: region}},
		ReportsSupportedRegions: true,
		Algorithms:              []operationsv1.KeyAlgorithm{operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256},
		CryptoAccessData: func(keyAccess *structpb.Struct, _ string) map[string]any {
			return map[string]any{thales.FieldTenant: keyAccess.GetFields()[thales.FieldTenant].GetStringValue()}
		},
	}
}

func TestContractManagement(t *testing.T) {
	contracttest.RunManagement(t, contractConfig(softhsm.Start(t, softhsm.Main)))
}

func TestContractOperations(t *testing.T) {
	contracttest.RunOperations(t, contractConfig(softhsm.Start(t, softhsm.Main)))
}

func account(tenant string) *cmkv1.Account {
	return &cmkv1.Account{ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: "main", Labels: map[string]string{cmkv1.TenantLabel: tenant}}}
}
