package local

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	operationsv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/operations/v1"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/keywrap"
)

// Key states as reported in GetKeyResponse.status.
const (
	StateEnabled         = "ENABLED"
	StateDisabled        = "DISABLED"
	StatePendingDeletion = "PENDING_DELETION"
	StatePendingImport   = "PENDING_IMPORT"
)

// Usage reported for every key.
const UsageEncryptDecrypt = "ENCRYPT_DECRYPT"

const (
	defaultDeletionWindowDays = 7
	maxDeletionWindowDays     = 30
	importValidity            = 24 * time.Hour
	wrappingKeyBits           = 3072
)

type keyRecord struct {
	ID        string       `json:"id"`
	Algorithm string       `json:"algorithm"`
	KeyType   string       `json:"keyType"`
	Region    string       `json:"region"`
	State     string       `json:"state"`
	CreatedAt time.Time    `json:"createdAt"`
	DeleteAt  *time.Time   `json:"deleteAt,omitempty"`
	Versions  []keyVersion `json:"versions,omitempty"`
	Import    *importState `json:"import,omitempty"`
}

type keyVersion struct {
	ID        string    `json:"id"`
	CreatedAt time.Time `json:"createdAt"`
	Sealed    []byte    `json:"sealed"` // AES-256-GCM(KEK) of the key material
}

type importState struct {
	Token      string    `json:"token"`
	ExpiresAt  time.Time `json:"expiresAt"`
	Wrapping   string    `json:"wrapping"`
	SealedPriv []byte    `json:"sealedPriv"` // wrapping private key, PKCS#8, sealed
}

func (r *keyRecord) algorithm() operationsv1.KeyAlgorithm {
	return operationsv1.KeyAlgorithm(operationsv1.KeyAlgorithm_value[r.Algorithm])
}

func (r *keyRecord) latest() *keyVersion {
	if len(r.Versions) == 0 {
		return nil
	}
	return &r.Versions[len(r.Versions)-1]
}

func (r *keyRecord) version(id string) *keyVersion {
	for i := range r.Versions {
		if r.Versions[i].ID == id {
			return &r.Versions[i]
		}
	}
	return nil
}

func (r *keyRecord) nextVersionID() string { return fmt.Sprintf("%d", len(r.Versions)+1) }

func supportedAlgorithm(a operationsv1.KeyAlgorithm) bool {
	switch a {
	case operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256,
		operationsv1.KeyAlgorithm_KEY_ALGORITHM_RSA3072,
		operationsv1.KeyAlgorithm_KEY_ALGORITHM_RSA4096:
		return true
	}
	return false
}

// generateMaterial makes fresh key material: 32 random bytes for AES-256,
// a PKCS#8 DER private key for RSA.
func generateMaterial(a operationsv1.KeyAlgorithm) ([]byte, error) {
	switch a {
	case operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256:
		k := make([]byte, 32)
		_, err := rand.Read(k)
		return k, err
	case operationsv1.KeyAlgorithm_KEY_ALGORITHM_RSA3072, operationsv1.KeyAlgorithm_KEY_ALGORITHM_RSA4096:
		bits := 3072
		if a == operationsv1.KeyAlgorithm_KEY_ALGORITHM_RSA4096 {
			bits = 4096
		}
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			return nil, err
		}
		return x509.MarshalPKCS8PrivateKey(k)
	}
	return nil, fmt.Errorf("unsupported key algorithm %s", a)
}

// checkMaterial validates imported material against the key's algorithm.
func checkMaterial(a operationsv1.KeyAlgorithm, m []byte) error {
	switch a {
	case operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256:
		if len(m) != 32 {
			return fmt.Errorf("AES-256 key material must be 32 bytes, got %d", len(m))
		}
		return nil
	case operationsv1.KeyAlgorithm_KEY_ALGORITHM_RSA3072, operationsv1.KeyAlgorithm_KEY_ALGORITHM_RSA4096:
		k, err := x509.ParsePKCS8PrivateKey(m)
		if err != nil {
			return fmt.Errorf("RSA key material must be a PKCS#8 private key: %w", err)
		}
		rk, ok := k.(*rsa.PrivateKey)
		if !ok {
			return errors.New("RSA key material is not an RSA key")
		}
		want := 3072
		if a == operationsv1.KeyAlgorithm_KEY_ALGORITHM_RSA4096 {
			want = 4096
		}
		if rk.N.BitLen() != want {
			return fmt.Errorf("RSA key material has %d bits, want %d", rk.N.BitLen(), want)
		}
		return rk.Validate()
	}
	return fmt.Errorf("unsupported key algorithm %s", a)
}

func seal(key, plaintext, aad []byte) ([]byte, error) {
	gcm, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, gcm.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return gcm.Seal(nonce, nonce, plaintext, aad), nil
}

func unseal(key, sealed, aad []byte) ([]byte, error) {
	gcm, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	if len(sealed) < gcm.NonceSize() {
		return nil, errors.New("sealed data too short")
	}
	return gcm.Open(nil, sealed[:gcm.NonceSize()], sealed[gcm.NonceSize():], aad)
}

func newGCM(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// WrapKeyMaterial wraps material for ImportKeyMaterial with the public key
// and algorithm from GetImportParameters and returns the base64 string to
// send as encrypted_key_material. It is what a BYOK client does.
func WrapKeyMaterial(params *structpb.Struct, material []byte) (string, error) {
	block, _ := pem.Decode([]byte(stringField(params, ImportPublicKey)))
	if block == nil {
		return "", errors.New("import parameters: publicKey is not PEM")
	}
	pubAny, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return "", fmt.Errorf("import parameters: publicKey: %w", err)
	}
	pub, ok := pubAny.(*rsa.PublicKey)
	if !ok {
		return "", errors.New("import parameters: publicKey is not RSA")
	}
	switch alg := stringField(params, ImportWrappingAlgorithm); alg {
	case WrapRSAPKCSOAEP:
		ct, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, pub, material, nil)
		if err != nil {
			return "", err
		}
		return base64.StdEncoding.EncodeToString(ct), nil
	case WrapRSAAESKeyWrap:
		eph := make([]byte, 32)
		if _, err := rand.Read(eph); err != nil {
			return "", err
		}
		wrapped, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, pub, eph, nil)
		if err != nil {
			return "", err
		}
		body, err := keywrap.WrapPad(eph, material)
		if err != nil {
			return "", err
		}
		return base64.StdEncoding.EncodeToString(append(wrapped, body...)), nil
	default:
		return "", fmt.Errorf("import parameters: unknown wrappingAlgorithm %q", alg)
	}
}

func unwrapKeyMaterial(priv *rsa.PrivateKey, alg, encoded string) ([]byte, error) {
	ct, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil {
		return nil, fmt.Errorf("encrypted_key_material is not base64: %w", err)
	}
	switch alg {
	case WrapRSAPKCSOAEP:
		return rsa.DecryptOAEP(sha256.New(), nil, priv, ct, nil)
	case WrapRSAAESKeyWrap:
		n := priv.Size()
		if len(ct) <= n {
			return nil, errors.New("encrypted_key_material too short")
		}
		eph, err := rsa.DecryptOAEP(sha256.New(), nil, priv, ct[:n], nil)
		if err != nil {
			return nil, err
		}
		return keywrap.UnwrapPad(eph, ct[n:])
	}
	return nil, fmt.Errorf("unknown wrapping algorithm %q", alg)
}

func wrappingFor(a operationsv1.KeyAlgorithm) string {
	if a == operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256 {
		return WrapRSAPKCSOAEP
	}
	return WrapRSAAESKeyWrap
}

// Ciphertext format of Encrypt: "LKS1" | len(versionID) (1 byte) | versionID
// | 12-byte nonce | AES-256-GCM ciphertext+tag. The header and the key ID
// are authenticated as additional data together with the caller's AAD.
var ciphertextMagic = []byte("LKS1")

func encodeHeader(versionID string) []byte {
	h := append([]byte(nil), ciphertextMagic...)
	h = append(h, byte(len(versionID)))
	return append(h, versionID...)
}

func parseHeader(ct []byte) (versionID string, header, rest []byte, err error) {
	if len(ct) < len(ciphertextMagic)+1 || !bytes.Equal(ct[:len(ciphertextMagic)], ciphertextMagic) {
		return "", nil, nil, errors.New("not a local keystore ciphertext")
	}
	n := int(ct[len(ciphertextMagic)])
	end := len(ciphertextMagic) + 1 + n
	if len(ct) < end {
		return "", nil, nil, errors.New("truncated ciphertext header")
	}
	return string(ct[len(ciphertextMagic)+1 : end]), ct[:end], ct[end:], nil
}

func marshalRecord(r *keyRecord) ([]byte, error) { return json.Marshal(r) }

func unmarshalRecord(b []byte) (*keyRecord, error) {
	var r keyRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("corrupt key record: %w", err)
	}
	return &r, nil
}
