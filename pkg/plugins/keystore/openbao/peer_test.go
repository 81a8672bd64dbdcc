package openbao_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openkcm/plugin-sdk/pkg/catalog"
	kserrors "github.com/openkcm/plugin-sdk/pkg/plugin/keystore/errors"
	commonv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/common/v1"
	operationsv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/operations/v1"
	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/apeirora/apeiro-cmk/internal/testpeers/vault"
	"github.com/apeirora/apeiro-cmk/pkg/keychain"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/cmkcompat"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/host"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/contracttest"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/keyversions"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/openbao"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/plugintest"
)

func TestMain(m *testing.M) { plugintest.Main(m) }

const binaryPkg = "github.com/apeirora/apeiro-cmk/cmd/plugins/keystore-openbao"

const region = "eu-central-1"

// peer is a dev server with the plugin's AppRole (policy vault.PluginPolicy) and the plugin YAML that uses it.
type peer struct {
	srv          *vault.Server
	roleID, sid  string
	sidFile      string
	yaml         string
	roleTokenTTL string
}

func startPeer(t *testing.T, ttl string) *peer {
	t.Helper()
	srv := vault.Start(t)
	p := &peer{srv: srv, roleID: "apeiro-cmk-role-" + fmt.Sprint(time.Now().UnixNano()), sid: "apeiro-cmk-secret-" + fmt.Sprint(time.Now().UnixNano()), roleTokenTTL: ttl}
	p.setupAuth(t)
	p.yaml = fmt.Sprintf("address: %s\nregion: %s\ncallTimeout: 5s\nauth: {method: approle, roleId: %q, secretIdFile: %q}\n", srv.Addr, region, p.roleID, p.sidFile)
	return p
}

// setupAuth (re-)creates the AppRole with fixed ids, e.g. after a restart wiped the in-memory server.
func (p *peer) setupAuth(t *testing.T) {
	t.Helper()
	_, f := p.srv.AppRoleWith(t, "apeiro-cmk", vault.PluginPolicy, p.roleTokenTTL, p.roleID, p.sid)
	if p.sidFile == "" {
		p.sidFile = filepath.Join(t.TempDir(), "secret-id")
	}
	b, _ := os.ReadFile(f)
	if err := os.WriteFile(p.sidFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func (p *peer) config(t *testing.T) *openbao.Config {
	t.Helper()
	c, err := openbao.ParseConfig(p.yaml)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func tenantCfg(tenant string) *structpb.Struct {
	s, _ := structpb.NewStruct(map[string]any{"tenant": tenant})
	return s
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func contractConfig(p *peer) contracttest.Config {
	return contracttest.Config{
		Name:                    "OPENBAO",
		ManagementBuiltIn:       openbao.NewManagementBuiltIn,
		OperationsBuiltIn:       openbao.NewOperationsBuiltIn,
		ManagementPackage:       binaryPkg,
		OperationsPackage:       binaryPkg,
		ManagementArgs:          []string{"management"},
		OperationsArgs:          []string{"operations"},
		ManagementYAML:          p.yaml,
		OperationsYAML:          p.yaml,
		ConfigOptional:          true,
		InvalidYAMLMessage:      "invalid openbao keystore configuration",
		SupportedRegions:        []host.SupportedRegion{{Name: "Europe (Frankfurt)", TechnicalName: region}},
		ReportsSupportedRegions: true,
		Algorithms: []operationsv1.KeyAlgorithm{
			operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256,
			operationsv1.KeyAlgorithm_KEY_ALGORITHM_RSA3072,
		},
		WrapKeyMaterial: wrapForImport,
		CryptoAccessData: func(keyAccess *structpb.Struct, _ string) map[string]any {
			return map[string]any{"tenant": keyAccess.GetFields()["tenant"].GetStringValue()}
		},
		// The tenant binding is the credential: naming the keystore's mount as another tenant must be refused.
		BreakAccessData: func(valid *structpb.Struct) *structpb.Struct {
			m := valid.AsMap()
			m["tenant"] = "intruder"
			out, _ := structpb.NewStruct(m)
			return out
		},
		DeletionWindowDays: 7,
	}
}

func TestContractManagement(t *testing.T) {
	contracttest.RunManagement(t, contractConfig(startPeer(t, "1h")))
}

func TestContractOperations(t *testing.T) {
	contracttest.RunOperations(t, contractConfig(startPeer(t, "1h")))
}

// TestCMKCompat drives the plugins the way a stock CMK does, in both load modes, including the BYOK import round
// trip (CKM_RSA_AES_KEY_WRAP under the tenant mount's transit wrapping key).
func TestCMKCompat(t *testing.T) {
	p := startPeer(t, "1h")
	cmkcompat.RunKeystore(t, cmkcompat.Keystore{
		Name: "OPENBAO",
		Management: plugintest.Spec{YAML: p.yaml, Package: binaryPkg, Args: []string{"management"},
			BuiltIn: func() catalog.BuiltInPlugin { return openbao.NewManagementBuiltIn("OPENBAO") }},
		Operations: plugintest.Spec{YAML: p.yaml, Package: binaryPkg, Args: []string{"operations"},
			BuiltIn: func() catalog.BuiltInPlugin { return openbao.NewOperationsBuiltIn("OPENBAO") }},
		Regions: []host.SupportedRegion{{Name: "Europe (Frankfurt)", TechnicalName: region}},
	})
}

// setupTenantKey mounts transit/<tenant> and creates an AES key there through the operations plugin.
func setupTenantKey(t *testing.T, ctx context.Context, w *openbao.Wrapper, ops *openbao.Operations, tenant string) string {
	t.Helper()
	if _, err := w.EnsureMount(ctx, tenant); err != nil {
		t.Fatalf("EnsureMount(%s): %v", tenant, err)
	}
	resp, err := ops.CreateKey(ctx, &operationsv1.CreateKeyRequest{Config: &commonv1.KeystoreInstanceConfig{Values: tenantCfg(tenant)},
		Algorithm: operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256, KeyType: operationsv1.KeyType_KEY_TYPE_SYSTEM_MANAGED, Region: region})
	if err != nil {
		t.Fatalf("CreateKey(%s): %v", tenant, err)
	}
	return resp.GetKeyId()
}

func newOps(t *testing.T, yaml string) *openbao.Operations {
	t.Helper()
	o := openbao.NewOperations()
	if _, err := o.Configure(context.Background(), &configv1.ConfigureRequest{YamlConfiguration: yaml}); err != nil {
		t.Fatal(err)
	}
	return o
}

func params(tenant, key string) *operationsv1.RequestParameters {
	return &operationsv1.RequestParameters{Config: &commonv1.KeystoreInstanceConfig{Values: tenantCfg(tenant)}, KeyId: key}
}

// TestWrapperAgainstPeer covers transit encrypt/decrypt/rotate/rewrap/datakey, versions, enable/disable, tenant
// isolation and the bad-input cases against the real server.
func TestWrapperAgainstPeer(t *testing.T) {
	p := startPeer(t, "1h")
	ctx := ctxT(t, 2*time.Minute)
	w := openbao.NewWrapper(p.config(t))
	ops := newOps(t, p.yaml)
	key := setupTenantKey(t, ctx, w, ops, "acme")
	setupTenantKey(t, ctx, w, ops, "globex")
	acme := tenantCfg("acme")
	aad := map[string]string{"tenant": "acme", "namespace": "team-a", "name": "db"}
	dk := []byte("0123456789abcdef0123456789abcdef")

	wr, err := w.Wrap(ctx, acme, key, dk, aad)
	if err != nil || wr.KeyVersion != "v1" {
		t.Fatalf("Wrap = %+v, %v", wr, err)
	}
	got, err := w.Unwrap(ctx, acme, key, wr, aad)
	if err != nil || string(got) != string(dk) {
		t.Fatalf("Unwrap = %q, %v", got, err)
	}

	t.Run("bad input", func(t *testing.T) {
		cases := []struct {
			name string
			err  func() error
			want error
			code codes.Code
		}{
			{"wrong aad", func() error {
				_, err := w.Unwrap(ctx, acme, key, wr, map[string]string{"tenant": "acme", "namespace": "team-b", "name": "db"})
				return err
			}, keychain.ErrIntegrity, codes.InvalidArgument},
			{"tampered ciphertext", func() error {
				bad := *wr
				bad.Ciphertext = append([]byte(nil), wr.Ciphertext...)
				bad.Ciphertext[len(bad.Ciphertext)-3] ^= 1
				_, err := w.Unwrap(ctx, acme, key, &bad, aad)
				return err
			}, keychain.ErrIntegrity, codes.InvalidArgument},
			{"not a transit ciphertext", func() error {
				_, err := w.Unwrap(ctx, acme, key, &keychain.Wrapped{Ciphertext: []byte("garbage")}, aad)
				return err
			}, keychain.ErrIntegrity, codes.InvalidArgument},
			{"missing key wrap", func() error { _, err := w.Wrap(ctx, acme, "no-such-key", dk, aad); return err }, keychain.ErrKeyNotFound, codes.NotFound},
			{"missing key unwrap", func() error { _, err := w.Unwrap(ctx, acme, "no-such-key", wr, aad); return err }, keychain.ErrKeyNotFound, codes.NotFound},
			// globex names acme's key: it resolves in globex's own mount, where no such key exists.
			{"other tenant's key", func() error { _, err := w.Unwrap(ctx, tenantCfg("globex"), key, wr, aad); return err }, keychain.ErrKeyNotFound, codes.NotFound},
			{"other tenant's mount", func() error {
				s, _ := structpb.NewStruct(map[string]any{"tenant": "globex", "mount": "transit/acme"})
				_, err := w.Unwrap(ctx, s, key, wr, aad)
				return err
			}, keychain.ErrDenied, codes.InvalidArgument},
			{"tenant without mount", func() error { _, err := w.Wrap(ctx, tenantCfg("nomount"), key, dk, aad); return err }, keychain.ErrDenied, codes.InvalidArgument},
			{"hostile key id", func() error { _, err := w.Wrap(ctx, acme, "../../sys/seal", dk, aad); return err }, nil, codes.InvalidArgument},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				err := tc.err()
				if err == nil {
					t.Fatal("want an error")
				}
				if tc.want != nil && !errors.Is(err, tc.want) {
					t.Fatalf("err = %v, want %v", err, tc.want)
				}
				if c := status.Code(err); c != tc.code {
					t.Fatalf("code = %s (%v), want %s", c, err, tc.code)
				}
			})
		}
	})

	t.Run("rotate rewrap versions", func(t *testing.T) {
		v, err := w.Rotate(ctx, acme, key)
		if err != nil || v != "v2" {
			t.Fatalf("Rotate = %q, %v", v, err)
		}
		if kv, err := w.KeyVersion(ctx, acme, key); err != nil || kv != "v2" {
			t.Fatalf("KeyVersion = %q, %v", kv, err)
		}
		re, err := w.Rewrap(ctx, acme, key, wr, aad)
		if err != nil || re.KeyVersion != "v2" {
			t.Fatalf("Rewrap = %+v, %v", re, err)
		}
		plain, err := w.Wrap(ctx, acme, key, dk, nil)
		if err != nil {
			t.Fatal(err)
		}
		rePlain, err := w.Rewrap(ctx, acme, key, plain, nil) // server-side rewrap (no aad)
		if err != nil || rePlain.KeyVersion != "v2" {
			t.Fatalf("Rewrap without aad = %+v, %v", rePlain, err)
		}
		if got, err := w.Unwrap(ctx, acme, key, rePlain, nil); err != nil || string(got) != string(dk) {
			t.Fatalf("Unwrap(rewrapped, no aad) = %v", err)
		}
		for _, x := range []*keychain.Wrapped{wr, re} {
			if got, err := w.Unwrap(ctx, acme, key, x, aad); err != nil || string(got) != string(dk) {
				t.Fatalf("Unwrap(%s) = %q, %v", x.KeyVersion, got, err)
			}
		}
		vs, err := ops.GetKeyVersions(ctx, &keyversions.GetKeyVersionsRequest{Parameters: params("acme", key)})
		if err != nil || len(vs.GetVersions()) != 2 || vs.GetVersions()[1].GetVersionId() != "v2" {
			t.Fatalf("GetKeyVersions = %v, %v", vs, err)
		}
		g, err := ops.GetKey(ctx, &operationsv1.GetKeyRequest{Parameters: params("acme", key)})
		if err != nil || g.GetLatestKeyVersionId() != "v2" || g.GetStatus() != openbao.StateEnabled {
			t.Fatalf("GetKey = %v, %v", g, err)
		}
	})

	t.Run("datakey", func(t *testing.T) {
		k, wk, err := w.DataKey(ctx, acme, key, aad)
		if err != nil || len(k) != 32 {
			t.Fatalf("DataKey = %d bytes, %v", len(k), err)
		}
		if got, err := w.Unwrap(ctx, acme, key, wk, aad); err != nil || string(got) != string(k) {
			t.Fatalf("Unwrap(datakey) = %v", err)
		}
	})

	t.Run("disable enable", func(t *testing.T) {
		if _, err := ops.DisableKey(ctx, &operationsv1.DisableKeyRequest{Parameters: params("acme", key)}); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Unwrap(ctx, acme, key, wr, aad); !errors.Is(err, keychain.ErrKeyDisabled) || status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("Unwrap of a disabled key: %v", err)
		}
		if _, err := ops.EnableKey(ctx, &operationsv1.EnableKeyRequest{Parameters: params("acme", key)}); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Unwrap(ctx, acme, key, wr, aad); err != nil {
			t.Fatalf("Unwrap after EnableKey: %v", err)
		}
	})

	t.Run("delete window", func(t *testing.T) {
		k2 := setupTenantKey(t, ctx, w, ops, "acme")
		w0 := int32(0)
		if _, err := ops.DeleteKey(ctx, &operationsv1.DeleteKeyRequest{Parameters: params("acme", k2), Window: &w0}); err != nil {
			t.Fatalf("DeleteKey(window 0): %v", err)
		}
		_, err := ops.GetKey(ctx, &operationsv1.GetKeyRequest{Parameters: params("acme", k2)})
		if !kserrors.IsStatus(err, kserrors.StatusKeyNotFound) {
			t.Fatalf("GetKey after immediate delete: %v", err)
		}
		_, err = ops.CreateKey(ctx, &operationsv1.CreateKeyRequest{Config: &commonv1.KeystoreInstanceConfig{Values: acme}, Id: &key,
			Algorithm: operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256, KeyType: operationsv1.KeyType_KEY_TYPE_SYSTEM_MANAGED})
		if status.Code(err) != codes.AlreadyExists {
			t.Fatalf("CreateKey of an existing name: %v, want AlreadyExists (never adopt)", err)
		}
	})
}

// TestSealedServer: a sealed server makes every call fail fast with "sealed" (the Account readiness reason), and
// calls work again after unseal.
func TestSealedServer(t *testing.T) {
	p := startPeer(t, "1h")
	ctx := ctxT(t, time.Minute)
	w := openbao.NewWrapper(p.config(t))
	ops := newOps(t, p.yaml)
	key := setupTenantKey(t, ctx, w, ops, "acme")
	aad := map[string]string{"tenant": "acme"}
	wr, err := w.Wrap(ctx, tenantCfg("acme"), key, []byte("k"), aad)
	if err != nil {
		t.Fatal(err)
	}
	p.srv.Seal(t)
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	start := time.Now()
	_, err = w.Unwrap(cctx, tenantCfg("acme"), key, wr, aad)
	if !errors.Is(err, openbao.ErrSealed) || !errors.Is(err, keychain.ErrUnavailable) || status.Code(err) != codes.Unavailable {
		t.Fatalf("Unwrap on a sealed server: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("took %s, past the caller's deadline", d)
	}
	_, err = ops.GetKey(cctx, &operationsv1.GetKeyRequest{Parameters: params("acme", key)})
	if status.Code(err) != codes.Unavailable || !strings.Contains(status.Convert(err).Message(), "sealed") {
		t.Fatalf("GetKey on a sealed server: %v (the Account's not-Ready reason must say sealed)", err)
	}
	if err := w.Health(ctx); !errors.Is(err, openbao.ErrSealed) {
		t.Fatalf("Health = %v, want sealed", err)
	}
	p.srv.Unseal(t)
	if _, err := w.Unwrap(ctx, tenantCfg("acme"), key, wr, aad); err != nil {
		t.Fatalf("Unwrap after unseal: %v", err)
	}
}

// TestTokenLifecycle: short-lived tokens are renewed before expiry; a token revoked mid-use and a server restart
// (which forgets every token) are answered by a fresh login, invisible to the caller.
func TestTokenLifecycle(t *testing.T) {
	p := startPeer(t, "10s")
	ctx := ctxT(t, 2*time.Minute)
	w := openbao.NewWrapper(p.config(t))
	ops := newOps(t, p.yaml)
	key := setupTenantKey(t, ctx, w, ops, "acme")
	aad := map[string]string{"tenant": "acme"}
	acme := tenantCfg("acme")
	wr, err := w.Wrap(ctx, acme, key, []byte("k"), aad)
	if err != nil {
		t.Fatal(err)
	}
	// Past 2/3 of the 10 s TTL (with 3 s of slack for a loaded machine): the next call renews first.
	time.Sleep(7 * time.Second)
	if _, err := w.Unwrap(ctx, acme, key, wr, aad); err != nil {
		t.Fatalf("Unwrap after 7 s: %v", err)
	}
	logins, renewals := w.Logins()
	if logins != 1 || renewals < 1 {
		t.Fatalf("logins=%d renewals=%d; want one login and a renewal", logins, renewals)
	}
	// Revoke every AppRole token behind the plugin's back.
	if _, err := p.srv.Root.Logical().WriteWithContext(ctx, "sys/leases/revoke-prefix/auth/approle", map[string]any{}); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	if _, err := w.Unwrap(ctx, acme, key, wr, aad); err != nil {
		t.Fatalf("Unwrap after the token was revoked: %v", err)
	}
	if logins, _ := w.Logins(); logins != 2 {
		t.Fatalf("logins = %d after revocation, want 2", logins)
	}

	// Restart: the in-memory server loses everything; re-create auth (same ids), mount and key.
	p.srv.Restart(t)
	p.setupAuth(t)
	if _, err := w.Unwrap(ctx, acme, key, wr, aad); !errors.Is(err, keychain.ErrDenied) && !errors.Is(err, keychain.ErrKeyNotFound) {
		t.Fatalf("Unwrap after restart before the mount exists again: %v", err)
	}
	key2 := setupTenantKey(t, ctx, w, ops, "acme")
	if _, err := w.Wrap(ctx, acme, key2, []byte("k"), aad); err != nil {
		t.Fatalf("Wrap after restart: %v", err)
	}
	if logins, _ := w.Logins(); logins < 3 {
		t.Fatalf("logins = %d after restart, want a new login", logins)
	}
}

// testing.TB variants for benchmarks.

func startPeerB(b *testing.B) *peer {
	b.Helper()
	srv := vault.Start(b)
	p := &peer{srv: srv, roleTokenTTL: "1h"}
	roleID, sidFile := srv.AppRole(b, "apeiro-cmk", vault.PluginPolicy, "1h")
	p.roleID, p.sidFile = roleID, sidFile
	p.yaml = fmt.Sprintf("address: %s\nregion: %s\nauth: {method: approle, roleId: %q, secretIdFile: %q}\n", srv.Addr, region, roleID, sidFile)
	return p
}

func (p *peer) configB(b *testing.B) *openbao.Config {
	c, err := openbao.ParseConfig(p.yaml)
	if err != nil {
		b.Fatal(err)
	}
	return c
}

func newOpsB(b *testing.B, yaml string) *openbao.Operations {
	o := openbao.NewOperations()
	if _, err := o.Configure(context.Background(), &configv1.ConfigureRequest{YamlConfiguration: yaml}); err != nil {
		b.Fatal(err)
	}
	return o
}

func setupTenantKeyB(b *testing.B, ctx context.Context, w *openbao.Wrapper, ops *openbao.Operations, tenant string) string {
	if _, err := w.EnsureMount(ctx, tenant); err != nil {
		b.Fatal(err)
	}
	resp, err := ops.CreateKey(ctx, &operationsv1.CreateKeyRequest{Config: &commonv1.KeystoreInstanceConfig{Values: tenantCfg(tenant)},
		Algorithm: operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256, KeyType: operationsv1.KeyType_KEY_TYPE_SYSTEM_MANAGED})
	if err != nil {
		b.Fatal(err)
	}
	return resp.GetKeyId()
}
