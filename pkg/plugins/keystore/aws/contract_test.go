package aws_test

import (
	"fmt"
	"testing"

	"google.golang.org/protobuf/types/known/structpb"

	operationsv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/operations/v1"

	"github.com/apeirora/apeiro-cmk/internal/testpeers/moto"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/host"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/aws"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/contracttest"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/plugintest"
)

func TestMain(m *testing.M) { plugintest.Main(m) }

const binaryPkg = "github.com/apeirora/apeiro-cmk/cmd/plugins/keystore-aws"

// pluginYAML points the plugin at moto explicitly (webIdentity + endpoints), so the external plugin processes need
// no AWS environment.
func pluginYAML(srv *moto.Server) string {
	return fmt.Sprintf("region: %s\nwebIdentity: {roleArn: %q, tokenFile: %q, sessionName: %q}\nendpoints: {sts: %q, kms: %q, iam: %q}\n",
		srv.Region, srv.PlatformRoleARN, srv.TokenFile, moto.SessionName, srv.Endpoint, srv.Endpoint, srv.Endpoint)
}

func contractConfig(srv *moto.Server) contracttest.Config {
	y := pluginYAML(srv)
	return contracttest.Config{
		Name:                    "AWS",
		ManagementBuiltIn:       aws.NewManagementBuiltIn,
		OperationsBuiltIn:       aws.NewOperationsBuiltIn,
		ManagementPackage:       binaryPkg,
		OperationsPackage:       binaryPkg,
		ManagementArgs:          []string{"management"},
		OperationsArgs:          []string{"operations"},
		ManagementYAML:          y,
		OperationsYAML:          y,
		ConfigOptional:          true,
		InvalidYAMLMessage:      "invalid aws keystore configuration",
		SupportedRegions:        []host.SupportedRegion{{Name: "Europe (Frankfurt)", TechnicalName: srv.Region}},
		ReportsSupportedRegions: true,
		Algorithms: []operationsv1.KeyAlgorithm{
			operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256,
			operationsv1.KeyAlgorithm_KEY_ALGORITHM_RSA3072,
		},
		// moto 5.2 implements neither GetParametersForImport nor ImportKeyMaterial: the BYOK flow is covered by
		// unit tests against a fake KMS (byok_test.go), not by the suite.
		WrapKeyMaterial: nil,
		CryptoAccessData: func(keyAccess *structpb.Struct, _ string) map[string]any {
			f := keyAccess.GetFields()
			return map[string]any{aws.FieldRoleARN: f[aws.FieldRoleARN].GetStringValue(), aws.FieldTenant: f[aws.FieldTenant].GetStringValue()}
		},
		// The credential of IRSA access data is the (tenant, role) binding: naming the keystore's role as another
		// tenant must be refused with StatusProviderAuthenticationError.
		BreakAccessData: func(valid *structpb.Struct) *structpb.Struct {
			m := valid.AsMap()
			m[aws.FieldTenant] = "intruder"
			out, _ := structpb.NewStruct(m)
			return out
		},
		DeletionWindowDays: 7,
	}
}

func TestContractManagement(t *testing.T) {
	srv := moto.Start(t, moto.Options{})
	srv.Setenv(t)
	contracttest.RunManagement(t, contractConfig(srv))
}

func TestContractOperations(t *testing.T) {
	srv := moto.Start(t, moto.Options{})
	srv.Setenv(t)
	contracttest.RunOperations(t, contractConfig(srv))
}
