package aws_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	kserrors "github.com/openkcm/plugin-sdk/pkg/plugin/keystore/errors"
	commonv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/common/v1"
	operationsv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/operations/v1"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/apeirora/apeiro-cmk/internal/testpeers/moto"
	"github.com/apeirora/apeiro-cmk/pkg/admission/pluginbacked"
	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/keychain"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/aws"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/keyversions"
)

// instance is an Account's instance configuration as the webhook builds it (pkg/admission/pluginbacked).
func instance(t testing.TB, tenant, role string) *structpb.Struct {
	t.Helper()
	s, err := structpb.NewStruct(map[string]any{"tenant": tenant, "roleArn": role, "namespace": tenant + "-ns"})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func params(v *structpb.Struct, id string) *operationsv1.RequestParameters {
	return &operationsv1.RequestParameters{Config: &commonv1.KeystoreInstanceConfig{Values: v}, KeyId: id}
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// createKey creates an AES-256 key as tenant through the operations plugin (the whole IRSA chain).
func createKey(t testing.TB, ops *aws.Operations, v *structpb.Struct) string {
	t.Helper()
	resp, err := ops.CreateKey(testCtx(t), &operationsv1.CreateKeyRequest{
		Config: &commonv1.KeystoreInstanceConfig{Values: v}, Algorithm: operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256,
		KeyType: operationsv1.KeyType_KEY_TYPE_SYSTEM_MANAGED,
	})
	if err != nil {
		t.Fatalf("CreateKey: %v", err)
	}
	return resp.GetKeyId()
}

// TestDoDRoundTrip is the Definition of Done: a payload is encrypted and decrypted with an AWS KMS key reached only
// through IRSA — web identity → platform role → tenant role (ExternalId + tenant tag) → KMS — with the plugin
// configured from the environment alone (the AWS_ENDPOINT_URL_STS path) and moto enforcing signatures and policies.
func TestDoDRoundTrip(t *testing.T) {
	srv := moto.Start(t, moto.Options{Tenants: []string{"acme"}})
	srv.Setenv(t)
	ops := aws.NewOperations()
	acme := instance(t, "acme", srv.TenantRoleARN("acme"))
	keyID := createKey(t, ops, acme)
	if !strings.HasPrefix(keyID, "arn:aws:kms:"+srv.Region+":"+srv.TenantAccount("acme")+":key/") {
		t.Fatalf("key %s is not in the tenant's account/region", keyID)
	}

	w := aws.NewWrapper(nil)
	payload := []byte("Definition of Done: KMS via IRSA")
	aad := map[string]string{"tenant": "acme", "namespace": "acme-ns", "key": "orders"}
	wrapped, err := w.Wrap(testCtx(t), acme, keyID, payload, aad)
	if err != nil {
		t.Fatalf("Wrap: %v", err)
	}
	if bytes.Contains(wrapped.Ciphertext, payload) {
		t.Fatal("ciphertext contains the plaintext")
	}
	got, err := w.Unwrap(testCtx(t), acme, keyID, wrapped, aad)
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("Unwrap = %q, %v; want %q", got, err, payload)
	}

	// The aad binds the ciphertext to its owner.
	other := map[string]string{"tenant": "acme", "namespace": "acme-ns", "key": "invoices"}
	if _, err := w.Unwrap(testCtx(t), acme, keyID, wrapped, other); !errors.Is(err, keychain.ErrIntegrity) {
		t.Fatalf("Unwrap with another aad: %v, want ErrIntegrity", err)
	}
	tampered := &keychain.Wrapped{Ciphertext: append([]byte(nil), wrapped.Ciphertext...)}
	tampered.Ciphertext[len(tampered.Ciphertext)/2] ^= 0xff
	if _, err := w.Unwrap(testCtx(t), acme, keyID, tampered, aad); err == nil {
		t.Fatal("Unwrap of a tampered ciphertext succeeded")
	}

	// Credentials are cached per role and region: many calls, one AssumeRole.
	for i := 0; i < 20; i++ {
		if _, err := w.Wrap(testCtx(t), acme, keyID, payload, aad); err != nil {
			t.Fatal(err)
		}
	}
	if cached, assumes := w.CachedRoles(); cached != 1 || assumes != 1 {
		t.Fatalf("cached roles = %d, AssumeRole calls = %d; want 1 and 1", cached, assumes)
	}

	// GetKey / GetKeyVersions through the same chain.
	gk, err := ops.GetKey(testCtx(t), &operationsv1.GetKeyRequest{Parameters: params(acme, keyID)})
	if err != nil || gk.GetStatus() != aws.StateEnabled || gk.GetAlgorithm() != operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256 || gk.GetLatestKeyVersionId() == "" {
		t.Fatalf("GetKey = %v, %v", gk, err)
	}
	vs, err := ops.GetKeyVersions(testCtx(t), &keyversions.GetKeyVersionsRequest{Parameters: params(acme, keyID)})
	if err != nil || len(vs.GetVersions()) == 0 || vs.GetVersions()[0].GetVersionId() != "v1" || vs.GetVersions()[0].GetCreationTime() == nil {
		t.Fatalf("GetKeyVersions = %v, %v", vs, err)
	}
}

// TestTenantIsolation: a tenant can name neither another tenant's role nor another tenant's key, with or without
// the two tenants sharing an AWS account.
func TestTenantIsolation(t *testing.T) {
	srv := moto.Start(t, moto.Options{
		Tenants:  []string{"acme", "globex", "initech"},
		Accounts: map[string]string{"initech": moto.PlatformAccount}, // same account as the platform: moto checks ExternalId there
	})
	srv.Setenv(t)
	ops := aws.NewOperations()
	w := aws.NewWrapper(nil)
	acme := instance(t, "acme", srv.TenantRoleARN("acme"))
	globex := instance(t, "globex", srv.TenantRoleARN("globex"))
	acmeKey, globexKey := createKey(t, ops, acme), createKey(t, ops, globex)
	aad := map[string]string{"tenant": "acme"}

	cases := []struct {
		name  string
		cfg   *structpb.Struct
		keyID string
		field string
	}{
		{"acme names globex's role", instance(t, "acme", srv.TenantRoleARN("globex")), globexKey, "roleArn"},
		{"acme names globex's role for its own key", instance(t, "acme", srv.TenantRoleARN("globex")), acmeKey, "roleArn"},
		{"acme names globex's key with its own role", acme, globexKey, "keyId"},
		{"globex names acme's key", globex, acmeKey, "keyId"},
		{"a role of another account with acme's name", instance(t, "acme", "arn:aws:iam::999999999999:role/apeiro-cmk-tenant-globex"), acmeKey, "roleArn"},
		{"a platform role", instance(t, "acme", srv.PlatformRoleARN), acmeKey, "roleArn"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ops.GetKey(testCtx(t), &operationsv1.GetKeyRequest{Parameters: params(tc.cfg, tc.keyID)})
			if !kserrors.IsStatus(err, kserrors.StatusProviderAuthenticationError) {
				t.Fatalf("GetKey: %v, want StatusProviderAuthenticationError", err)
			}
			if f := fieldOf(err); f != tc.field {
				t.Fatalf("error names field %q, want %q (%v)", f, tc.field, status.Convert(err).Details())
			}
			_, err = w.Wrap(testCtx(t), tc.cfg, tc.keyID, []byte("x"), aad)
			if !errors.Is(err, keychain.ErrDenied) || !strings.Contains(err.Error(), tc.field) && !strings.Contains(err.Error(), "role") {
				t.Fatalf("Wrap: %v, want ErrDenied naming %s", err, tc.field)
			}
		})
	}

	// AWS-side enforcement: the trust policy requires ExternalId = tenant. moto evaluates it for roles in the
	// caller's own account (initech's role lives in the platform's account), so presenting another tenant's
	// ExternalId fails at STS even when a request got past the plugin's name rule.
	t.Run("trust policy ExternalId", func(t *testing.T) {
		ctx := testCtx(t)
		cfg, err := config.LoadDefaultConfig(ctx)
		if err != nil {
			t.Fatal(err)
		}
		stsc := sts.NewFromConfig(cfg)
		for _, tc := range []struct {
			externalID string
			ok         bool
		}{{"initech", true}, {"acme", false}} { // (moto lets a request without ExternalId through; AWS does not)
			in := &sts.AssumeRoleInput{RoleArn: sdkaws.String(srv.TenantRoleARN("initech")), RoleSessionName: sdkaws.String("t")}
			if tc.externalID != "" {
				in.ExternalId = sdkaws.String(tc.externalID)
			}
			_, err := stsc.AssumeRole(ctx, in)
			if (err == nil) != tc.ok {
				t.Fatalf("AssumeRole(initech's role, ExternalId %q): %v, want ok=%v", tc.externalID, err, tc.ok)
			}
		}
		// And through the plugin, initech's own binding works.
		initech := instance(t, "initech", srv.TenantRoleARN("initech"))
		createKey(t, ops, initech)
	})
}

func fieldOf(err error) string {
	for _, d := range status.Convert(err).Details() {
		if m, ok := d.(interface{ GetMetadata() map[string]string }); ok {
			return m.GetMetadata()["field"]
		}
	}
	return ""
}

// TestKeyStates: disabled, pending-deletion and missing keys give the exact statuses, through the RPCs and the
// Wrapper.
func TestKeyStates(t *testing.T) {
	srv := moto.Start(t, moto.Options{Tenants: []string{"acme"}})
	srv.Setenv(t)
	ops := aws.NewOperations()
	w := aws.NewWrapper(nil)
	acme := instance(t, "acme", srv.TenantRoleARN("acme"))
	aad := map[string]string{"tenant": "acme"}

	disabled := createKey(t, ops, acme)
	if _, err := ops.DisableKey(testCtx(t), &operationsv1.DisableKeyRequest{Parameters: params(acme, disabled)}); err != nil {
		t.Fatal(err)
	}
	pending := createKey(t, ops, acme)
	window := int32(7)
	if _, err := ops.DeleteKey(testCtx(t), &operationsv1.DeleteKeyRequest{Parameters: params(acme, pending), Window: &window}); err != nil {
		t.Fatal(err)
	}
	// Deleting again is idempotent.
	if _, err := ops.DeleteKey(testCtx(t), &operationsv1.DeleteKeyRequest{Parameters: params(acme, pending), Window: &window}); err != nil {
		t.Fatalf("second DeleteKey: %v", err)
	}
	missing := srv.KeyARN("acme", "00000000-0000-4000-8000-000000000000")

	// The webhook's L1 key probe (pluginbacked.KeyProber, GetKey through this plugin): only an enabled key answers;
	// a disabled or pending-deletion key is refused naming its state only, a missing one is not found.
	prober := &pluginbacked.KeyProber{
		Client:         func(cmkv1.KeystoreType) (pluginbacked.KeyOpsClient, error) { return getKeyOnly{ops}, nil },
		InstanceConfig: func(*cmkv1.Account) (*structpb.Struct, error) { return acme, nil },
	}
	probe := func(key string) error {
		return prober.ProbeKey(testCtx(t), &cmkv1.Account{Spec: cmkv1.AccountSpec{Keystore: cmkv1.KeystoreAWS, KeyRef: key, Region: srv.Region}})
	}
	if err := probe(createKey(t, ops, acme)); err != nil {
		t.Fatalf("probe of an enabled key: %v", err)
	}
	for key, state := range map[string]string{disabled: aws.StateDisabled, pending: aws.StatePendingDeletion} {
		var se *keychain.KeyStateError
		if err := probe(key); !errors.As(err, &se) || se.State != state || !errors.Is(err, keychain.ErrKeyDisabled) {
			t.Fatalf("probe of a %s key: %v, want a KeyStateError naming %s", state, err, state)
		}
	}
	if err := probe(missing); !errors.Is(err, keychain.ErrKeyNotFound) {
		t.Fatalf("probe of a missing key: %v, want ErrKeyNotFound", err)
	}

	for _, tc := range []struct {
		name, key, state string
		wrapErr          error
		enableCode       codes.Code
	}{
		{"disabled", disabled, aws.StateDisabled, keychain.ErrKeyDisabled, codes.OK},
		{"pending deletion", pending, aws.StatePendingDeletion, keychain.ErrKeyDisabled, codes.FailedPrecondition},
		{"missing", missing, "", keychain.ErrKeyNotFound, codes.NotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, err := ops.GetKey(testCtx(t), &operationsv1.GetKeyRequest{Parameters: params(acme, tc.key)})
			if tc.state == "" {
				if !kserrors.IsStatus(err, kserrors.StatusKeyNotFound) {
					t.Fatalf("GetKey: %v, want StatusKeyNotFound", err)
				}
			} else if err != nil || g.GetStatus() != tc.state {
				t.Fatalf("GetKey = %v, %v; want status %s", g, err, tc.state)
			}
			_, err = w.Wrap(testCtx(t), acme, tc.key, []byte("k"), aad)
			if !errors.Is(err, tc.wrapErr) {
				t.Fatalf("Wrap: %v, want %v", err, tc.wrapErr)
			}
			if st, ok := status.FromError(err); !ok || (tc.state != "" && st.Code() != codes.FailedPrecondition) {
				t.Fatalf("Wrap status: %v", st)
			}
			if tc.name == "disabled" {
				return
			}
			_, err = ops.EnableKey(testCtx(t), &operationsv1.EnableKeyRequest{Parameters: params(acme, tc.key)})
			if status.Code(err) != tc.enableCode {
				t.Fatalf("EnableKey: %v, want %s", err, tc.enableCode)
			}
		})
	}
	// A malformed key id is InvalidArgument naming the field, never an AWS round trip.
	_, err := ops.GetKey(testCtx(t), &operationsv1.GetKeyRequest{Parameters: params(acme, "arn:aws:kms:eu-central-1:12:key/x")})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "keyId") {
		t.Fatalf("malformed ARN: %v", err)
	}
	// A key ARN in another region than the Account's is refused, naming the region.
	withRegion := instance(t, "acme", srv.TenantRoleARN("acme"))
	withRegion.Fields["region"] = structpb.NewStringValue("us-west-2")
	_, err = ops.GetKey(testCtx(t), &operationsv1.GetKeyRequest{Parameters: params(withRegion, disabled)})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "region") {
		t.Fatalf("wrong region: %v", err)
	}
}

// getKeyOnly serves the in-process plugin's GetKey as the gRPC client the prober expects.
type getKeyOnly struct{ ops *aws.Operations }

func (g getKeyOnly) GetKey(ctx context.Context, in *operationsv1.GetKeyRequest, _ ...grpc.CallOption) (*operationsv1.GetKeyResponse, error) {
	return g.ops.GetKey(ctx, in)
}

// TestMotoGoesAway: when the keystore disappears mid-run, calls fail fast with a clear Unavailable error (bounded
// retries and per-attempt timeouts), never hang.
func TestMotoGoesAway(t *testing.T) {
	srv := moto.Start(t, moto.Options{Tenants: []string{"acme"}})
	srv.Setenv(t)
	ops := aws.NewOperations()
	w := aws.NewWrapper(nil)
	acme := instance(t, "acme", srv.TenantRoleARN("acme"))
	keyID := createKey(t, ops, acme)
	if _, err := w.Wrap(testCtx(t), acme, keyID, []byte("k"), nil); err != nil {
		t.Fatal(err)
	}
	srv.Stop()

	start := time.Now()
	_, err := w.Wrap(testCtx(t), acme, keyID, []byte("k"), nil)
	if !errors.Is(err, keychain.ErrUnavailable) || status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("Wrap after stop: %v, want Unavailable / ErrUnavailable", err)
	}
	_, err = ops.GetKey(testCtx(t), &operationsv1.GetKeyRequest{Parameters: params(acme, keyID)})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("GetKey after stop: %v, want Unavailable", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("failing took %s; want bounded retries", d)
	}
	// A caller's short deadline is honoured.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start = time.Now()
	_, err = ops.GetKey(ctx, &operationsv1.GetKeyRequest{Parameters: params(acme, keyID)})
	if err == nil || time.Since(start) > 3*time.Second {
		t.Fatalf("GetKey with a 300ms deadline: %v after %s", err, time.Since(start))
	}
}

// TestExpiredWebIdentityToken: an expired projected token is refused before STS with a message naming the file.
func TestExpiredWebIdentityToken(t *testing.T) {
	srv := moto.Start(t, moto.Options{Tenants: []string{"acme"}})
	srv.Setenv(t)
	tok := filepath.Join(t.TempDir(), "expired.jwt")
	if err := os.WriteFile(tok, []byte(moto.FakeJWT("sa", time.Now().Add(-time.Minute))), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_WEB_IDENTITY_TOKEN_FILE", tok)
	ops := aws.NewOperations()
	acme := instance(t, "acme", srv.TenantRoleARN("acme"))
	_, err := ops.GetKey(testCtx(t), &operationsv1.GetKeyRequest{Parameters: params(acme, srv.KeyARN("acme", "00000000-0000-4000-8000-000000000000"))})
	if !kserrors.IsStatus(err, kserrors.StatusProviderAuthenticationError) {
		t.Fatalf("GetKey with an expired token: %v", err)
	}
	w := aws.NewWrapper(nil)
	_, err = w.Wrap(testCtx(t), acme, srv.KeyARN("acme", "00000000-0000-4000-8000-000000000000"), []byte("k"), nil)
	if !errors.Is(err, keychain.ErrDenied) || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("Wrap with an expired token: %v", err)
	}
}

// TestGenericEndpointOnly: with only AWS_ENDPOINT_URL set (the case in which the SDK's own web-identity chain would
// call the real regional STS), the plugin still sends every call, the web-identity exchange included, to it.
func TestGenericEndpointOnly(t *testing.T) {
	srv := moto.Start(t, moto.Options{Tenants: []string{"acme"}})
	srv.Setenv(t)
	for _, k := range []string{"AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL_KMS", "AWS_ENDPOINT_URL_IAM"} {
		t.Setenv(k, "")
	}
	ops := aws.NewOperations()
	acme := instance(t, "acme", srv.TenantRoleARN("acme"))
	keyID := createKey(t, ops, acme)
	if _, err := ops.GetKey(testCtx(t), &operationsv1.GetKeyRequest{Parameters: params(acme, keyID)}); err != nil {
		t.Fatal(err)
	}
}
