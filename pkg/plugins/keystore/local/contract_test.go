package local_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"testing"

	"google.golang.org/protobuf/types/known/structpb"

	operationsv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/operations/v1"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/host"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/contracttest"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/local"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/plugintest"
)

func TestMain(m *testing.M) { plugintest.Main(m) }

const binaryPkg = "github.com/apeirora/apeiro-cmk/cmd/plugins/keystore-local"

// sharedSecret makes the access data minted by the management plugin valid
// for the operations plugin even though each runs with its own memory store
// (and, in external mode, in its own process).
const sharedSecret = "secret: {source: embedded, value: contract-suite-secret-0123456789}\n"

func contractConfig() contracttest.Config {
	return contracttest.Config{
		Name:               "LOCAL",
		ManagementBuiltIn:  local.NewManagementBuiltIn,
		OperationsBuiltIn:  local.NewOperationsBuiltIn,
		ManagementPackage:  binaryPkg,
		OperationsPackage:  binaryPkg,
		ManagementArgs:     []string{"management"},
		OperationsArgs:     []string{"operations"},
		ManagementYAML:     sharedSecret,
		OperationsYAML:     sharedSecret + "regions: [eu-central-1, eu-central-1-second, us-east-1]\n",
		ConfigOptional:     true,
		InvalidYAMLMessage: "invalid local keystore configuration",
		SupportedRegions: []host.SupportedRegion{
			{Name: "Europe (Frankfurt)", TechnicalName: "eu-central-1"},
			{Name: "US East", TechnicalName: "us-east-1"},
		},
		ReportsSupportedRegions: true,
		Algorithms: []operationsv1.KeyAlgorithm{
			operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256,
			operationsv1.KeyAlgorithm_KEY_ALGORITHM_RSA3072,
		},
		WrapKeyMaterial: wrap,
		CryptoAccessData: func(keyAccess *structpb.Struct, _ string) map[string]any {
			return map[string]any{local.FieldInstanceID: keyAccess.GetFields()[local.FieldInstanceID].GetStringValue()}
		},
	}
}

func wrap(params *structpb.Struct, alg operationsv1.KeyAlgorithm) (string, error) {
	var material []byte
	switch alg {
	case operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256:
		material = make([]byte, 32)
		_, _ = rand.Read(material)
	default:
		bits := 3072
		if alg == operationsv1.KeyAlgorithm_KEY_ALGORITHM_RSA4096 {
			bits = 4096
		}
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			return "", err
		}
		if material, err = x509.MarshalPKCS8PrivateKey(k); err != nil {
			return "", err
		}
	}
	return local.WrapKeyMaterial(params, material)
}

func TestContractManagement(t *testing.T) { contracttest.RunManagement(t, contractConfig()) }

func TestContractOperations(t *testing.T) { contracttest.RunOperations(t, contractConfig()) }
