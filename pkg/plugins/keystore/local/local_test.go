package local_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	kserrors "github.com/openkcm/plugin-sdk/pkg/plugin/keystore/errors"
	commonv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/common/v1"
	managementv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/management/v1"
	operationsv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/operations/v1"
	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/local"
)

// pair returns a management and an operations plugin configured with yaml
// and the key-management access data of a fresh keystore.
func pair(t *testing.T, yaml string) (*local.Management, *local.Operations, *structpb.Struct, *structpb.Struct) {
	t.Helper()
	ctx := context.Background()
	if !strings.Contains(yaml, "dir:") {
		// Without a shared dir the two plugins need a shared secret.
		yaml = "secret: {source: embedded, value: unit-test-secret-0123456789}\n" + yaml
	}
	m, o := local.NewManagement(), local.NewOperations()
	for _, c := range []configv1.ConfigServer{m, o} {
		if _, err := c.Configure(ctx, &configv1.ConfigureRequest{YamlConfiguration: yaml}); err != nil {
			t.Fatal(err)
		}
	}
	ks, err := m.CreateKeystore(ctx, &managementv1.CreateKeystoreRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return m, o, ks.GetKeyManagementConfig().GetAccessData().GetValues(), ks.GetRoleManagementConfig().GetAccessData().GetValues()
}

func rp(access *structpb.Struct, id string) *operationsv1.RequestParameters {
	return &operationsv1.RequestParameters{Config: &commonv1.KeystoreInstanceConfig{Values: access}, KeyId: id}
}

func create(t *testing.T, o *local.Operations, access *structpb.Struct, alg operationsv1.KeyAlgorithm, kt operationsv1.KeyType) string {
	t.Helper()
	r, err := o.CreateKey(context.Background(), &operationsv1.CreateKeyRequest{
		Config: &commonv1.KeystoreInstanceConfig{Values: access}, Algorithm: alg, KeyType: kt,
	})
	if err != nil {
		t.Fatal(err)
	}
	return r.GetKeyId()
}

func TestEncryptDecryptAcrossRotation(t *testing.T) {
	ctx := context.Background()
	_, o, access, _ := pair(t, "")
	id := create(t, o, access, operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256, operationsv1.KeyType_KEY_TYPE_SYSTEM_MANAGED)

	ct1, err := o.Encrypt(ctx, rp(access, id), []byte("hello"), []byte("tenant-a"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(ct1, []byte("LKS1\x011")) {
		t.Fatalf("ciphertext header should name version 1: %q", ct1[:6])
	}
	v2, err := o.RotateKey(ctx, rp(access, id))
	if err != nil || v2 != "2" {
		t.Fatalf("RotateKey = %q, %v", v2, err)
	}
	ct2, err := o.Encrypt(ctx, rp(access, id), []byte("world"), nil)
	if err != nil || !bytes.HasPrefix(ct2, []byte("LKS1\x012")) {
		t.Fatalf("Encrypt after rotation: %v", err)
	}
	for ct, want := range map[string]string{string(ct1): "hello", string(ct2): "world"} {
		aad := []byte(nil)
		if want == "hello" {
			aad = []byte("tenant-a")
		}
		pt, err := o.Decrypt(ctx, rp(access, id), []byte(ct), aad)
		if err != nil || string(pt) != want {
			t.Fatalf("Decrypt = %q, %v; want %q", pt, err, want)
		}
	}
	if _, err := o.Decrypt(ctx, rp(access, id), ct1, []byte("tenant-b")); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("wrong AAD: %v", err)
	}
	tampered := append([]byte(nil), ct1...)
	tampered[len(tampered)-1] ^= 1
	if _, err := o.Decrypt(ctx, rp(access, id), tampered, []byte("tenant-a")); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("tampered ciphertext: %v", err)
	}

	vs, err := o.GetKeyVersions(ctx, &local.GetKeyVersionsRequest{Parameters: rp(access, id)})
	if err != nil || len(vs.GetVersions()) != 2 || vs.GetVersions()[1].GetVersionId() != "2" ||
		vs.GetVersions()[0].GetStatus() != local.StateEnabled || vs.GetVersions()[0].GetCreationTime() == nil {
		t.Fatalf("GetKeyVersions = %+v, %v", vs, err)
	}
	k, _ := o.GetKey(ctx, &operationsv1.GetKeyRequest{Parameters: rp(access, id)})
	if k.GetLatestKeyVersionId() != "2" || k.LatestRotationTime == nil {
		t.Fatalf("GetKey latest version = %v", k)
	}

	if _, err := o.DisableKey(ctx, &operationsv1.DisableKeyRequest{Parameters: rp(access, id)}); err != nil {
		t.Fatal(err)
	}
	if _, err := o.Decrypt(ctx, rp(access, id), ct1, []byte("tenant-a")); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("decrypt with disabled key: %v", err)
	}
	vs, _ = o.GetKeyVersions(ctx, &local.GetKeyVersionsRequest{Parameters: rp(access, id)})
	if vs.GetVersions()[0].GetStatus() != local.StateDisabled {
		t.Fatalf("versions of a disabled key: %+v", vs.GetVersions()[0])
	}
	_, err = o.GetKeyVersions(ctx, &local.GetKeyVersionsRequest{Parameters: rp(access, "nope")})
	if !kserrors.IsStatus(err, kserrors.StatusKeyNotFound) {
		t.Fatalf("GetKeyVersions of missing key: %v", err)
	}

	rsaID := create(t, o, access, operationsv1.KeyAlgorithm_KEY_ALGORITHM_RSA3072, operationsv1.KeyType_KEY_TYPE_SYSTEM_MANAGED)
	if _, err := o.Encrypt(ctx, rp(access, rsaID), []byte("x"), nil); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("Encrypt with RSA key: %v", err)
	}
}

func TestDirectoryStoreSharedByBothPlugins(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	m, o, access, role := pair(t, "dir: "+dir+"\n")
	id := create(t, o, access, operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256, operationsv1.KeyType_KEY_TYPE_SYSTEM_MANAGED)
	ct, err := o.Encrypt(ctx, rp(access, id), []byte("persisted"), nil)
	if err != nil {
		t.Fatal(err)
	}

	// Every file is 0600 and no temp files are left behind.
	err = filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if !info.IsDir() && info.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", p, info.Mode().Perm())
		}
		if strings.HasPrefix(info.Name(), ".tmp-") {
			t.Errorf("leftover temp file %s", p)
		}
		if !info.IsDir() && bytes.Contains(mustRead(t, p), []byte("persisted")) {
			t.Errorf("%s contains plaintext", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// A new plugin on the same directory (a restart) reads the key.
	o2 := local.NewOperations()
	if _, err := o2.Configure(ctx, &configv1.ConfigureRequest{YamlConfiguration: "dir: " + dir}); err != nil {
		t.Fatal(err)
	}
	if pt, err := o2.Decrypt(ctx, rp(access, id), ct, nil); err != nil || string(pt) != "persisted" {
		t.Fatalf("after restart: %q, %v", pt, err)
	}

	// Deleting the keystore revokes its access data for operations.
	if _, err := m.DeleteKeystore(ctx, &managementv1.DeleteKeystoreRequest{Config: &commonv1.KeystoreInstanceConfig{Values: role}}); err != nil {
		t.Fatal(err)
	}
	_, err = o2.GetKey(ctx, &operationsv1.GetKeyRequest{Parameters: rp(access, id)})
	if !kserrors.IsStatus(err, kserrors.StatusProviderAuthenticationError) {
		t.Fatalf("after DeleteKeystore: %v", err)
	}
}

func mustRead(t *testing.T, p string) []byte {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDeletionWindow(t *testing.T) {
	ctx := context.Background()
	_, o, access, _ := pair(t, "defaultDeletionWindowDays: 0\n")
	id := create(t, o, access, operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256, operationsv1.KeyType_KEY_TYPE_SYSTEM_MANAGED)
	if _, err := o.DeleteKey(ctx, &operationsv1.DeleteKeyRequest{Parameters: rp(access, id)}); err != nil {
		t.Fatal(err)
	}
	if _, err := o.GetKey(ctx, &operationsv1.GetKeyRequest{Parameters: rp(access, id)}); !kserrors.IsStatus(err, kserrors.StatusKeyNotFound) {
		t.Fatalf("window 0 should delete at once: %v", err)
	}
	id = create(t, o, access, operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256, operationsv1.KeyType_KEY_TYPE_SYSTEM_MANAGED)
	w := int32(31)
	if _, err := o.DeleteKey(ctx, &operationsv1.DeleteKeyRequest{Parameters: rp(access, id), Window: &w}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("window 31: %v", err)
	}
	w = 7
	if _, err := o.DeleteKey(ctx, &operationsv1.DeleteKeyRequest{Parameters: rp(access, id), Window: &w}); err != nil {
		t.Fatal(err)
	}
	k, err := o.GetKey(ctx, &operationsv1.GetKeyRequest{Parameters: rp(access, id)})
	if err != nil || k.GetStatus() != local.StatePendingDeletion {
		t.Fatalf("pending deletion: %v %v", k, err)
	}
	if _, err := o.EnableKey(ctx, &operationsv1.EnableKeyRequest{Parameters: rp(access, id)}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("enable pending deletion: %v", err)
	}
}

func TestBYOKImportRSA4096AndChecks(t *testing.T) {
	ctx := context.Background()
	_, o, access, _ := pair(t, "")
	id := create(t, o, access, operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256, operationsv1.KeyType_KEY_TYPE_BYOK)
	k, _ := o.GetKey(ctx, &operationsv1.GetKeyRequest{Parameters: rp(access, id)})
	if k.GetStatus() != local.StatePendingImport || k.GetLatestKeyVersionId() != "" {
		t.Fatalf("new BYOK key: %v", k)
	}
	if _, err := o.Encrypt(ctx, rp(access, id), []byte("x"), nil); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("encrypt before import: %v", err)
	}
	ip, err := o.GetImportParameters(ctx, &operationsv1.GetImportParametersRequest{Parameters: rp(access, id)})
	if err != nil {
		t.Fatal(err)
	}
	if ip.GetImportParameters().GetFields()[local.ImportWrappingAlgorithm].GetStringValue() != local.WrapRSAPKCSOAEP {
		t.Fatalf("import parameters: %v", ip)
	}
	short, _ := local.WrapKeyMaterial(ip.GetImportParameters(), make([]byte, 16))
	_, err = o.ImportKeyMaterial(ctx, &operationsv1.ImportKeyMaterialRequest{Parameters: rp(access, id), ImportParameters: ip.GetImportParameters(), EncryptedKeyMaterial: short})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("16-byte AES material: %v", err)
	}
	material := make([]byte, 32)
	_, _ = rand.Read(material)
	wrapped, _ := local.WrapKeyMaterial(ip.GetImportParameters(), material)
	if _, err := o.ImportKeyMaterial(ctx, &operationsv1.ImportKeyMaterialRequest{Parameters: rp(access, id), ImportParameters: ip.GetImportParameters(), EncryptedKeyMaterial: wrapped}); err != nil {
		t.Fatal(err)
	}
	// The token is single-use.
	if _, err := o.ImportKeyMaterial(ctx, &operationsv1.ImportKeyMaterialRequest{Parameters: rp(access, id), ImportParameters: ip.GetImportParameters(), EncryptedKeyMaterial: wrapped}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("reused import token: %v", err)
	}
	ct, err := o.Encrypt(ctx, rp(access, id), []byte("byok"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := o.Decrypt(ctx, rp(access, id), ct, nil); err != nil || string(pt) != "byok" {
		t.Fatalf("%q %v", pt, err)
	}

	rsaID := create(t, o, access, operationsv1.KeyAlgorithm_KEY_ALGORITHM_RSA4096, operationsv1.KeyType_KEY_TYPE_BYOK)
	ip, err = o.GetImportParameters(ctx, &operationsv1.GetImportParametersRequest{Parameters: rp(access, rsaID), Algorithm: operationsv1.KeyAlgorithm_KEY_ALGORITHM_RSA4096})
	if err != nil {
		t.Fatal(err)
	}
	w, err := wrap(ip.GetImportParameters(), operationsv1.KeyAlgorithm_KEY_ALGORITHM_RSA3072) // wrong size
	if err != nil {
		t.Fatal(err)
	}
	_, err = o.ImportKeyMaterial(ctx, &operationsv1.ImportKeyMaterialRequest{Parameters: rp(access, rsaID), ImportParameters: ip.GetImportParameters(), EncryptedKeyMaterial: w})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "4096") {
		t.Fatalf("RSA-3072 material for an RSA-4096 key: %v", err)
	}
	if _, err := o.GetImportParameters(ctx, &operationsv1.GetImportParametersRequest{Parameters: rp(access, rsaID), Algorithm: operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("algorithm mismatch: %v", err)
	}
	sm := create(t, o, access, operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256, operationsv1.KeyType_KEY_TYPE_SYSTEM_MANAGED)
	if _, err := o.GetImportParameters(ctx, &operationsv1.GetImportParametersRequest{Parameters: rp(access, sm)}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("import into system-managed key: %v", err)
	}
}

func TestAccessDataAndRegions(t *testing.T) {
	ctx := context.Background()
	_, o, access, role := pair(t, "regions: [eu-central-1, us-east-1]\n")
	// The management role's key is not valid for key operations.
	_, err := o.CreateKey(ctx, &operationsv1.CreateKeyRequest{Config: &commonv1.KeystoreInstanceConfig{Values: role},
		Algorithm: operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256, KeyType: operationsv1.KeyType_KEY_TYPE_SYSTEM_MANAGED})
	if !kserrors.IsStatus(err, kserrors.StatusProviderAuthenticationError) {
		t.Fatalf("role key for operations: %v", err)
	}
	onlyID, _ := structpb.NewStruct(map[string]any{local.FieldInstanceID: "x"})
	_, err = o.GetKey(ctx, &operationsv1.GetKeyRequest{Parameters: rp(onlyID, "k")})
	if !kserrors.IsStatus(err, kserrors.StatusInvalidKeyAccessData) {
		t.Fatalf("missing accessKey: %v", err)
	}
	if reason, md := kserrors.GetDetails(err); reason != kserrors.ReasonMissingFields || md[kserrors.MetadataMissingFields] != local.FieldAccessKey {
		t.Fatalf("details: %q %v", reason, md)
	}
	for region, ok := range map[string]bool{"eu-central-1": true, "": true, "ap-south-1": false} {
		_, err := o.CreateKey(ctx, &operationsv1.CreateKeyRequest{Config: &commonv1.KeystoreInstanceConfig{Values: access},
			Algorithm: operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256, KeyType: operationsv1.KeyType_KEY_TYPE_SYSTEM_MANAGED, Region: region})
		if (err == nil) != ok {
			t.Errorf("region %q: %v", region, err)
		}
	}
	for kt, wantErr := range map[operationsv1.KeyType]bool{operationsv1.KeyType_KEY_TYPE_HYOK: true, operationsv1.KeyType_KEY_TYPE_UNSPECIFIED: true} {
		_, err := o.CreateKey(ctx, &operationsv1.CreateKeyRequest{Config: &commonv1.KeystoreInstanceConfig{Values: access},
			Algorithm: operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256, KeyType: kt})
		if (status.Code(err) == codes.InvalidArgument) != wantErr {
			t.Errorf("key type %s: %v", kt, err)
		}
	}
	fixed := "my-key"
	_, err = o.CreateKey(ctx, &operationsv1.CreateKeyRequest{Config: &commonv1.KeystoreInstanceConfig{Values: access},
		Algorithm: operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256, KeyType: operationsv1.KeyType_KEY_TYPE_SYSTEM_MANAGED, Id: &fixed, Region: "us-east-1"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = o.CreateKey(ctx, &operationsv1.CreateKeyRequest{Config: &commonv1.KeystoreInstanceConfig{Values: access},
		Algorithm: operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256, KeyType: operationsv1.KeyType_KEY_TYPE_SYSTEM_MANAGED, Id: &fixed})
	if status.Code(err) != codes.AlreadyExists {
		t.Fatalf("duplicate id: %v", err)
	}
	// A caller-chosen id carries no region: ExtractKeyRegion looks it up.
	r, err := o.ExtractKeyRegion(ctx, &operationsv1.ExtractKeyRegionRequest{NativeKeyId: fixed, ManagementAccessData: access})
	if err != nil || r.GetRegion() != "us-east-1" {
		t.Fatalf("ExtractKeyRegion(custom id) = %v, %v", r, err)
	}
	if _, err := o.ExtractKeyRegion(ctx, &operationsv1.ExtractKeyRegionRequest{NativeKeyId: fixed}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("ExtractKeyRegion without access data: %v", err)
	}
	v, _ := o.ValidateKey(ctx, &operationsv1.ValidateKeyRequest{KeyType: operationsv1.KeyType_KEY_TYPE_HYOK, Algorithm: operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256})
	if v.GetIsValid() {
		t.Fatalf("HYOK should not validate on the local keystore")
	}
	v, _ = o.ValidateKey(ctx, &operationsv1.ValidateKeyRequest{KeyType: operationsv1.KeyType_KEY_TYPE_BYOK, Algorithm: operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256, Region: "ap-south-1"})
	if v.GetIsValid() {
		t.Fatalf("unsupported region validated")
	}
}

func TestConfigErrors(t *testing.T) {
	bad := map[string]string{
		"typo of a key":    "dri: /var/lib/keys",
		"syntax":           "dir: [",
		"bad region":       "regions: ['eu central']",
		"window":           "defaultDeletionWindowDays: 99",
		"short secret":     "secret: {source: embedded, value: short}",
		"unset env secret": "secret: {source: env, env: APEIRO_TEST_SURELY_UNSET_VAR}",
		"bad source":       "secret: {source: vault, value: x}",
		"bad regions":      `supportedregions: {source: embedded, value: "not json"}`,
	}
	for name, yaml := range bad {
		t.Run(name, func(t *testing.T) {
			for _, c := range []configv1.ConfigServer{local.NewOperations(), local.NewManagement()} {
				_, err := c.Configure(context.Background(), &configv1.ConfigureRequest{YamlConfiguration: yaml})
				if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "local keystore configuration") {
					t.Fatalf("%q: %v", yaml, err)
				}
			}
		})
	}
	// A key a future CMK may merge in (top level or inside the SourceRef) is
	// ignored, not fatal: it must not take down the whole plugin set.
	future := "landscape: {name: eu10}\nsupportedregions: {source: embedded, env: '', file: {path: '', format: '', jsonPath: '', mode: x}, value: '{\"regions\":[]}', keyId: k}"
	for _, c := range []configv1.ConfigServer{local.NewOperations(), local.NewManagement()} {
		if _, err := c.Configure(context.Background(), &configv1.ConfigureRequest{YamlConfiguration: future}); err != nil {
			t.Fatalf("future CMK keys: %v", err)
		}
	}
	t.Setenv("APEIRO_TEST_KS_DIR", t.TempDir())
	if _, err := local.NewOperations().Configure(context.Background(), &configv1.ConfigureRequest{YamlConfiguration: "dir: ${APEIRO_TEST_KS_DIR}/keys"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(os.Getenv("APEIRO_TEST_KS_DIR"), "keys.secret")); err != nil {
		t.Fatalf("dir with $VAR: %v", err)
	}
}

func TestRemoveTrustNotFound(t *testing.T) {
	ctx := context.Background()
	m, _, _, role := pair(t, "")
	cfg := &commonv1.KeystoreInstanceConfig{Values: role}
	gt, err := m.GrantTrust(ctx, &managementv1.GrantTrustRequest{Config: cfg, Subject: "CN=a", Type: managementv1.TrustType_TRUST_TYPE_CRYPTO, Region: "eu"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.RemoveTrust(ctx, &managementv1.RemoveTrustRequest{Config: cfg, AccessData: gt.GetAccessData()}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.RemoveTrust(ctx, &managementv1.RemoveTrustRequest{Config: cfg, AccessData: gt.GetAccessData()}); status.Code(err) != codes.NotFound {
		t.Fatalf("second RemoveTrust: %v", err)
	}
	if _, err := m.GrantTrust(ctx, &managementv1.GrantTrustRequest{Config: cfg, Subject: "CN=a"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("unspecified trust type: %v", err)
	}
}
