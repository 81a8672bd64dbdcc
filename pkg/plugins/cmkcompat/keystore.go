package cmkcompat

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	kserrors "github.com/openkcm/plugin-sdk/pkg/plugin/keystore/errors"
	commonv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/common/v1"
	managementv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/management/v1"
	operationsv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/operations/v1"
	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/host"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/plugintest"
)

// Keystore describes a keystore backend for RunKeystore.
type Keystore struct {
	// Name is the profile name both plugins share.
	Name string
	// Management and Operations describe the two plugins (Type and Name are
	// filled in; Operations gets the default_keystore tag, SupportedRegions
	// come from Regions).
	Management, Operations plugintest.Spec
	// Regions is CMK's keystorePool.supportedRegions; at least one. Keys are
	// created in the first region's technical name.
	Regions []host.SupportedRegion
	// Algorithm of the keys the suite creates (default AES-256).
	Algorithm operationsv1.KeyAlgorithm
	// NoBYOK skips the import round trip, for backends (HYOK) that cannot
	// import; a backend that can must run it.
	NoBYOK bool
	// Material returns key material of alg for BYOK (default: 32 random bytes
	// for AES-256, PKCS#8 DER of a fresh key for RSA).
	Material func(alg operationsv1.KeyAlgorithm) ([]byte, error)
}

func (k *Keystore) defaults(t *testing.T) {
	t.Helper()
	if k.Name == "" || len(k.Regions) == 0 {
		t.Fatal("cmkcompat: Keystore needs Name and at least one region")
	}
	k.Management.Type, k.Management.Name = host.TypeKeystoreManagement, k.Name
	k.Operations.Type, k.Operations.Name = host.TypeKeyOperations, k.Name
	if !slices.Contains(k.Operations.Tags, host.TagDefaultKeystore) {
		k.Operations.Tags = append(slices.Clone(k.Operations.Tags), host.TagDefaultKeystore)
	}
	k.Management.SupportedRegions = k.Regions
	if k.Algorithm == operationsv1.KeyAlgorithm_KEY_ALGORITHM_UNSPECIFIED {
		k.Algorithm = operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256
	}
	if k.Material == nil {
		k.Material = defaultMaterial
	}
}

func defaultMaterial(alg operationsv1.KeyAlgorithm) ([]byte, error) {
	bits := map[operationsv1.KeyAlgorithm]int{
		operationsv1.KeyAlgorithm_KEY_ALGORITHM_RSA3072: 3072,
		operationsv1.KeyAlgorithm_KEY_ALGORITHM_RSA4096: 4096,
	}[alg]
	if bits == 0 {
		b := make([]byte, 32)
		_, err := rand.Read(b)
		return b, err
	}
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		return nil, err
	}
	return x509.MarshalPKCS8PrivateKey(k)
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func mustStruct(t *testing.T, m map[string]any) *structpb.Struct {
	t.Helper()
	s, err := structpb.NewStruct(m)
	if err != nil {
		t.Fatalf("CMK would fail to build the request struct: %v", err)
	}
	return s
}

// RunKeystore loads the backend's two plugins the way CMK does, in every
// load mode the specs support, and drives them through CMK's request
// shapes: keystore pool (CreateKeystore), trust provisioning (GrantTrust
// MANAGEMENT and CRYPTO, RemoveTrust), the key lifecycle (create, get,
// disable, enable, delete) and the BYOK import round trip.
func RunKeystore(t *testing.T, ks Keystore) {
	t.Helper()
	ks.defaults(t)
	for _, mode := range ks.Management.Modes() {
		t.Run(string(mode), func(t *testing.T) {
			set := plugintest.LoadSet(t, mode, ks.Management, ks.Operations)
			runKeystore(t, &ks, set[0].Plugins)
		})
	}
}

// RunKeystoreOn drives an already loaded plugin set (e.g. a whole profile
// loaded with Load) through the same checks as RunKeystore. Only Name,
// Regions, Management.YAML, Algorithm, NoBYOK and Material of ks are used.
func RunKeystoreOn(t *testing.T, p *host.Plugins, ks Keystore) {
	t.Helper()
	ks.defaults(t)
	runKeystore(t, &ks, p)
}

func runKeystore(t *testing.T, ks *Keystore, p *host.Plugins) {
	t.Helper()
	ctx := ctxFor(t)
	name, ops, err := p.DefaultKeystore()
	if err != nil || name != ks.Name {
		t.Fatalf("CMK's default keystore = %q, %v; want %q", name, err, ks.Name)
	}
	mgmt, err := p.KeystoreManagement(name)
	if err != nil {
		t.Fatalf("CMK finds the management plugin by the operations plugin's name: %v", err)
	}
	checkFutureCMKKeys(t, ks, p)

	// Keystore pool: CreateKeystore with empty values, stored as JSON.
	created, err := mgmt.CreateKeystore(ctx, &managementv1.CreateKeystoreRequest{Values: mustStruct(t, nil)})
	if err != nil {
		t.Fatalf("CreateKeystore: %v", err)
	}
	var got []host.SupportedRegion
	for _, r := range created.GetSupportedRegions() {
		got = append(got, host.SupportedRegion{Name: r.GetName(), TechnicalName: r.GetTechnicalName()})
	}
	if !slices.Equal(got, ks.Regions) {
		t.Fatalf("CreateKeystore supported regions = %v, want CMK's injected %v", got, ks.Regions)
	}
	stored, err := StoredKeystoreConfig(created)
	if err != nil {
		t.Fatal(err)
	}
	role := stored["roleManagementConfig"].(map[string]any)
	keyMgmt := stored["keyManagementConfig"].(map[string]any)
	if role["localityID"] == "" || role["commonName"] == "" {
		t.Fatalf("roleManagementConfig needs localityID and commonName (CMK requests the role certificate with them): %v", role)
	}
	roleAccess, _ := role["accessData"].(map[string]any)

	roleCert, err := NewClientCert(role["commonName"].(string))
	if err != nil {
		t.Fatal(err)
	}
	roleConfig := &commonv1.KeystoreInstanceConfig{Values: mustStruct(t, ConfigValues(roleCert, roleAccess))}

	// Trust provisioning. CMK grants MANAGEMENT trust when keyManagementConfig
	// has no locality, and then uses that access data for key operations.
	tenantCN := "cmkcompat-keystore-tenant-" + randHex(4)
	mt, err := mgmt.GrantTrust(ctx, &managementv1.GrantTrustRequest{Config: roleConfig, Subject: tenantCN,
		Region: role["localityID"].(string), Type: managementv1.TrustType_TRUST_TYPE_MANAGEMENT})
	if err != nil {
		t.Fatalf("GrantTrust(MANAGEMENT): %v", err)
	}
	keyAccess, _ := keyMgmt["accessData"].(map[string]any)
	if keyMgmt["localityID"] == "" {
		keyAccess = mt.GetAccessData().AsMap()
	}
	cryptoCert, err := NewClientCert("cmkcompat-crypto-" + randHex(4))
	if err != nil {
		t.Fatal(err)
	}
	ct, err := mgmt.GrantTrust(ctx, &managementv1.GrantTrustRequest{Config: roleConfig, Subject: cryptoCert.Subject.String(),
		Region: "crypto-cert-1", Type: managementv1.TrustType_TRUST_TYPE_CRYPTO})
	if err != nil || len(ct.GetAccessData().GetFields()) == 0 {
		t.Fatalf("GrantTrust(CRYPTO) = %v, %v; CMK stores the access data per certificate", ct, err)
	}
	cryptoAccess, err := jsonRoundTrip(ct.GetAccessData().AsMap())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mgmt.RemoveTrust(ctx, &managementv1.RemoveTrustRequest{Config: roleConfig, AccessData: mustStruct(t, cryptoAccess)}); err != nil {
		t.Fatalf("RemoveTrust with the stored CRYPTO access data: %v", err)
	}

	keyCert, err := NewClientCert(tenantCN)
	if err != nil {
		t.Fatal(err)
	}
	keyAccess, err = jsonRoundTrip(keyAccess)
	if err != nil {
		t.Fatal(err)
	}
	keyConfig := &commonv1.KeystoreInstanceConfig{Values: mustStruct(t, ConfigValues(keyCert, keyAccess))}
	params := func(id string) *operationsv1.RequestParameters {
		return &operationsv1.RequestParameters{Config: keyConfig, KeyId: id}
	}
	region := ks.Regions[0].TechnicalName

	t.Run("key lifecycle", func(t *testing.T) {
		ctx := ctxFor(t)
		cmkKeyID := newUUID()
		k, err := ops.CreateKey(ctx, &operationsv1.CreateKeyRequest{Config: keyConfig, Algorithm: ks.Algorithm,
			Id: &cmkKeyID, Region: region, KeyType: operationsv1.KeyType_KEY_TYPE_SYSTEM_MANAGED})
		if err != nil || k.GetKeyId() == "" {
			t.Fatalf("CreateKey = %v, %v", k, err)
		}
		native := k.GetKeyId()
		wantState := func(what, want string) {
			t.Helper()
			g, err := ops.GetKey(ctx, &operationsv1.GetKeyRequest{Parameters: params(native)})
			if err != nil {
				t.Fatalf("GetKey after %s: %v", what, err)
			}
			if !strings.EqualFold(g.GetStatus(), want) {
				t.Fatalf("key status after %s = %q, want %q (CMK stores it as the key state)", what, g.GetStatus(), want)
			}
		}
		wantState("CreateKey", "ENABLED")
		if _, err := ops.DisableKey(ctx, &operationsv1.DisableKeyRequest{Parameters: params(native)}); err != nil {
			t.Fatalf("DisableKey: %v", err)
		}
		wantState("DisableKey", "DISABLED")
		if _, err := ops.EnableKey(ctx, &operationsv1.EnableKeyRequest{Parameters: params(native)}); err != nil {
			t.Fatalf("EnableKey: %v", err)
		}
		wantState("EnableKey", "ENABLED")
		if _, err := ops.DeleteKey(ctx, &operationsv1.DeleteKeyRequest{Parameters: params(native)}); err != nil {
			t.Fatalf("DeleteKey (no window, as CMK sends it): %v", err)
		}
		_, err = ops.GetKey(ctx, &operationsv1.GetKeyRequest{Parameters: params("cmkcompat-" + newUUID())})
		if s, _ := status.FromError(err); s.Code() != kserrors.StatusKeyNotFound.Code() || s.Message() != kserrors.StatusKeyNotFound.Message() {
			t.Fatalf("GetKey(unknown) = %v; CMK matches the SDK's StatusKeyNotFound (code and message)", err)
		}
	})

	if ks.NoBYOK {
		return
	}
	t.Run("BYOK import round trip", func(t *testing.T) {
		ctx := ctxFor(t)
		cmkKeyID := newUUID()
		k, err := ops.CreateKey(ctx, &operationsv1.CreateKeyRequest{Config: keyConfig, Algorithm: ks.Algorithm,
			Id: &cmkKeyID, Region: region, KeyType: operationsv1.KeyType_KEY_TYPE_BYOK})
		if err != nil {
			t.Fatalf("CreateKey(BYOK): %v", err)
		}
		native := k.GetKeyId()
		ipResp, err := ops.GetImportParameters(ctx, &operationsv1.GetImportParametersRequest{Parameters: params(native), Algorithm: ks.Algorithm})
		if err != nil {
			t.Fatalf("GetImportParameters: %v", err)
		}
		ip, err := BuildImportParams(ipResp.GetImportParameters().AsMap())
		if err != nil {
			t.Fatalf("CMK cannot build import parameters: %v", err)
		}
		if !slices.Contains(WrappingAlgorithms, ip.WrappingAlgorithm) || !slices.Contains(HashFunctions, ip.HashFunction) {
			t.Fatalf("wrappingAlgorithm %q / hashFunction %q are outside CMK's API enums %v / %v",
				ip.WrappingAlgorithm, ip.HashFunction, WrappingAlgorithms, HashFunctions)
		}
		if ip.Expires != nil && !ip.Expires.After(time.Now()) {
			t.Fatalf("validTo %v is not in the future", ip.Expires)
		}
		material, err := ks.Material(ks.Algorithm)
		if err != nil {
			t.Fatal(err)
		}
		wrapped, err := ip.Wrap(material)
		if err != nil {
			t.Fatalf("wrapping as the customer's tooling does: %v", err)
		}
		sent, err := ip.ProviderParamsMap()
		if err != nil {
			t.Fatal(err)
		}
		// Hostile or stale parameters are refused and lose nothing.
		_, err = ops.ImportKeyMaterial(ctx, &operationsv1.ImportKeyMaterialRequest{Parameters: params(native),
			EncryptedKeyMaterial: wrapped, ImportParameters: mustStruct(t, map[string]any{"providerParams": "forged"})})
		if err == nil {
			t.Fatal("ImportKeyMaterial accepted forged providerParams")
		}
		if _, err := ops.ImportKeyMaterial(ctx, &operationsv1.ImportKeyMaterialRequest{Parameters: params(native),
			EncryptedKeyMaterial: wrapped, ImportParameters: mustStruct(t, sent)}); err != nil {
			t.Fatalf("ImportKeyMaterial with only {providerParams[, algorithm]} as CMK sends it: %v", err)
		}
		g, err := ops.GetKey(ctx, &operationsv1.GetKeyRequest{Parameters: params(native)})
		if err != nil || g.GetLatestKeyVersionId() == "" || !strings.EqualFold(g.GetStatus(), "ENABLED") {
			t.Fatalf("GetKey after import = %v, %v; want ENABLED with a version", g, err)
		}
		_, err = ops.ImportKeyMaterial(ctx, &operationsv1.ImportKeyMaterialRequest{Parameters: params(native),
			EncryptedKeyMaterial: wrapped, ImportParameters: mustStruct(t, sent)})
		if err == nil {
			t.Fatal("the same import parameters were accepted twice")
		}
		if c := status.Code(err); c == codes.OK || c == codes.Unknown || c == codes.Internal {
			t.Fatalf("replayed import: %v; want a precise status", err)
		}
	})
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// newUUID is a random (version 4) UUID, the form of CMK's key IDs.
func newUUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// checkFutureCMKKeys reconfigures the management plugin with what a later
// CMK might send: CMK's merge plus a new top-level key and new keys inside
// the supportedregions SourceRef and its file. Configure must accept it
// (unknown keys in what CMK owns are ignored), or one CMK upgrade would take
// down the whole plugin set.
func checkFutureCMKKeys(t *testing.T, ks *Keystore, p *host.Plugins) {
	t.Helper()
	merged, err := host.InjectSupportedRegions(ks.Management.YAML, ks.Regions)
	if err != nil {
		t.Fatal(err)
	}
	future := strings.Replace(merged, "        jsonPath: \"\"\n", "        jsonPath: \"\"\n        mode: \"\"\n", 1)
	future = strings.Replace(future, "    value: '", "    keyId: future\n    value: '", 1)
	future += "cmkFutureSetting:\n    enabled: true\n"
	if future == merged || !strings.Contains(future, "keyId: future") || !strings.Contains(future, "mode:") {
		t.Fatalf("cmkcompat: CMK's merge changed shape:\n%s", merged)
	}
	cc, err := p.ConfigClient(host.TypeKeystoreManagement, ks.Name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cc.Configure(ctxFor(t), &configv1.ConfigureRequest{YamlConfiguration: future}); err != nil {
		t.Fatalf("Configure with keys a future CMK may add: %v\n%s", err, future)
	}
}
