package openbao_test

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	kserrors "github.com/openkcm/plugin-sdk/pkg/plugin/keystore/errors"
	commonv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/common/v1"
	operationsv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/operations/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/apeirora/apeiro-cmk/pkg/keychain"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/cmkcompat"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/openbao"
)

// material returns fresh key material of alg in transit's import format: raw bytes for AES-256, PKCS#8 DER for RSA.
func material(alg operationsv1.KeyAlgorithm) ([]byte, error) {
	switch alg {
	case operationsv1.KeyAlgorithm_KEY_ALGORITHM_RSA3072, operationsv1.KeyAlgorithm_KEY_ALGORITHM_RSA4096:
		bits := 3072
		if alg == operationsv1.KeyAlgorithm_KEY_ALGORITHM_RSA4096 {
			bits = 4096
		}
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			return nil, err
		}
		return x509.MarshalPKCS8PrivateKey(k)
	}
	b := make([]byte, 32)
	_, err := rand.Read(b)
	return b, err
}

// wrapWith wraps m under the import parameters exactly as a customer's tooling does for the announced mechanism
// (CMK's own reading of the parameters, cmkcompat.BuildImportParams).
func wrapWith(params *structpb.Struct, m []byte) (string, error) {
	ip, err := cmkcompat.BuildImportParams(params.AsMap())
	if err != nil {
		return "", err
	}
	return ip.Wrap(m)
}

// wrapForImport is the contract suite's BYOK client.
func wrapForImport(params *structpb.Struct, alg operationsv1.KeyAlgorithm) (string, error) {
	m, err := material(alg)
	if err != nil {
		return "", err
	}
	return wrapWith(params, m)
}

// localDecrypt opens a transit aes256-gcm96 ciphertext ("vault:v<n>:" + base64(nonce || ct || tag)) with key
// locally: success proves transit encrypted with exactly that material.
func localDecrypt(key []byte, ct string, aad []byte) ([]byte, error) {
	parts := strings.SplitN(ct, ":", 3)
	if len(parts) != 3 {
		return nil, fmt.Errorf("not a transit ciphertext: %q", ct)
	}
	raw, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil {
		return nil, err
	}
	blk, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(blk)
	if err != nil {
		return nil, err
	}
	if len(raw) < gcm.NonceSize() {
		return nil, errors.New("short ciphertext")
	}
	return gcm.Open(nil, raw[:gcm.NonceSize()], raw[gcm.NonceSize():], aad)
}

// TestBYOKAgainstPeer imports customer material into transit through the plugin and proves, by decrypting transit's
// ciphertexts locally with the customer's AES key, that the imported key is that material; then a second version
// by import_version, an RSA import, and the refusals (forged, replayed, foreign and corrupted parameters).
func TestBYOKAgainstPeer(t *testing.T) {
	p := startPeer(t, "1h")
	ctx := ctxT(t, 2*time.Minute)
	w := openbao.NewWrapper(p.config(t))
	ops := newOps(t, p.yaml)
	for _, tn := range []string{"acme", "globex"} {
		if _, err := w.EnsureMount(ctx, tn); err != nil {
			t.Fatal(err)
		}
	}
	acme := tenantCfg("acme")
	create := func(t *testing.T, tenant string, alg operationsv1.KeyAlgorithm) string {
		t.Helper()
		r, err := ops.CreateKey(ctx, &operationsv1.CreateKeyRequest{Config: &commonv1.KeystoreInstanceConfig{Values: tenantCfg(tenant)},
			Algorithm: alg, KeyType: operationsv1.KeyType_KEY_TYPE_BYOK, Region: region})
		if err != nil || r.GetStatus() != openbao.StatePendingImport {
			t.Fatalf("CreateKey(BYOK) = %v, %v; want %s", r, err, openbao.StatePendingImport)
		}
		return r.GetKeyId()
	}
	importParams := func(t *testing.T, tenant, key string) *structpb.Struct {
		t.Helper()
		ip, err := ops.GetImportParameters(ctx, &operationsv1.GetImportParametersRequest{Parameters: params(tenant, key)})
		if err != nil {
			t.Fatalf("GetImportParameters: %v", err)
		}
		return ip.GetImportParameters()
	}
	// sent is what CMK sends back: only {providerParams, algorithm}.
	sent := func(ip *structpb.Struct) *structpb.Struct {
		s, _ := structpb.NewStruct(map[string]any{
			openbao.ImportProviderParams: ip.GetFields()[openbao.ImportProviderParams].GetStringValue(),
			openbao.ImportAlgorithm:      ip.GetFields()[openbao.ImportAlgorithm].GetStringValue(),
		})
		return s
	}
	imp := func(tenant, key string, ip *structpb.Struct, wrapped string) error {
		_, err := ops.ImportKeyMaterial(ctx, &operationsv1.ImportKeyMaterialRequest{Parameters: params(tenant, key), ImportParameters: sent(ip), EncryptedKeyMaterial: wrapped})
		return err
	}
	encryptRaw := func(t *testing.T, key string, pt []byte) string {
		t.Helper()
		sec, err := p.srv.Root.Logical().WriteWithContext(ctx, "transit/acme/encrypt/"+key, map[string]any{"plaintext": base64.StdEncoding.EncodeToString(pt)})
		if err != nil {
			t.Fatalf("transit encrypt with the imported key: %v", err)
		}
		return sec.Data["ciphertext"].(string)
	}

	aesKey := create(t, "acme", operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256)
	g, err := ops.GetKey(ctx, &operationsv1.GetKeyRequest{Parameters: params("acme", aesKey)})
	if err != nil || g.GetStatus() != openbao.StatePendingImport || g.GetLatestKeyVersionId() != "" {
		t.Fatalf("GetKey before import = %v, %v; want PENDING_IMPORT without versions", g, err)
	}
	if _, err := w.Wrap(ctx, acme, aesKey, []byte("0123456789abcdef"), nil); !errors.Is(err, keychain.ErrKeyNotFound) {
		t.Fatalf("Wrap with a key that has no material: %v, want ErrKeyNotFound", err)
	}
	if _, err := ops.DisableKey(ctx, &operationsv1.DisableKeyRequest{Parameters: params("acme", aesKey)}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("DisableKey of a key waiting for material: %v, want FailedPrecondition", err)
	}

	ip := importParams(t, "acme", aesKey)
	f := ip.GetFields()
	if f[openbao.ImportWrappingAlgorithm].GetStringValue() != "CKM_RSA_AES_KEY_WRAP" || f[openbao.ImportHashFunction].GetStringValue() != "SHA256" {
		t.Fatalf("import parameters announce %v", ip)
	}
	blk, _ := pem.Decode([]byte(f[openbao.ImportPublicKey].GetStringValue()))
	if blk == nil {
		t.Fatal("publicKey is not PEM")
	}
	pub, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if rk, ok := pub.(*rsa.PublicKey); err != nil || !ok || rk.Size() != 512 {
		t.Fatalf("publicKey is not RSA-4096: %v", err)
	}
	if vt, err := time.Parse(time.RFC3339, f[openbao.ImportValidTo].GetStringValue()); err != nil || !vt.After(time.Now()) {
		t.Fatalf("validTo = %v, %v", vt, err)
	}
	m1, _ := material(operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256)
	wrapped, err := wrapWith(ip, m1)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("refusals before import lose nothing", func(t *testing.T) {
		other := create(t, "acme", operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256)
		create(t, "globex", operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256)
		// material wrapped for a wrapping key that is not this mount's
		foreign, _ := rsa.GenerateKey(rand.Reader, 4096)
		der, _ := x509.MarshalPKIXPublicKey(&foreign.PublicKey)
		fm := ip.AsMap()
		fm[openbao.ImportPublicKey] = string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
		fs, _ := structpb.NewStruct(fm)
		wrongWrap, err := wrapWith(fs, m1)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := base64.StdEncoding.DecodeString(wrapped)
		corrupt := append([]byte(nil), raw...)
		corrupt[len(corrupt)-1] ^= 1
		forged, _ := structpb.NewStruct(map[string]any{openbao.ImportProviderParams: "forged"})
		cases := []struct {
			name string
			err  func() error
			code codes.Code
			msg  string
		}{
			{"forged providerParams", func() error {
				_, err := ops.ImportKeyMaterial(ctx, &operationsv1.ImportKeyMaterialRequest{Parameters: params("acme", aesKey), ImportParameters: forged, EncryptedKeyMaterial: wrapped})
				return err
			}, codes.InvalidArgument, "not issued by this keystore"},
			{"parameters of another key", func() error { return imp("acme", other, ip, wrapped) }, codes.InvalidArgument, "were issued for key"},
			{"another tenant uses them", func() error { return imp("globex", aesKey, ip, wrapped) }, codes.InvalidArgument, "were issued for key"},
			{"wrapped for a foreign wrapping key", func() error { return imp("acme", aesKey, ip, wrongWrap) }, codes.InvalidArgument, "refused the key material"},
			{"corrupted material", func() error { return imp("acme", aesKey, ip, base64.StdEncoding.EncodeToString(corrupt)) }, codes.InvalidArgument, "refused the key material"},
			{"truncated material", func() error { return imp("acme", aesKey, ip, base64.StdEncoding.EncodeToString(raw[:300])) }, codes.InvalidArgument, "encrypted_key_material"},
			{"not base64", func() error { return imp("acme", aesKey, ip, "%%%") }, codes.InvalidArgument, "base64"},
			{"import parameters of a missing key", func() error {
				_, err := ops.GetImportParameters(ctx, &operationsv1.GetImportParametersRequest{Parameters: params("globex", aesKey)})
				return err
			}, codes.NotFound, ""},
			{"system managed key takes no material", func() error {
				k := setupTenantKey(t, ctx, w, ops, "acme")
				_, err := ops.GetImportParameters(ctx, &operationsv1.GetImportParametersRequest{Parameters: params("acme", k)})
				return err
			}, codes.FailedPrecondition, "generated by OpenBao"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				err := tc.err()
				if status.Code(err) != tc.code || !strings.Contains(status.Convert(err).Message()+fmt.Sprint(err), tc.msg) {
					t.Fatalf("got %v, want %s containing %q", err, tc.code, tc.msg)
				}
			})
		}
		if g, err := ops.GetKey(ctx, &operationsv1.GetKeyRequest{Parameters: params("acme", aesKey)}); err != nil || g.GetStatus() != openbao.StatePendingImport {
			t.Fatalf("after refused imports: %v, %v; want still PENDING_IMPORT", g, err)
		}
	})

	t.Run("import and prove the material", func(t *testing.T) {
		if err := imp("acme", aesKey, ip, wrapped); err != nil {
			t.Fatalf("ImportKeyMaterial (after refused attempts, same parameters): %v", err)
		}
		g, err := ops.GetKey(ctx, &operationsv1.GetKeyRequest{Parameters: params("acme", aesKey)})
		if err != nil || g.GetStatus() != openbao.StateEnabled || g.GetLatestKeyVersionId() != "v1" || g.GetAlgorithm() != operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256 {
			t.Fatalf("GetKey after import = %v, %v", g, err)
		}
		pt := []byte("customer-owned secret")
		if got, err := localDecrypt(m1, encryptRaw(t, aesKey, pt), nil); err != nil || string(got) != string(pt) {
			t.Fatalf("local AES-GCM decrypt of transit's ciphertext: %q, %v (the imported key is not the customer's material)", got, err)
		}
		// The Wrapper's aad is transit's associated_data: the local decrypt needs the same canonical JSON.
		aad := map[string]string{"tenant": "acme", "name": "db"}
		dk := []byte("0123456789abcdef0123456789abcdef")
		wr, err := w.Wrap(ctx, acme, aesKey, dk, aad)
		if err != nil {
			t.Fatalf("Wrap with the imported key: %v", err)
		}
		if got, err := localDecrypt(m1, string(wr.Ciphertext), []byte(`{"name":"db","tenant":"acme"}`)); err != nil || string(got) != string(dk) {
			t.Fatalf("local decrypt of a wrapped service key: %v", err)
		}
		if got, err := w.Unwrap(ctx, acme, aesKey, wr, aad); err != nil || string(got) != string(dk) {
			t.Fatalf("Unwrap: %v", err)
		}
		if err := imp("acme", aesKey, ip, wrapped); status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("replayed import parameters: %v, want FailedPrecondition", err)
		}

		// A new version: import_version with fresh parameters; old ciphertexts keep decrypting.
		ip2 := importParams(t, "acme", aesKey)
		m2, _ := material(operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256)
		w2, err := wrapWith(ip2, m2)
		if err != nil {
			t.Fatal(err)
		}
		if err := imp("acme", aesKey, ip2, w2); err != nil {
			t.Fatalf("ImportKeyMaterial (new version): %v", err)
		}
		g, err = ops.GetKey(ctx, &operationsv1.GetKeyRequest{Parameters: params("acme", aesKey)})
		if err != nil || g.GetLatestKeyVersionId() != "v2" {
			t.Fatalf("GetKey after import_version = %v, %v", g, err)
		}
		ct := encryptRaw(t, aesKey, pt)
		if !strings.HasPrefix(ct, "vault:v2:") {
			t.Fatalf("new ciphertexts use %q, want v2", ct[:9])
		}
		if got, err := localDecrypt(m2, ct, nil); err != nil || string(got) != string(pt) {
			t.Fatalf("v2 is not the second material: %v", err)
		}
		if got, err := w.Unwrap(ctx, acme, aesKey, wr, aad); err != nil || string(got) != string(dk) {
			t.Fatalf("Unwrap of a v1 ciphertext after import_version: %v", err)
		}
		// Rotation of a BYOK key is an import: transit must not generate material into it.
		if _, err := w.Rotate(ctx, acme, aesKey); status.Code(err) != codes.FailedPrecondition || !errors.Is(err, keychain.ErrUnsupported) {
			t.Fatalf("Rotate of an imported key: %v, want FailedPrecondition (import new material instead)", err)
		}
	})

	t.Run("rsa", func(t *testing.T) {
		k := create(t, "acme", operationsv1.KeyAlgorithm_KEY_ALGORITHM_RSA3072)
		ipr := importParams(t, "acme", k)
		wr, err := wrapForImport(ipr, operationsv1.KeyAlgorithm_KEY_ALGORITHM_RSA3072)
		if err != nil {
			t.Fatal(err)
		}
		if err := imp("acme", k, ipr, wr); err != nil {
			t.Fatalf("ImportKeyMaterial(RSA-3072 PKCS#8): %v", err)
		}
		g, err := ops.GetKey(ctx, &operationsv1.GetKeyRequest{Parameters: params("acme", k)})
		if err != nil || g.GetAlgorithm() != operationsv1.KeyAlgorithm_KEY_ALGORITHM_RSA3072 || g.GetLatestKeyVersionId() != "v1" {
			t.Fatalf("GetKey(imported RSA) = %v, %v", g, err)
		}
	})

	t.Run("delete before import", func(t *testing.T) {
		k := create(t, "acme", operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256)
		if _, err := ops.DeleteKey(ctx, &operationsv1.DeleteKeyRequest{Parameters: params("acme", k)}); err != nil {
			t.Fatalf("DeleteKey of a key waiting for material: %v", err)
		}
		if _, err := ops.GetKey(ctx, &operationsv1.GetKeyRequest{Parameters: params("acme", k)}); !kserrors.IsStatus(err, kserrors.StatusKeyNotFound) {
			t.Fatalf("GetKey after delete: %v", err)
		}
	})
}
