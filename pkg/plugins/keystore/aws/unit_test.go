package aws

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	kserrors "github.com/openkcm/plugin-sdk/pkg/plugin/keystore/errors"
	commonv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/common/v1"
	operationsv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/operations/v1"
	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/cmkcompat"
)

func TestParseConfig(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, wantErr string
	}{
		{"empty", "", ""},
		{"full", "region: eu-west-1\nregions: [eu-west-1]\nrolePattern: 'cmk/{tenant}'\naccounts: ['111122223333']\ncallTimeout: 5s\nbudget: 20s\nmaxAttempts: 3\nsessionDuration: 30m\ndefaultDeletionWindowDays: 7\nendpoints: {kms: 'https://kms.example'}\n", ""},
		{"CMK supportedregions", "supportedregions: {source: embedded, value: '{\"regions\":[{\"name\":\"EU\",\"technicalName\":\"eu-central-1\"}]}', env: '', file: {path: '', format: '', jsonPath: ''}}\n", ""},
		{"static key", "accessKeyId: AKIAXXXX\n", "static AWS credentials are refused"},
		{"nested static key", "webIdentity: {roleArn: 'arn:aws:iam::123456789012:role/p'}\ncredentials: {aws_secret_access_key: x}\n", "static AWS credentials are refused"},
		{"bad region", "region: mars\n", `region "mars"`},
		{"bad regions", "regions: [eu-central-1, 'x y']\n", "regions"},
		{"pattern without tenant", "rolePattern: fixed\n", "rolePattern"},
		{"pattern twice", "rolePattern: '{tenant}-{tenant}'\n", "rolePattern"},
		{"bad account", "accounts: ['12']\n", "accounts"},
		{"bad endpoint", "endpoints: {sts: 'ftp://x'}\n", "endpoints.sts"},
		{"endpoint with credentials", "endpoints: {kms: 'https://u:p@x'}\n", "endpoints.kms"},
		{"bad timeout", "callTimeout: forever\n", "callTimeout"},
		{"timeout too long", "budget: 1h\n", "budget"},
		{"attempts", "maxAttempts: 100\n", "maxAttempts"},
		{"window", "defaultDeletionWindowDays: 3\n", "defaultDeletionWindowDays"},
		{"bad role", "webIdentity: {roleArn: 'arn:aws:s3:::bucket'}\n", "webIdentity.roleArn"},
		{"typo", "rolePatern: x\n", "did you mean"},
		{"broken yaml", "{{{", "invalid aws keystore configuration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig(tc.yaml)
			if tc.wantErr == "" && err != nil {
				t.Fatalf("ParseConfig: %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("ParseConfig: %v, want error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestParseARNs(t *testing.T) {
	for _, tc := range []struct {
		in   string
		role bool
		ok   bool
	}{
		{"arn:aws:iam::123456789012:role/apeiro-cmk-tenant-acme", true, true},
		{"arn:aws-us-gov:iam::123456789012:role/path/to/name", true, true},
		{"arn:aws:iam::123456789012:user/bob", true, false},
		{"arn:aws:iam:eu-central-1:123456789012:role/x", true, false},
		{"arn:aws:iam::12345:role/x", true, false},
		{"arn:aws:iam::123456789012:role/", true, false},
		{"arn:aws:iam::123456789012:role/a b", true, false},
		{"role/x", true, false},
		{"arn:aws:kms:eu-central-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab", false, true},
		{"arn:aws:kms:eu-central-1:123456789012:alias/orders", false, true},
		{"1234abcd-12ab-34cd-56ef-1234567890ab", false, true},
		{"alias/orders", false, true},
		{"arn:aws:kms:eu-central-1:123456789012:key/not-a-uuid", false, false},
		{"arn:aws:kms:central:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab", false, false},
		{"arn:aws:s3:eu-central-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab", false, false},
		{"", false, false},
		{"key with spaces", false, false},
		{strings.Repeat("a", 3000), false, false},
	} {
		var err error
		if tc.role {
			_, err = ParseRoleARN(tc.in)
		} else {
			_, err = ParseKeyRef(tc.in)
		}
		if (err == nil) != tc.ok {
			t.Errorf("parse(%q) = %v, want ok=%v", truncate(tc.in), err, tc.ok)
		}
	}
}

// TestBinding covers the plugin-side tenant binding without AWS.
func TestBinding(t *testing.T) {
	b := newBackend(unitConfig(t, "accounts: ['111122223333', '444455556666']\n"), fakeFactory(&fakeSTS{}, newFakeKMS()))
	mk := func(m map[string]any) *structpb.Struct { s, _ := structpb.NewStruct(m); return s }
	const role = "arn:aws:iam::111122223333:role/apeiro-cmk-tenant-acme"
	for _, tc := range []struct {
		name   string
		values *structpb.Struct
		key    string
		code   codes.Code
		sdk    *status.Status
		field  string
	}{
		{"ok", mk(map[string]any{"tenant": "acme", "roleArn": role}), acmeKey, codes.OK, nil, ""},
		{"ok bare key id", mk(map[string]any{"tenant": "acme", "roleArn": role}), "1234abcd-12ab-34cd-56ef-1234567890ab", codes.OK, nil, ""},
		{"no access data", mk(map[string]any{}), acmeKey, codes.InvalidArgument, kserrors.StatusInvalidKeyAccessData, "roleArn"},
		{"no tenant", mk(map[string]any{"roleArn": role}), acmeKey, codes.InvalidArgument, kserrors.StatusInvalidKeyAccessData, "tenant"},
		{"hostile tenant", mk(map[string]any{"tenant": "../x", "roleArn": role}), acmeKey, codes.InvalidArgument, kserrors.StatusInvalidKeyAccessData, "tenant"},
		{"malformed role", mk(map[string]any{"tenant": "acme", "roleArn": "arn:aws:iam::1:role/x"}), acmeKey, codes.InvalidArgument, kserrors.StatusInvalidKeyAccessData, "roleArn"},
		{"another tenant's role", mk(map[string]any{"tenant": "acme", "roleArn": "arn:aws:iam::111122223333:role/apeiro-cmk-tenant-globex"}), acmeKey, codes.InvalidArgument, kserrors.StatusProviderAuthenticationError, "roleArn"},
		{"account not allowed", mk(map[string]any{"tenant": "acme", "roleArn": "arn:aws:iam::999999999999:role/apeiro-cmk-tenant-acme"}), acmeKey, codes.InvalidArgument, kserrors.StatusProviderAuthenticationError, "roleArn"},
		{"key of another account", mk(map[string]any{"tenant": "acme", "roleArn": role}), "arn:aws:kms:eu-central-1:444455556666:key/1234abcd-12ab-34cd-56ef-1234567890ab", codes.InvalidArgument, kserrors.StatusProviderAuthenticationError, "keyId"},
		{"key in another region than configured", mk(map[string]any{"tenant": "acme", "roleArn": role, "region": "us-east-1"}), acmeKey, codes.InvalidArgument, nil, "region"},
		{"malformed key", mk(map[string]any{"tenant": "acme", "roleArn": role}), "arn:aws:kms:eu-central-1:111122223333:key/zzz", codes.InvalidArgument, nil, "keyId"},
		{"static keys in access data", mk(map[string]any{"tenant": "acme", "roleArn": role, "secretAccessKey": "x"}), acmeKey, codes.InvalidArgument, nil, "accessData"},
		{"CMK secret auth type", mk(map[string]any{"tenant": "acme", "roleArn": role, "authType": "AUTH_TYPE_SECRET"}), acmeKey, codes.InvalidArgument, nil, "accessData"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, _, err := b.keyClient(tc.values, tc.key)
			if tc.code == codes.OK {
				if err != nil {
					t.Fatalf("keyClient: %v", err)
				}
				return
			}
			st := status.Convert(grpcErr(err))
			if st.Code() != tc.code {
				t.Fatalf("code = %s (%v), want %s", st.Code(), err, tc.code)
			}
			if tc.sdk != nil && !kserrors.IsStatus(grpcErr(err), tc.sdk) {
				t.Fatalf("status = %v, want exactly %q", st, tc.sdk.Message())
			}
			if e, ok := err.(*Error); !ok || e.Field != tc.field {
				t.Fatalf("field of %v = %q, want %q", err, e.Field, tc.field)
			}
		})
	}
}

func TestStaticCredentialsInEnvironmentRefused(t *testing.T) {
	cfg := unitConfig(t, "")
	o := newOperations(fakeFactory(&fakeSTS{}, newFakeKMS()))
	o.Store(newBackend(cfg, o.factory))
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
	_, err := o.GetKey(context.Background(), &operationsv1.GetKeyRequest{Parameters: &operationsv1.RequestParameters{Config: &commonv1.KeystoreInstanceConfig{Values: acmeValues(t)}, KeyId: acmeKey}})
	st := status.Convert(err)
	if st.Code() != codes.FailedPrecondition || !strings.Contains(st.Message(), "AWS_ACCESS_KEY_ID") || !strings.Contains(st.Message(), "IRSA") {
		t.Fatalf("GetKey with static keys in env: %v", err)
	}
	if strings.Contains(st.Message(), "wJalr") {
		t.Fatal("the secret leaked into the error")
	}
}

func TestNoPlatformIdentity(t *testing.T) {
	t.Setenv("AWS_ROLE_ARN", "")
	t.Setenv("AWS_WEB_IDENTITY_TOKEN_FILE", "")
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	o := NewOperations()
	if _, err := o.Configure(context.Background(), &configv1.ConfigureRequest{}); err != nil {
		t.Fatalf("Configure(\"\") must load without AWS: %v", err)
	}
	_, err := o.GetKey(context.Background(), &operationsv1.GetKeyRequest{Parameters: &operationsv1.RequestParameters{Config: &commonv1.KeystoreInstanceConfig{Values: acmeValues(t)}, KeyId: acmeKey}})
	if st := status.Convert(err); st.Code() != codes.FailedPrecondition || !strings.Contains(st.Message(), "AWS_WEB_IDENTITY_TOKEN_FILE") {
		t.Fatalf("GetKey without IRSA: %v", err)
	}
}

// TestBYOK checks the import parameter shape CMK relies on and the round trip through {providerParams} only
// (moto has no import API, so a fake KMS stands in).
func TestBYOK(t *testing.T) {
	fk := newFakeKMS()
	fk.add(acmeKey, kmstypes.OriginTypeExternal, kmstypes.KeyStatePendingImport)
	const awsOwned = "arn:aws:kms:eu-central-1:111122223333:key/1234abcd-12ab-34cd-56ef-000000000000"
	fk.add(awsOwned, kmstypes.OriginTypeAwsKms, kmstypes.KeyStateEnabled)
	o := newOperations(fakeFactory(&fakeSTS{}, fk))
	o.Store(newBackend(unitConfig(t, ""), o.factory))
	ctx := context.Background()
	p := &operationsv1.RequestParameters{Config: &commonv1.KeystoreInstanceConfig{Values: acmeValues(t)}, KeyId: acmeKey}

	ip, err := o.GetImportParameters(ctx, &operationsv1.GetImportParametersRequest{Parameters: p, Algorithm: operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256})
	if err != nil {
		t.Fatal(err)
	}
	f := ip.GetImportParameters().GetFields()
	for _, k := range []string{ImportPublicKey, ImportWrappingAlgorithm, ImportHashFunction, ImportProviderParams, ImportValidTo} {
		if f[k].GetStringValue() == "" {
			t.Fatalf("import parameters lack string %q: %v", k, f)
		}
	}
	if !strings.HasPrefix(f[ImportPublicKey].GetStringValue(), "-----BEGIN PUBLIC KEY-----") || f[ImportWrappingAlgorithm].GetStringValue() != "CKM_RSA_PKCS_OAEP" || f[ImportHashFunction].GetStringValue() != "SHA256" {
		t.Fatalf("import parameters: %v", f)
	}
	var pp map[string]string
	if err := json.Unmarshal([]byte(f[ImportProviderParams].GetStringValue()), &pp); err != nil || pp["importToken"] == "" || pp["keyArn"] != acmeKey {
		t.Fatalf("providerParams = %v, %v", pp, err)
	}

	// CMK builds its import parameters from the response, the customer wraps material with CMK's mechanism, and CMK
	// sends back only providerParams (and optionally the algorithm).
	ipc, err := cmkcompat.BuildImportParams(ip.GetImportParameters().AsMap())
	if err != nil {
		t.Fatalf("CMK cannot build import parameters: %v", err)
	}
	if ipc.Expires == nil || !ipc.Expires.After(time.Now()) {
		t.Fatalf("validTo = %v", ipc.Expires)
	}
	material := make([]byte, 32)
	_, _ = rand.Read(material)
	wrapped, err := ipc.Wrap(material)
	if err != nil {
		t.Fatal(err)
	}
	sent, err := ipc.ProviderParamsMap()
	if err != nil {
		t.Fatal(err)
	}
	sent[ImportAlgorithm] = "KEY_ALGORITHM_AES256"
	back, _ := structpb.NewStruct(sent)
	if _, err := o.ImportKeyMaterial(ctx, &operationsv1.ImportKeyMaterialRequest{Parameters: p, ImportParameters: back, EncryptedKeyMaterial: wrapped}); err != nil {
		t.Fatalf("ImportKeyMaterial: %v", err)
	}
	if fk.imported == nil || !bytes.Equal(fk.material, material) || fk.imported.ExpirationModel != kmstypes.ExpirationModelTypeKeyMaterialDoesNotExpire {
		t.Fatalf("KMS saw %+v", fk.imported)
	}
	if g, err := o.GetKey(ctx, &operationsv1.GetKeyRequest{Parameters: p}); err != nil || g.GetStatus() != StateEnabled || g.GetLatestKeyVersionId() == "" {
		t.Fatalf("GetKey after import = %v, %v", g, err)
	}

	for _, tc := range []struct {
		name     string
		params   map[string]any
		material string
		want     string
	}{
		{"no providerParams", map[string]any{}, "AAEC", "providerParams is required"},
		{"not JSON", map[string]any{ImportProviderParams: "{"}, "AAEC", "not the JSON"},
		{"no token", map[string]any{ImportProviderParams: `{"keyArn":"` + acmeKey + `"}`}, "AAEC", "importToken"},
		{"other key", map[string]any{ImportProviderParams: `{"importToken":"aW1wb3J0LXRva2VuLWJ5dGVz","keyArn":"` + awsOwned + `"}`}, "AAEC", "belong to key"},
		{"no material", map[string]any{ImportProviderParams: f[ImportProviderParams].GetStringValue()}, "", "encrypted_key_material is required"},
		{"material not base64", map[string]any{ImportProviderParams: f[ImportProviderParams].GetStringValue()}, "!!!", "base64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := structpb.NewStruct(tc.params)
			_, err := o.ImportKeyMaterial(ctx, &operationsv1.ImportKeyMaterialRequest{Parameters: p, ImportParameters: s, EncryptedKeyMaterial: tc.material})
			if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), tc.want) {
				t.Fatalf("ImportKeyMaterial: %v, want InvalidArgument containing %q", err, tc.want)
			}
		})
	}

	// Only BYOK keys take material; a missing key is StatusKeyNotFound.
	_, err = o.GetImportParameters(ctx, &operationsv1.GetImportParametersRequest{Parameters: &operationsv1.RequestParameters{Config: p.Config, KeyId: awsOwned}})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("GetImportParameters of an AWS_KMS key: %v", err)
	}
	_, err = o.GetImportParameters(ctx, &operationsv1.GetImportParametersRequest{Parameters: &operationsv1.RequestParameters{Config: p.Config, KeyId: "arn:aws:kms:eu-central-1:111122223333:key/1234abcd-12ab-34cd-56ef-999999999999"}})
	if !kserrors.IsStatus(err, kserrors.StatusKeyNotFound) {
		t.Fatalf("GetImportParameters of a missing key: %v", err)
	}
}

// TestThrottlingRetried runs the real KMS client against an endpoint that throttles: the call is retried with
// backoff and succeeds; when throttling never stops, the error says so and the deadline is honoured.
func TestThrottlingRetried(t *testing.T) {
	var calls, throttleFirst atomic.Int64
	throttleFirst.Store(2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		if n <= throttleFirst.Load() {
			w.Header().Set("X-Amzn-ErrorType", "ThrottlingException")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"__type":"ThrottlingException","message":"Rate exceeded"}`))
			return
		}
		_, _ = w.Write([]byte(`{"KeyMetadata":{"Arn":"` + acmeKey + `","KeyId":"1234abcd-12ab-34cd-56ef-1234567890ab","KeyState":"Enabled","KeySpec":"SYMMETRIC_DEFAULT","KeyUsage":"ENCRYPT_DECRYPT","CreationDate":1700000000}}`))
	}))
	defer srv.Close()
	cfg := unitConfig(t, "endpoints: {kms: '"+srv.URL+"'}\nmaxAttempts: 5\n")
	b := newBackend(cfg, fakeFactory(&fakeSTS{}, nil))
	p := &operationsv1.RequestParameters{Config: &commonv1.KeystoreInstanceConfig{Values: acmeValues(t)}, KeyId: acmeKey}
	// ListKeyRotations answers with the same body; unknown fields are ignored.
	resp, err := b.getKey(context.Background(), p)
	if err != nil || resp.GetStatus() != StateEnabled {
		t.Fatalf("GetKey after throttling = %v, %v", resp, err)
	}
	if calls.Load() < 3 {
		t.Fatalf("endpoint saw %d calls, want the 2 throttled attempts retried", calls.Load())
	}

	throttleFirst.Store(1 << 40)
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = b.getKey(ctx, p)
	st := status.Convert(grpcErr(err))
	if (st.Code() != codes.Unavailable && st.Code() != codes.DeadlineExceeded) || time.Since(start) > 5*time.Second {
		t.Fatalf("endless throttling: %v after %s", err, time.Since(start))
	}
	if st.Code() == codes.Unavailable && !strings.Contains(st.Message(), "throttled") {
		t.Fatalf("message does not say throttled: %s", st.Message())
	}
}

// TestCredentialCacheSingleFlight: concurrent calls for one role make one AssumeRole.
func TestCredentialCacheSingleFlight(t *testing.T) {
	fs := &fakeSTS{}
	fk := newFakeKMS()
	fk.add(acmeKey, kmstypes.OriginTypeAwsKms, kmstypes.KeyStateEnabled)
	b := newBackend(unitConfig(t, ""), fakeFactory(fs, nil))
	b.factory.kms = func(cfg sdkaws.Config, _ string) kmsAPI { return credTouchingKMS{fk, cfg.Credentials} }
	p := &operationsv1.RequestParameters{Config: &commonv1.KeystoreInstanceConfig{Values: acmeValues(t)}, KeyId: acmeKey}
	var wg sync.WaitGroup
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := b.getKey(context.Background(), p); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	// (The web-identity exchange happens when the real STS client signs AssumeRole; the fake STS does not sign.)
	if fs.assume.Load() != 1 {
		t.Fatalf("AssumeRole calls = %d; want 1", fs.assume.Load())
	}
	if got, _ := fs.lastExternalID.Load().(string); got != "acme" {
		t.Fatalf("ExternalId = %q, want the tenant", got)
	}
}

// credTouchingKMS retrieves credentials on every call, as the real client's signer does.
type credTouchingKMS struct {
	*fakeKMS
	creds sdkaws.CredentialsProvider
}

func (c credTouchingKMS) DescribeKey(ctx context.Context, in *kms.DescribeKeyInput, o ...func(*kms.Options)) (*kms.DescribeKeyOutput, error) {
	if _, err := c.creds.Retrieve(ctx); err != nil {
		return nil, err
	}
	return c.fakeKMS.DescribeKey(ctx, in, o...)
}
