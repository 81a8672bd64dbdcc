package thales_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"

	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	kserrors "github.com/openkcm/plugin-sdk/pkg/plugin/keystore/errors"
	commonv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/common/v1"
	managementv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/management/v1"
	operationsv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/operations/v1"
	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"

	"github.com/apeirora/apeiro-cmk/internal/testpeers/softhsm"
	"github.com/apeirora/apeiro-cmk/pkg/keychain"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/keyversions"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/thales"
)

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// ops returns an operations plugin configured for tok.
func ops(t testing.TB, tok *softhsm.Token) *thales.Operations {
	o := thales.NewOperations()
	if _, err := o.Configure(context.Background(), &configv1.ConfigureRequest{YamlConfiguration: pluginYAML(tok)}); err != nil {
		t.Fatal(err)
	}
	return o
}

// access returns tenant's access data (what the Wrapper adds to an Account's instance configuration).
func access(t testing.TB, tok *softhsm.Token, tenant string) *structpb.Struct {
	cfg, err := thales.ParseConfig(pluginYAML(tok))
	if err != nil {
		t.Fatal(err)
	}
	w := thales.NewWrapper(cfg)
	extra, err := w.AccessData(account(tenant))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]any{thales.FieldTenant: tenant}
	for k, v := range extra {
		m[k] = v
	}
	s, _ := structpb.NewStruct(m)
	return s
}

func createKey(t testing.TB, o *thales.Operations, values *structpb.Struct, alg operationsv1.KeyAlgorithm) string {
	t.Helper()
	resp, err := o.CreateKey(testCtx(t), &operationsv1.CreateKeyRequest{Config: &commonv1.KeystoreInstanceConfig{Values: values}, Algorithm: alg, KeyType: operationsv1.KeyType_KEY_TYPE_SYSTEM_MANAGED})
	if err != nil {
		t.Fatalf("CreateKey: %v", err)
	}
	return resp.GetKeyId()
}

func params(values *structpb.Struct, id string) *operationsv1.RequestParameters {
	return &operationsv1.RequestParameters{Config: &commonv1.KeystoreInstanceConfig{Values: values}, KeyId: id}
}

func wantSentinel(t *testing.T, what string, err, sentinel error) {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Fatalf("%s: got %v, want %v", what, err, sentinel)
	}
}

// TestKeyLifecycle: create (AES-256 and RSA-3072), get, versions, disable (enforced by the token), enable, delete
// with a window (PENDING_DELETION), delete now.
func TestKeyLifecycle(t *testing.T) {
	tok := softhsm.Start(t, softhsm.Main)
	o := ops(t, tok)
	a := access(t, tok, "acme")
	ctx := testCtx(t)
	for _, alg := range []operationsv1.KeyAlgorithm{operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256, operationsv1.KeyAlgorithm_KEY_ALGORITHM_RSA3072} {
		id := createKey(t, o, a, alg)
		got, err := o.GetKey(ctx, &operationsv1.GetKeyRequest{Parameters: params(a, id)})
		if err != nil {
			t.Fatalf("GetKey(%s): %v %v", id, err, status.Convert(err).Details())
		}
		if got.GetAlgorithm() != alg || got.GetStatus() != thales.StateEnabled || got.GetLatestKeyVersionId() != thales.Version || got.GetLatestRotationTime() == nil {
			t.Fatalf("GetKey = %v", got)
		}
		vs, err := o.GetKeyVersions(ctx, &keyversions.GetKeyVersionsRequest{Parameters: params(a, id)})
		if err != nil || len(vs.GetVersions()) != 1 || vs.GetVersions()[0].GetVersionId() != thales.Version {
			t.Fatalf("GetKeyVersions = %v, %v", vs, err)
		}
		if _, err := o.DisableKey(ctx, &operationsv1.DisableKeyRequest{Parameters: params(a, id)}); err != nil {
			t.Fatal(err)
		}
		if g, _ := o.GetKey(ctx, &operationsv1.GetKeyRequest{Parameters: params(a, id)}); g.GetStatus() != thales.StateDisabled {
			t.Fatalf("after disable: %v", g)
		}
		if _, err := o.EnableKey(ctx, &operationsv1.EnableKeyRequest{Parameters: params(a, id)}); err != nil {
			t.Fatal(err)
		}
		w := int32(7)
		if _, err := o.DeleteKey(ctx, &operationsv1.DeleteKeyRequest{Parameters: params(a, id), Window: &w}); err != nil {
			t.Fatal(err)
		}
		if g, _ := o.GetKey(ctx, &operationsv1.GetKeyRequest{Parameters: params(a, id)}); g.GetStatus() != thales.StatePendingDeletion {
			t.Fatalf("after delete with window: %v", g)
		}
		_, err = o.EnableKey(ctx, &operationsv1.EnableKeyRequest{Parameters: params(a, id)})
		if status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("enable a key pending deletion: %v", err)
		}
		w = 0
		if _, err := o.DeleteKey(ctx, &operationsv1.DeleteKeyRequest{Parameters: params(a, id), Window: &w}); err != nil {
			t.Fatal(err)
		}
		_, err = o.GetKey(ctx, &operationsv1.GetKeyRequest{Parameters: params(a, id)})
		if !kserrors.IsStatus(err, kserrors.StatusKeyNotFound) {
			t.Fatalf("after delete now: %v", err)
		}
	}
	// BYOK is refused precisely; a key label taken twice is AlreadyExists.
	_, err := o.CreateKey(ctx, &operationsv1.CreateKeyRequest{Config: &commonv1.KeystoreInstanceConfig{Values: a}, Algorithm: operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256, KeyType: operationsv1.KeyType_KEY_TYPE_BYOK})
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("BYOK: %v", err)
	}
	label := "dup-" + t.Name()
	req := &operationsv1.CreateKeyRequest{Config: &commonv1.KeystoreInstanceConfig{Values: a}, Id: &label, Algorithm: operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256, KeyType: operationsv1.KeyType_KEY_TYPE_SYSTEM_MANAGED}
	if _, err := o.CreateKey(ctx, req); err != nil {
		t.Fatal(err)
	}
	if _, err := o.CreateKey(ctx, req); status.Code(err) != codes.AlreadyExists {
		t.Fatalf("second key with label %q: %v", label, err)
	}
}

// TestWrapper: wrap/unwrap inside the token; another aad, a tampered blob, a disabled key, a missing key and an RSA
// key each fail with their own sentinel.
func TestWrapper(t *testing.T) {
	tok := softhsm.Start(t, softhsm.Main)
	o := ops(t, tok)
	a := access(t, tok, "acme")
	cfg, _ := thales.ParseConfig(pluginYAML(tok))
	w := thales.NewWrapper(cfg)
	ctx := testCtx(t)
	id := createKey(t, o, a, operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256)
	dk := []byte("0123456789abcdef0123456789abcdef")
	aad := map[string]string{"tenant": "acme", "serviceEncryptionKey": "db"}
	wr, err := w.Wrap(ctx, a, id, dk, aad)
	if err != nil {
		t.Fatal(err)
	}
	if len(wr.Ciphertext) != 1+12+32+16 || bytes.Contains(wr.Ciphertext, dk) {
		t.Fatalf("wrapped = %d bytes", len(wr.Ciphertext))
	}
	got, err := w.Unwrap(ctx, a, id, wr, aad)
	if err != nil || !bytes.Equal(got, dk) {
		t.Fatalf("Unwrap = %x, %v", got, err)
	}
	// The same key named by bare label and by URI with the id works too.
	_, err = w.Unwrap(ctx, a, id, wr, map[string]string{"tenant": "acme", "serviceEncryptionKey": "other"})
	wantSentinel(t, "unwrap with another aad", err, keychain.ErrIntegrity)
	bad := &keychain.Wrapped{Ciphertext: bytes.Clone(wr.Ciphertext)}
	bad.Ciphertext[20] ^= 1
	_, err = w.Unwrap(ctx, a, id, bad, aad)
	wantSentinel(t, "unwrap of a tampered blob", err, keychain.ErrIntegrity)
	_, err = w.Unwrap(ctx, a, id, &keychain.Wrapped{Ciphertext: []byte{9, 9}}, aad)
	wantSentinel(t, "unwrap of garbage", err, keychain.ErrIntegrity)
	other := createKey(t, o, a, operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256)
	_, err = w.Unwrap(ctx, a, other, wr, aad)
	wantSentinel(t, "unwrap with another key", err, keychain.ErrIntegrity)

	if _, err := o.DisableKey(ctx, &operationsv1.DisableKeyRequest{Parameters: params(a, id)}); err != nil {
		t.Fatal(err)
	}
	_, err = w.Wrap(ctx, a, id, dk, aad)
	wantSentinel(t, "wrap with a disabled key", err, keychain.ErrKeyDisabled)
	_, err = w.Unwrap(ctx, a, id, wr, aad)
	wantSentinel(t, "unwrap with a disabled key", err, keychain.ErrKeyDisabled)
	_, err = w.Wrap(ctx, a, "pkcs11:token=apeiro;object=no-such-key", dk, aad)
	wantSentinel(t, "wrap with a missing key", err, keychain.ErrKeyNotFound)
	_, err = w.Wrap(ctx, a, "pkcs11:token=not-configured;object=x", dk, aad)
	if err == nil || !strings.Contains(err.Error(), "not one of") {
		t.Fatalf("wrap on an unconfigured token: %v", err)
	}
	_, err = w.Wrap(ctx, a, "pkcs11:object=x?pin-value=1234", dk, aad)
	wantSentinel(t, "a key reference with an inline PIN", err, thales.ErrInlinePIN)
}

// TestTenantConfinement: a tenant never sees another tenant's key, even by its exact URI, and a tenant cannot pass
// itself off as another (the access key is bound to the tenant).
func TestTenantConfinement(t *testing.T) {
	tok := softhsm.Start(t, softhsm.Main)
	o := ops(t, tok)
	acme, globex := access(t, tok, "acme"), access(t, tok, "globex")
	cfg, _ := thales.ParseConfig(pluginYAML(tok))
	w := thales.NewWrapper(cfg)
	ctx := testCtx(t)
	label := "shared-name"
	mk := func(values *structpb.Struct) string {
		resp, err := o.CreateKey(ctx, &operationsv1.CreateKeyRequest{Config: &commonv1.KeystoreInstanceConfig{Values: values}, Id: &label,
			Algorithm: operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256, KeyType: operationsv1.KeyType_KEY_TYPE_SYSTEM_MANAGED})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetKeyId()
	}
	acmeKey := mk(acme)
	globexKey := mk(globex) // the same label on the same token: allowed, separate keys
	if acmeKey != globexKey {
		t.Fatalf("URIs differ: %s vs %s (labels are per tenant)", acmeKey, globexKey)
	}
	aad := map[string]string{"tenant": "acme"}
	wr, err := w.Wrap(ctx, acme, acmeKey, []byte("acme data key 32 bytes long....."), aad)
	if err != nil {
		t.Fatal(err)
	}
	// globex names the same URI: it resolves to globex's own key, which cannot open acme's blob.
	_, err = w.Unwrap(ctx, globex, acmeKey, wr, aad)
	wantSentinel(t, "globex unwrapping acme's blob", err, keychain.ErrIntegrity)
	onlyAcme := "acme-only"
	if _, err := o.CreateKey(ctx, &operationsv1.CreateKeyRequest{Config: &commonv1.KeystoreInstanceConfig{Values: acme}, Id: &onlyAcme,
		Algorithm: operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256, KeyType: operationsv1.KeyType_KEY_TYPE_SYSTEM_MANAGED}); err != nil {
		t.Fatal(err)
	}
	_, err = o.GetKey(ctx, &operationsv1.GetKeyRequest{Parameters: params(globex, onlyAcme)})
	if !kserrors.IsStatus(err, kserrors.StatusKeyNotFound) {
		t.Fatalf("globex reading acme's key: %v", err)
	}
	_, err = o.DisableKey(ctx, &operationsv1.DisableKeyRequest{Parameters: params(globex, onlyAcme)})
	if !kserrors.IsStatus(err, kserrors.StatusKeyNotFound) {
		t.Fatalf("globex disabling acme's key: %v", err)
	}
	// globex claiming to be acme with its own access key is refused.
	m := globex.AsMap()
	m[thales.FieldTenant] = "acme"
	forged, _ := structpb.NewStruct(m)
	_, err = o.GetKey(ctx, &operationsv1.GetKeyRequest{Parameters: params(forged, onlyAcme)})
	if !kserrors.IsStatus(err, kserrors.StatusProviderAuthenticationError) {
		t.Fatalf("forged tenant: %v", err)
	}
	_, err = w.Wrap(ctx, forged, onlyAcme, []byte("x"), nil)
	wantSentinel(t, "forged tenant wrapping", err, keychain.ErrDenied)
}

// TestBadToken: a wrong PIN is an authentication error (not "key not found"), an absent token and a missing module
// are unavailable, and a caller's deadline is honoured while every session is busy.
func TestBadToken(t *testing.T) {
	second := softhsm.Start(t, softhsm.Second)
	ctx := testCtx(t)
	wrongPIN := filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(wrongPIN, []byte("not-the-pin\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	yamlFor := func(module, label, pinFile string, extra string) string {
		return fmt.Sprintf("module: %s\ntokens:\n  - label: %s\n    pin: {source: file, file: {path: %s}}\n%s", module, label, pinFile, extra)
	}
	cases := []struct {
		name     string
		yaml     string
		want     *status.Status
		wantCode codes.Code
		wantMsg  string
	}{
		{name: "wrong PIN", yaml: yamlFor(second.Module, second.Label, wrongPIN, ""), want: kserrors.StatusProviderAuthenticationError, wantMsg: "CKR_PIN_INCORRECT"},
		{name: "absent token", yaml: yamlFor(second.Module, "no-such-token", second.PINFile, ""), wantCode: codes.FailedPrecondition, wantMsg: "no PKCS#11 token labelled"},
		{name: "missing module", yaml: yamlFor("/nonexistent/libpkcs11.so", second.Label, second.PINFile, ""), wantCode: codes.FailedPrecondition, wantMsg: "cannot be loaded"},
		{name: "unreadable PIN file", yaml: yamlFor(second.Module, second.Label, "/nonexistent/pin", ""), wantCode: codes.FailedPrecondition, wantMsg: "reading the PIN"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := thales.NewManagement()
			if _, err := m.Configure(ctx, &configv1.ConfigureRequest{YamlConfiguration: tc.yaml}); err != nil {
				t.Fatal(err)
			}
			_, err := m.CreateKeystore(ctx, &managementv1.CreateKeystoreRequest{})
			st := status.Convert(err)
			detail := st.Message()
			for _, d := range st.Details() {
				if ei, ok := d.(*errdetails.ErrorInfo); ok {
					detail = ei.GetMetadata()["detail"]
				}
			}
			if tc.want != nil && !kserrors.IsStatus(err, tc.want) || tc.want == nil && st.Code() != tc.wantCode || !strings.Contains(detail, tc.wantMsg) {
				t.Fatalf("got %v (%s), want %v/%s containing %q", err, detail, tc.want, tc.wantCode, tc.wantMsg)
			}
			if strings.Contains(detail, "not-the-pin") || strings.Contains(detail, second.PIN) {
				t.Fatalf("error discloses the PIN: %s", detail)
			}
		})
	}

}
