// Package contracttest holds the reusable contract suites for keystore
// backends: RunManagement for KeystoreProvider and RunOperations for
// KeystoreInstanceKeyOperation. A backend passes Config (its builtin
// factories, its binary package, its YAML) and the suites load it through the
// real plugin-sdk catalog as a builtin and as an external go-plugin process,
// then check every RPC with the semantics CMK relies on:
//
//   - exact keystore statuses (code + message, kserrors.IsStatus):
//     unknown key → StatusKeyNotFound, wrong credentials →
//     StatusProviderAuthenticationError, missing credentials → that or
//     StatusInvalidKeyAccessData;
//   - management and operations plugins of one backend share a name, and the
//     operations plugin tagged default_keystore is found by host.DefaultKeystore;
//   - the key-management access data CreateKeystore returns works for the
//     operations plugin (CMK passes it through unchanged);
//   - TransformCryptoAccessData is keyed by exactly the input regions;
//   - `supportedregions` injected by CMK is accepted;
//   - Configure("") for optional configuration, invalid YAML rejected with an
//     error, go-plugin health SERVING, clean shutdown.
//
// Usage, in the backend's package:
//
//	func TestMain(m *testing.M) { plugintest.Main(m) }
//	func TestContract(t *testing.T) {
//		cfg := contracttest.Config{Name: "LOCAL", ...}
//		t.Run("management", func(t *testing.T) { contracttest.RunManagement(t, cfg) })
//		t.Run("operations", func(t *testing.T) { contracttest.RunOperations(t, cfg) })
//	}
package contracttest

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/openkcm/plugin-sdk/pkg/catalog"
	kserrors "github.com/openkcm/plugin-sdk/pkg/plugin/keystore/errors"
	commonv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/common/v1"
	managementv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/management/v1"
	operationsv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/operations/v1"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/host"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/plugintest"
)

// Config describes a keystore backend to the suites.
type Config struct {
	// Name is the profile name shared by both plugins (e.g. "LOCAL").
	Name string

	// ManagementBuiltIn / OperationsBuiltIn return fresh builtins named name.
	ManagementBuiltIn func(name string) catalog.BuiltInPlugin
	OperationsBuiltIn func(name string) catalog.BuiltInPlugin

	// ManagementPackage / OperationsPackage are the binaries' main packages
	// (may be the same package with different args).
	ManagementPackage, OperationsPackage string
	ManagementArgs, OperationsArgs       []string

	// ManagementYAML / OperationsYAML configure the plugins for the suite.
	// They must make the access data CreateKeystore returns valid for the
	// operations plugin (e.g. a shared secret).
	ManagementYAML, OperationsYAML string

	// ConfigOptional: Configure("") must succeed (the host sends "" when an
	// entry has no yamlConfiguration).
	ConfigOptional bool
	// InvalidYAML is a configuration the plugins must reject; default is
	// syntactically broken YAML. InvalidYAMLMessage, if set, must appear in
	// the load error.
	InvalidYAML        string
	InvalidYAMLMessage string

	// SupportedRegions are injected into the management YAML like CMK does;
	// default one region. If ReportsSupportedRegions, CreateKeystore must
	// return exactly them.
	SupportedRegions        []host.SupportedRegion
	ReportsSupportedRegions bool

	// Region is used for CreateKey / ExtractKeyRegion; default the technical
	// name of the first supported region.
	Region string
	// Algorithms to create SYSTEM_MANAGED keys with; default AES-256.
	Algorithms []operationsv1.KeyAlgorithm
	// WrapKeyMaterial generates and wraps key material of alg under the
	// import parameters, as a BYOK client would. Nil skips the BYOK flow.
	WrapKeyMaterial func(params *structpb.Struct, alg operationsv1.KeyAlgorithm) (string, error)
	// CryptoAccessData returns a valid crypto access data entry for region
	// given the key-management access data (for ValidateKeyAccessData and
	// TransformCryptoAccessData).
	CryptoAccessData func(keyAccess *structpb.Struct, region string) map[string]any
	// BreakAccessData returns a copy of valid access data with a wrong
	// credential (→ StatusProviderAuthenticationError). Nil: every string
	// field whose name contains "key", "secret" or "token" gets "x" appended.
	BreakAccessData func(valid *structpb.Struct) *structpb.Struct
	// DeletionWindowDays for DeleteKey; default 7.
	DeletionWindowDays int32
}

func (c *Config) defaults() {
	if len(c.SupportedRegions) == 0 {
		c.SupportedRegions = []host.SupportedRegion{{Name: "Europe (Frankfurt)", TechnicalName: "eu-central-1"}}
	}
	if c.Region == "" {
		c.Region = c.SupportedRegions[0].TechnicalName
	}
	if len(c.Algorithms) == 0 {
		c.Algorithms = []operationsv1.KeyAlgorithm{operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256}
	}
	if c.InvalidYAML == "" {
		c.InvalidYAML = "{{{ this is: [not yaml"
	}
	if c.DeletionWindowDays == 0 {
		c.DeletionWindowDays = 7
	}
	if c.BreakAccessData == nil {
		c.BreakAccessData = breakCredentials
	}
	if c.CryptoAccessData == nil {
		c.CryptoAccessData = func(*structpb.Struct, string) map[string]any { return map[string]any{} }
	}
}

func breakCredentials(valid *structpb.Struct) *structpb.Struct {
	m := valid.AsMap()
	for k, v := range m {
		lk := strings.ToLower(k)
		if s, ok := v.(string); ok && (strings.Contains(lk, "key") || strings.Contains(lk, "secret") || strings.Contains(lk, "token")) {
			m[k] = s + "x"
		}
	}
	out, _ := structpb.NewStruct(m)
	return out
}

func (c *Config) managementSpec(yaml string) plugintest.Spec {
	s := plugintest.Spec{
		Type: host.TypeKeystoreManagement, Name: c.Name, YAML: yaml,
		Package: c.ManagementPackage, Args: c.ManagementArgs, SupportedRegions: c.SupportedRegions,
	}
	if c.ManagementBuiltIn != nil {
		s.BuiltIn = func() catalog.BuiltInPlugin { return c.ManagementBuiltIn(c.Name) }
	}
	return s
}

func (c *Config) operationsSpec(yaml string) plugintest.Spec {
	s := plugintest.Spec{
		Type: host.TypeKeyOperations, Name: c.Name, YAML: yaml, Tags: []string{host.TagDefaultKeystore},
		Package: c.OperationsPackage, Args: c.OperationsArgs,
	}
	if c.OperationsBuiltIn != nil {
		s.BuiltIn = func() catalog.BuiltInPlugin { return c.OperationsBuiltIn(c.Name) }
	}
	return s
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

// wantStatus fails unless err is exactly st (code and message).
func wantStatus(t *testing.T, what string, err error, st *status.Status) {
	t.Helper()
	if !kserrors.IsStatus(err, st) {
		t.Fatalf("%s: got %v, want code=%s desc=%q exactly", what, err, st.Code(), st.Message())
	}
}

// wantBadAccess accepts either SDK status for missing/invalid access data.
func wantBadAccess(t *testing.T, what string, err error) {
	t.Helper()
	if !kserrors.IsStatus(err, kserrors.StatusProviderAuthenticationError) && !kserrors.IsStatus(err, kserrors.StatusInvalidKeyAccessData) {
		t.Fatalf("%s: got %v, want %q or %q (InvalidArgument)", what, err,
			kserrors.StatusProviderAuthenticationError.Message(), kserrors.StatusInvalidKeyAccessData.Message())
	}
}

func ksConfig(values *structpb.Struct) *commonv1.KeystoreInstanceConfig {
	return &commonv1.KeystoreInstanceConfig{Values: values}
}

// withCMKFields adds what CMK merges into every KeystoreInstanceConfig, so a
// backend that rejects unknown fields fails here rather than in CMK.
func withCMKFields(values *structpb.Struct) *structpb.Struct {
	m := values.AsMap()
	m["authType"] = "AUTH_TYPE_CERTIFICATE"
	m["clientCert"] = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
	m["privateKey"] = "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n"
	out, _ := structpb.NewStruct(m)
	return out
}

// checkConfigLifecycle covers Configure("") and invalid YAML for one spec. SupportedRegions is dropped so the
// plugin's own Configure sees exactly the YAML under test, not the host's merge.
func checkConfigLifecycle(t *testing.T, c *Config, mode plugintest.Mode, spec func(yaml string) plugintest.Spec) {
	plain := func(yaml string) plugintest.Spec {
		s := spec(yaml)
		s.SupportedRegions = nil
		return s
	}
	plugintest.CheckConfigLifecycle(t, plugintest.ConfigCheck{Spec: plain, Optional: c.ConfigOptional,
		InvalidYAML: c.InvalidYAML, InvalidYAMLMessage: c.InvalidYAMLMessage}, mode)
}

// RunManagement runs the KeystoreProvider suite in both load modes.
func RunManagement(t *testing.T, c Config) {
	c.defaults()
	for _, mode := range c.managementSpec("").Modes() {
		t.Run(string(mode), func(t *testing.T) {
			l := plugintest.Load(t, c.managementSpec(c.ManagementYAML), mode)
			mgmt, err := l.KeystoreManagement(c.Name)
			if err != nil {
				t.Fatal(err)
			}
			ctx := ctx(t)

			// CMK calls CreateKeystore with empty values (keystore pool task).
			ks, err := mgmt.CreateKeystore(ctx, &managementv1.CreateKeystoreRequest{Values: &structpb.Struct{}})
			if err != nil {
				t.Fatalf("CreateKeystore: %v", err)
			}
			role, keys := ks.GetRoleManagementConfig(), ks.GetKeyManagementConfig()
			if len(role.GetAccessData().GetValues().GetFields()) == 0 || len(keys.GetAccessData().GetValues().GetFields()) == 0 {
				t.Fatalf("CreateKeystore must return role and key management access data: %v", ks)
			}
			if role.GetLocalityId() == "" || role.GetCommonName() == "" {
				t.Fatalf("CreateKeystore: role management config needs locality_id and common_name: %v", role)
			}
			if c.ReportsSupportedRegions {
				got := ks.GetSupportedRegions()
				if len(got) != len(c.SupportedRegions) {
					t.Fatalf("supported regions = %v, want %v (from injected supportedregions)", got, c.SupportedRegions)
				}
				for i, r := range c.SupportedRegions {
					if got[i].GetName() != r.Name || got[i].GetTechnicalName() != r.TechnicalName {
						t.Fatalf("supported region %d = %v, want %+v", i, got[i], r)
					}
				}
			}
			roleAccess := withCMKFields(role.GetAccessData().GetValues())

			var trusts []*structpb.Struct
			for _, tt := range []managementv1.TrustType{managementv1.TrustType_TRUST_TYPE_MANAGEMENT, managementv1.TrustType_TRUST_TYPE_CRYPTO} {
				resp, err := mgmt.GrantTrust(ctx, &managementv1.GrantTrustRequest{
					Config: ksConfig(roleAccess), Subject: "CN=tenant-byok-1234,O=Apeiro", Region: role.GetLocalityId(), Type: tt,
				})
				if err != nil {
					t.Fatalf("GrantTrust(%s): %v", tt, err)
				}
				if len(resp.GetAccessData().GetFields()) == 0 {
					t.Fatalf("GrantTrust(%s): empty access data", tt)
				}
				trusts = append(trusts, resp.GetAccessData())
			}

			_, err = mgmt.GrantTrust(ctx, &managementv1.GrantTrustRequest{
				Config: ksConfig(c.BreakAccessData(roleAccess)), Subject: "CN=x", Region: role.GetLocalityId(), Type: managementv1.TrustType_TRUST_TYPE_CRYPTO,
			})
			wantStatus(t, "GrantTrust with a wrong credential", err, kserrors.StatusProviderAuthenticationError)
			_, err = mgmt.GrantTrust(ctx, &managementv1.GrantTrustRequest{
				Config: ksConfig(&structpb.Struct{}), Subject: "CN=x", Region: role.GetLocalityId(), Type: managementv1.TrustType_TRUST_TYPE_CRYPTO,
			})
			wantBadAccess(t, "GrantTrust without access data", err)

			for i, ad := range trusts {
				if _, err := mgmt.RemoveTrust(ctx, &managementv1.RemoveTrustRequest{Config: ksConfig(roleAccess), AccessData: ad}); err != nil {
					t.Fatalf("RemoveTrust #%d: %v", i, err)
				}
			}
			_, err = mgmt.RemoveTrust(ctx, &managementv1.RemoveTrustRequest{Config: ksConfig(c.BreakAccessData(roleAccess)), AccessData: trusts[0]})
			wantStatus(t, "RemoveTrust with a wrong credential", err, kserrors.StatusProviderAuthenticationError)

			_, err = mgmt.DeleteKeystore(ctx, &managementv1.DeleteKeystoreRequest{Config: ksConfig(c.BreakAccessData(roleAccess))})
			wantStatus(t, "DeleteKeystore with a wrong credential", err, kserrors.StatusProviderAuthenticationError)
			if _, err := mgmt.DeleteKeystore(ctx, &managementv1.DeleteKeystoreRequest{Config: ksConfig(roleAccess)}); err != nil {
				t.Fatalf("DeleteKeystore: %v", err)
			}

			checkConfigLifecycle(t, &c, mode, c.managementSpec)
			t.Run("health", func(t *testing.T) { plugintest.CheckHealth(t, l) })
			t.Run("shutdown", func(t *testing.T) { plugintest.CheckShutdown(t, l) })
		})
	}
}

// RunOperations runs the KeystoreInstanceKeyOperation suite in both load
// modes. The management plugin is loaded next to it (same name, as CMK
// pairs them) to obtain key-management access data via CreateKeystore.
func RunOperations(t *testing.T, c Config) {
	c.defaults()
	for _, mode := range c.operationsSpec("").Modes() {
		t.Run(string(mode), func(t *testing.T) {
			set := plugintest.LoadSet(t, mode, c.operationsSpec(c.OperationsYAML), c.managementSpec(c.ManagementYAML))
			l := set[0]
			ctx := ctx(t)

			name, ops, err := l.DefaultKeystore()
			if err != nil || name != c.Name {
				t.Fatalf("DefaultKeystore = %q, %v; want %q", name, err, c.Name)
			}
			mgmt, err := l.KeystoreManagement(name)
			if err != nil {
				t.Fatalf("management plugin paired by name: %v", err)
			}
			ks, err := mgmt.CreateKeystore(ctx, &managementv1.CreateKeystoreRequest{Values: &structpb.Struct{}})
			if err != nil {
				t.Fatalf("CreateKeystore: %v", err)
			}
			access := withCMKFields(ks.GetKeyManagementConfig().GetAccessData().GetValues())
			bad := c.BreakAccessData(access)
			params := func(values *structpb.Struct, id string) *operationsv1.RequestParameters {
				return &operationsv1.RequestParameters{Config: ksConfig(values), KeyId: id}
			}

			t.Run("keys", func(t *testing.T) { checkKeys(t, &c, ops, access, bad, params) })
			if c.WrapKeyMaterial != nil {
				t.Run("byok", func(t *testing.T) { checkBYOK(t, &c, ops, access, params) })
			}
			t.Run("validate", func(t *testing.T) { checkValidate(t, &c, ops, access, bad) })
			t.Run("transform", func(t *testing.T) { checkTransform(t, &c, ops, access) })

			checkConfigLifecycle(t, &c, mode, c.operationsSpec)
			t.Run("health", func(t *testing.T) {
				plugintest.CheckHealth(t, l)
				plugintest.CheckHealth(t, set[1])
			})
			t.Run("shutdown", func(t *testing.T) { plugintest.CheckShutdown(t, l) })
		})
	}
}

type paramsFunc func(values *structpb.Struct, id string) *operationsv1.RequestParameters

func checkKeys(t *testing.T, c *Config, ops operationsv1.KeystoreInstanceKeyOperationClient, access, bad *structpb.Struct, params paramsFunc) {
	ctx := ctx(t)
	for _, alg := range c.Algorithms {
		created, err := ops.CreateKey(ctx, &operationsv1.CreateKeyRequest{
			Config: ksConfig(access), Algorithm: alg, Region: c.Region, KeyType: operationsv1.KeyType_KEY_TYPE_SYSTEM_MANAGED,
		})
		if err != nil {
			t.Fatalf("CreateKey(%s): %v", alg, err)
		}
		id := created.GetKeyId()
		if id == "" || created.GetStatus() == "" {
			t.Fatalf("CreateKey(%s): want key_id and status, got %v", alg, created)
		}
		got, err := ops.GetKey(ctx, &operationsv1.GetKeyRequest{Parameters: params(access, id)})
		if err != nil {
			t.Fatalf("GetKey(%s): %v", alg, err)
		}
		if got.GetKeyId() != id || got.GetAlgorithm() != alg || got.GetStatus() == "" || got.GetLatestKeyVersionId() == "" {
			t.Fatalf("GetKey(%s) = %v", alg, got)
		}
		enabled := got.GetStatus()

		region, err := ops.ExtractKeyRegion(ctx, &operationsv1.ExtractKeyRegionRequest{NativeKeyId: id, ManagementAccessData: access})
		if err != nil || region.GetRegion() != c.Region {
			t.Fatalf("ExtractKeyRegion(%s) = %v, %v; want %q", id, region, err, c.Region)
		}

		if _, err := ops.DisableKey(ctx, &operationsv1.DisableKeyRequest{Parameters: params(access, id)}); err != nil {
			t.Fatalf("DisableKey: %v", err)
		}
		if g, err := ops.GetKey(ctx, &operationsv1.GetKeyRequest{Parameters: params(access, id)}); err != nil || g.GetStatus() == enabled {
			t.Fatalf("after DisableKey: status %q (%v), want different from %q", g.GetStatus(), err, enabled)
		}
		if _, err := ops.EnableKey(ctx, &operationsv1.EnableKeyRequest{Parameters: params(access, id)}); err != nil {
			t.Fatalf("EnableKey: %v", err)
		}
		if g, err := ops.GetKey(ctx, &operationsv1.GetKeyRequest{Parameters: params(access, id)}); err != nil || g.GetStatus() != enabled {
			t.Fatalf("after EnableKey: status %q (%v), want %q", g.GetStatus(), err, enabled)
		}

		window := c.DeletionWindowDays
		if _, err := ops.DeleteKey(ctx, &operationsv1.DeleteKeyRequest{Parameters: params(access, id), Window: &window}); err != nil {
			t.Fatalf("DeleteKey: %v", err)
		}
		g, err := ops.GetKey(ctx, &operationsv1.GetKeyRequest{Parameters: params(access, id)})
		if err == nil && g.GetStatus() == enabled {
			t.Fatalf("after DeleteKey the key is still %q", enabled)
		}
		if err != nil {
			wantStatus(t, "GetKey after DeleteKey", err, kserrors.StatusKeyNotFound)
		}
	}

	const missing = "apeiro-contract-missing-key"
	_, err := ops.GetKey(ctx, &operationsv1.GetKeyRequest{Parameters: params(access, missing)})
	wantStatus(t, "GetKey of a missing key", err, kserrors.StatusKeyNotFound)
	_, err = ops.EnableKey(ctx, &operationsv1.EnableKeyRequest{Parameters: params(access, missing)})
	wantStatus(t, "EnableKey of a missing key", err, kserrors.StatusKeyNotFound)
	_, err = ops.DisableKey(ctx, &operationsv1.DisableKeyRequest{Parameters: params(access, missing)})
	wantStatus(t, "DisableKey of a missing key", err, kserrors.StatusKeyNotFound)
	_, err = ops.DeleteKey(ctx, &operationsv1.DeleteKeyRequest{Parameters: params(access, missing)})
	wantStatus(t, "DeleteKey of a missing key", err, kserrors.StatusKeyNotFound)

	_, err = ops.GetKey(ctx, &operationsv1.GetKeyRequest{Parameters: params(bad, missing)})
	wantStatus(t, "GetKey with a wrong credential", err, kserrors.StatusProviderAuthenticationError)
	_, err = ops.CreateKey(ctx, &operationsv1.CreateKeyRequest{
		Config: ksConfig(bad), Algorithm: c.Algorithms[0], Region: c.Region, KeyType: operationsv1.KeyType_KEY_TYPE_SYSTEM_MANAGED,
	})
	wantStatus(t, "CreateKey with a wrong credential", err, kserrors.StatusProviderAuthenticationError)
	_, err = ops.GetKey(ctx, &operationsv1.GetKeyRequest{Parameters: params(&structpb.Struct{}, missing)})
	wantBadAccess(t, "GetKey without access data", err)
}

func checkBYOK(t *testing.T, c *Config, ops operationsv1.KeystoreInstanceKeyOperationClient, access *structpb.Struct, params paramsFunc) {
	ctx := ctx(t)
	alg := c.Algorithms[0]
	created, err := ops.CreateKey(ctx, &operationsv1.CreateKeyRequest{
		Config: ksConfig(access), Algorithm: alg, Region: c.Region, KeyType: operationsv1.KeyType_KEY_TYPE_BYOK,
	})
	if err != nil {
		t.Fatalf("CreateKey(BYOK): %v", err)
	}
	id := created.GetKeyId()
	ip, err := ops.GetImportParameters(ctx, &operationsv1.GetImportParametersRequest{Parameters: params(access, id), Algorithm: alg})
	if err != nil {
		t.Fatalf("GetImportParameters: %v", err)
	}
	if ip.GetKeyId() != id || len(ip.GetImportParameters().GetFields()) == 0 {
		t.Fatalf("GetImportParameters = %v", ip)
	}
	wrapped, err := c.WrapKeyMaterial(ip.GetImportParameters(), alg)
	if err != nil {
		t.Fatalf("wrapping key material: %v", err)
	}
	if _, err := ops.ImportKeyMaterial(ctx, &operationsv1.ImportKeyMaterialRequest{
		Parameters: params(access, id), ImportParameters: ip.GetImportParameters(), EncryptedKeyMaterial: wrapped,
	}); err != nil {
		t.Fatalf("ImportKeyMaterial: %v", err)
	}
	g, err := ops.GetKey(ctx, &operationsv1.GetKeyRequest{Parameters: params(access, id)})
	if err != nil || g.GetLatestKeyVersionId() == "" {
		t.Fatalf("GetKey after import = %v, %v; want a key version", g, err)
	}
	_, err = ops.GetImportParameters(ctx, &operationsv1.GetImportParametersRequest{Parameters: params(access, "apeiro-contract-missing-key"), Algorithm: alg})
	wantStatus(t, "GetImportParameters of a missing key", err, kserrors.StatusKeyNotFound)
}

func checkValidate(t *testing.T, c *Config, ops operationsv1.KeystoreInstanceKeyOperationClient, access, bad *structpb.Struct) {
	ctx := ctx(t)
	v, err := ops.ValidateKey(ctx, &operationsv1.ValidateKeyRequest{
		KeyType: operationsv1.KeyType_KEY_TYPE_SYSTEM_MANAGED, Algorithm: c.Algorithms[0], Region: c.Region,
	})
	if err != nil || !v.GetIsValid() {
		t.Fatalf("ValidateKey(valid attributes) = %v, %v", v, err)
	}
	v, err = ops.ValidateKey(ctx, &operationsv1.ValidateKeyRequest{KeyType: operationsv1.KeyType_KEY_TYPE_SYSTEM_MANAGED, Region: c.Region})
	if err == nil && (v.GetIsValid() || v.GetMessage() == "") {
		t.Fatalf("ValidateKey without algorithm = %v; want is_valid=false with a message (or an error)", v)
	}

	crypto, err := structpb.NewStruct(map[string]any{c.Region: c.CryptoAccessData(access, c.Region)})
	if err != nil {
		t.Fatal(err)
	}
	va, err := ops.ValidateKeyAccessData(ctx, &operationsv1.ValidateKeyAccessDataRequest{Management: access, Crypto: crypto})
	if err != nil || !va.GetIsValid() {
		t.Fatalf("ValidateKeyAccessData(valid) = %v, %v", va, err)
	}
	va, err = ops.ValidateKeyAccessData(ctx, &operationsv1.ValidateKeyAccessDataRequest{Management: bad, Crypto: crypto})
	if err == nil && (va.GetIsValid() || va.GetMessage() == "") {
		t.Fatalf("ValidateKeyAccessData(wrong credential) = %v; want is_valid=false with a message", va)
	}
	if err != nil && status.Code(err) != codes.InvalidArgument {
		t.Fatalf("ValidateKeyAccessData(wrong credential): %v; want is_valid=false or InvalidArgument", err)
	}
}

func checkTransform(t *testing.T, c *Config, ops operationsv1.KeystoreInstanceKeyOperationClient, access *structpb.Struct) {
	ctx := ctx(t)
	regions := []string{c.Region, c.Region + "-second"}
	in := map[string]any{}
	for _, r := range regions {
		e := c.CryptoAccessData(access, r)
		e["certificateSubject"] = "CN=crypto-" + r
		in[r] = e
	}
	raw, _ := json.Marshal(in)
	out, err := ops.TransformCryptoAccessData(ctx, &operationsv1.TransformCryptoAccessDataRequest{NativeKeyId: "contract-key", AccessData: raw})
	if err != nil {
		t.Fatalf("TransformCryptoAccessData: %v", err)
	}
	got := out.GetTransformedAccessData()
	if len(got) != len(regions) {
		t.Fatalf("TransformCryptoAccessData keys = %v, want exactly %v (CMK reads transformed_access_data[region])", keys(got), regions)
	}
	for _, r := range regions {
		if len(got[r]) == 0 {
			t.Fatalf("TransformCryptoAccessData: no data for region %q (keys %v)", r, keys(got))
		}
	}
	_, err = ops.TransformCryptoAccessData(ctx, &operationsv1.TransformCryptoAccessDataRequest{NativeKeyId: "contract-key", AccessData: []byte("{not json")})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("TransformCryptoAccessData(invalid JSON): %v, want InvalidArgument", err)
	}
}

func keys(m map[string][]byte) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
