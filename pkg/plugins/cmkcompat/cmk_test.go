package cmkcompat

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"strings"
	"testing"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/keywrap"
)

// BuildImportParams follows CMK's BuildImportParamsFromAPI: required string
// keys, optional algorithm and validTo, provider parameters as stored JSON.
func TestBuildImportParams(t *testing.T) {
	full := map[string]any{"publicKey": "pem", "wrappingAlgorithm": "CKM_RSA_PKCS_OAEP", "hashFunction": "SHA256",
		"providerParams": `{"t":1}`, "algorithm": "AES256", "validTo": "2030-01-02T03:04:05Z", "extra": 1.0}
	p, err := BuildImportParams(full)
	if err != nil {
		t.Fatal(err)
	}
	var stored map[string]any
	if err := json.Unmarshal(p.ProviderParameters, &stored); err != nil || len(stored) != 2 || stored["providerParams"] != `{"t":1}` || stored["algorithm"] != "AES256" {
		t.Fatalf("stored provider params = %s, %v", p.ProviderParameters, err)
	}
	if p.Expires == nil || p.Expires.Year() != 2030 {
		t.Fatalf("validTo = %v", p.Expires)
	}
	for _, tc := range []struct {
		drop    string
		set     map[string]any
		wantErr string
	}{
		{drop: "publicKey", wantErr: "field is missing: publicKey"},
		{drop: "wrappingAlgorithm", wantErr: "field is missing: wrappingAlgorithm"},
		{drop: "hashFunction", wantErr: "field is missing: hashFunction"},
		{drop: "providerParams", wantErr: "field is missing: providerParams"},
		{set: map[string]any{"providerParams": map[string]any{"importToken": "x"}}, wantErr: "providerParams is not a string"},
		{set: map[string]any{"validTo": "tomorrow"}, wantErr: "validTo"},
	} {
		m := map[string]any{}
		for k, v := range full {
			if k != tc.drop {
				m[k] = v
			}
		}
		for k, v := range tc.set {
			m[k] = v
		}
		if _, err := BuildImportParams(m); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%v %v: err = %v, want %q", tc.drop, tc.set, err, tc.wantErr)
		}
	}
}

// Wrap produces what PKCS#11 tooling produces for CMK's two mechanisms.
func TestWrap(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	pubPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	material := []byte("0123456789abcdef0123456789abcdef-and-more")

	p := &ImportParams{PublicKeyPEM: pubPEM, WrappingAlgorithm: "CKM_RSA_PKCS_OAEP", HashFunction: "SHA256"}
	w, err := p.Wrap(material[:32])
	if err != nil {
		t.Fatal(err)
	}
	ct, _ := base64.StdEncoding.DecodeString(w)
	if got, err := rsa.DecryptOAEP(sha256.New(), nil, key, ct, nil); err != nil || string(got) != string(material[:32]) {
		t.Fatalf("CKM_RSA_PKCS_OAEP: %v", err)
	}

	p.WrappingAlgorithm = "CKM_RSA_AES_KEY_WRAP"
	w, err = p.Wrap(material)
	if err != nil {
		t.Fatal(err)
	}
	ct, _ = base64.StdEncoding.DecodeString(w)
	eph, err := rsa.DecryptOAEP(sha256.New(), nil, key, ct[:key.Size()], nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := keywrap.UnwrapPad(eph, ct[key.Size():]); err != nil || string(got) != string(material) {
		t.Fatalf("CKM_RSA_AES_KEY_WRAP: %v", err)
	}

	for _, bad := range []*ImportParams{
		{PublicKeyPEM: "not pem", WrappingAlgorithm: "CKM_RSA_PKCS_OAEP", HashFunction: "SHA256"},
		{PublicKeyPEM: pubPEM, WrappingAlgorithm: "RSAES_OAEP_SHA_256", HashFunction: "SHA256"},
		{PublicKeyPEM: pubPEM, WrappingAlgorithm: "CKM_RSA_PKCS_OAEP", HashFunction: "MD5"},
	} {
		if _, err := bad.Wrap(material[:32]); err == nil {
			t.Errorf("Wrap(%+v) succeeded", bad)
		}
	}
}
