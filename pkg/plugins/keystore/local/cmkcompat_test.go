package local_test

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/openkcm/plugin-sdk/pkg/catalog"
	commonv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/common/v1"
	managementv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/management/v1"
	operationsv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/operations/v1"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/cmkcompat"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/host"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/local"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/plugintest"
)

// TestCMKCompat runs the CMK-compatibility suite against the local keystore
// as the profile configures it (both plugins on one directory), for an AES
// key (BYOK via CKM_RSA_PKCS_OAEP) and an RSA key (CKM_RSA_AES_KEY_WRAP).
func TestCMKCompat(t *testing.T) {
	for _, alg := range []operationsv1.KeyAlgorithm{
		operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256,
		operationsv1.KeyAlgorithm_KEY_ALGORITHM_RSA3072,
	} {
		t.Run(alg.String(), func(t *testing.T) {
			yaml := "dir: " + t.TempDir() + "\n"
			cmkcompat.RunKeystore(t, cmkcompat.Keystore{
				Name: "LOCAL",
				Management: plugintest.Spec{
					// A top-level key a future CMK may merge in must not fail the load.
					YAML: yaml + "futureCMKSetting: {enabled: true}\n", BuiltIn: func() catalog.BuiltInPlugin { return local.NewManagementBuiltIn("LOCAL") },
					Package: binaryPkg, Args: []string{"management"},
				},
				Operations: plugintest.Spec{
					YAML: yaml, BuiltIn: func() catalog.BuiltInPlugin { return local.NewOperationsBuiltIn("LOCAL") },
					Package: binaryPkg, Args: []string{"operations"},
				},
				Regions: []host.SupportedRegion{
					{Name: "Europe (Frankfurt)", TechnicalName: "eu-central-1"},
					{Name: "US East", TechnicalName: "us-east-1"},
				},
				Algorithm: alg,
			})
		})
	}
}

// CMK uses the access data of a MANAGEMENT trust for key operations when a
// keystore comes without a key-management locality; it must authenticate.
// CRYPTO trust access data must not.
func TestManagementTrustAuthenticatesKeyOperations(t *testing.T) {
	ctx := t.Context()
	m, o, _, role := pair(t, "")
	cfg := &commonv1.KeystoreInstanceConfig{Values: role}
	mt, err := m.GrantTrust(ctx, &managementv1.GrantTrustRequest{Config: cfg, Subject: "CN=tenant", Type: managementv1.TrustType_TRUST_TYPE_MANAGEMENT})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.CreateKey(ctx, &operationsv1.CreateKeyRequest{Config: &commonv1.KeystoreInstanceConfig{Values: mt.GetAccessData()},
		Algorithm: operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256, KeyType: operationsv1.KeyType_KEY_TYPE_SYSTEM_MANAGED}); err != nil {
		t.Fatalf("CreateKey with MANAGEMENT trust access data: %v", err)
	}
	ct, err := m.GrantTrust(ctx, &managementv1.GrantTrustRequest{Config: cfg, Subject: "CN=crypto", Type: managementv1.TrustType_TRUST_TYPE_CRYPTO})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.CreateKey(ctx, &operationsv1.CreateKeyRequest{Config: &commonv1.KeystoreInstanceConfig{Values: ct.GetAccessData()},
		Algorithm: operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256, KeyType: operationsv1.KeyType_KEY_TYPE_SYSTEM_MANAGED}); err == nil {
		t.Fatal("CRYPTO trust access data authenticated key management")
	}
}

// ImportKeyMaterial refuses what CMK would never send, with a clear
// InvalidArgument, and keeps the key waiting for a valid import.
func TestImportKeyMaterialBadProviderParams(t *testing.T) {
	ctx := t.Context()
	_, o, access, _ := pair(t, "")
	id := create(t, o, access, operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256, operationsv1.KeyType_KEY_TYPE_BYOK)
	ip, err := o.GetImportParameters(ctx, &operationsv1.GetImportParametersRequest{Parameters: rp(access, id)})
	if err != nil {
		t.Fatal(err)
	}
	wrapped, err := local.WrapKeyMaterial(ip.GetImportParameters(), make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	for name, params := range map[string]map[string]any{
		"missing":         {},
		"not a string":    {local.ImportProviderParams: map[string]any{"importToken": "x"}},
		"not ours":        {local.ImportProviderParams: "opaque"},
		"wrong version":   {local.ImportProviderParams: `{"v":2,"importToken":"x"}`},
		"wrong token":     {local.ImportProviderParams: `{"v":1,"importToken":"00"}`},
		"wrong algorithm": {local.ImportProviderParams: ip.GetImportParameters().GetFields()[local.ImportProviderParams].GetStringValue(), local.ImportAlgorithm: "KEY_ALGORITHM_RSA3072"},
		"too long":        {local.ImportProviderParams: strings.Repeat("x", 2048)},
	} {
		s, _ := structpb.NewStruct(params)
		_, err := o.ImportKeyMaterial(ctx, &operationsv1.ImportKeyMaterialRequest{Parameters: rp(access, id), ImportParameters: s, EncryptedKeyMaterial: wrapped})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v, want InvalidArgument", name, err)
		}
	}
	// Nothing was lost: the real parameters still import.
	if _, err := o.ImportKeyMaterial(ctx, &operationsv1.ImportKeyMaterialRequest{Parameters: rp(access, id),
		ImportParameters: ip.GetImportParameters(), EncryptedKeyMaterial: wrapped}); err != nil {
		t.Fatalf("valid import after refused ones: %v", err)
	}
}
