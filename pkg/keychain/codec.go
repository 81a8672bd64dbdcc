package keychain

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"

	corev1 "k8s.io/api/core/v1"

	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
)

// Size limits. A wrapped key is a few hundred bytes (RSA-4096 PKCS#8 wrapped by an AES key: about 2.5 KiB); the
// limits only keep hostile input bounded.
const (
	MaxPayload        = 16 << 20 // Encrypt/Decrypt with a service key
	MaxL1Payload      = 4096     // EncryptWithAccount: the KMS Encrypt limit, kept for every backend
	MaxWrappedBytes   = 64 << 10 // stored wrapped material
	maxVersionBytes   = 256
	maxKeyIDBytes     = 256
	wrappedMagic      = "L1W1"
	payloadMagic      = "SEK1"
	secretNameSuffix  = "-wrapped-key"
	maxObjectNameSize = 253
)

// The Secret that stores a ServiceEncryptionKey's wrapped material: in the key's namespace, owned by the key (and
// removed by the controller's finalizer), holding only ciphertext and the L1 key version. Type and labels let
// operators and RBAC single these Secrets out.
const (
	SecretType            corev1.SecretType = "cmk.apeiro.io/wrapped-key"
	SecretKeyWrapped                        = "wrapped"
	SecretKeyVersion                        = "keyVersion"
	LabelServiceKey                         = "cmk.apeiro.io/service-encryption-key"
	AnnotationKeyID                         = "cmk.apeiro.io/key-id"
	AnnotationAccount                       = "cmk.apeiro.io/account"
	AnnotationL1KeyRef                      = "cmk.apeiro.io/l1-key-ref"
	AnnotationAlgorithm                     = "cmk.apeiro.io/algorithm"
	AnnotationServiceKey                    = "cmk.apeiro.io/service-encryption-key"
	serviceKeyLabelMaxLen                   = 63
)

// SecretName is the name of the Secret holding the wrapped material of key name: name + "-wrapped-key", or, when
// that would exceed the object name limit, a prefix of name plus a hash.
func SecretName(name string) string {
	if len(name)+len(secretNameSuffix) <= maxObjectNameSize {
		return name + secretNameSuffix
	}
	sum := sha256.Sum256([]byte(name))
	h := hex.EncodeToString(sum[:8])
	keep := maxObjectNameSize - len(secretNameSuffix) - len(h) - 1
	return name[:keep] + "-" + h + secretNameSuffix
}

// ServiceKeyLabelValue is the label value naming the key on its Secret (label values are at most 63 characters).
func ServiceKeyLabelValue(name string) string {
	if len(name) <= serviceKeyLabelMaxLen {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return hex.EncodeToString(sum[:16])
}

// WrappedFromSecret reads the wrapped material from s after checking it belongs to k: owned by k's UID and
// recorded for k's key ID.
func WrappedFromSecret(s *corev1.Secret, k *cmkv1.ServiceEncryptionKey) (*Wrapped, error) {
	owned := false
	for _, o := range s.OwnerReferences {
		if o.UID == k.UID {
			owned = true
		}
	}
	if !owned || s.Type != SecretType {
		return nil, fmt.Errorf("%w: secret %s/%s is not the wrapped key of %s", ErrWrappedKeyCorrupted, s.Namespace, s.Name, k.Name)
	}
	if k.Status.KeyID != "" && s.Annotations[AnnotationKeyID] != k.Status.KeyID {
		return nil, fmt.Errorf("%w: secret %s/%s holds key ID %q, the key has %q", ErrWrappedKeyCorrupted, s.Namespace, s.Name, s.Annotations[AnnotationKeyID], k.Status.KeyID)
	}
	ct := s.Data[SecretKeyWrapped]
	ver := s.Data[SecretKeyVersion]
	if len(ct) == 0 || len(ct) > MaxWrappedBytes || len(ver) > maxVersionBytes {
		return nil, fmt.Errorf("%w: secret %s/%s has no or oversized wrapped material", ErrWrappedKeyCorrupted, s.Namespace, s.Name)
	}
	return &Wrapped{Ciphertext: bytes.Clone(ct), KeyVersion: string(ver)}, nil
}

// EncodeWrapped serialises a Wrapped for transport (the output of EncryptWithAccount):
// "L1W1" | uint16 len(version) | version | ciphertext.
func EncodeWrapped(w *Wrapped) ([]byte, error) {
	if len(w.KeyVersion) > maxVersionBytes {
		return nil, fmt.Errorf("key version of %d bytes exceeds %d", len(w.KeyVersion), maxVersionBytes)
	}
	if len(w.Ciphertext) == 0 || len(w.Ciphertext) > MaxWrappedBytes {
		return nil, fmt.Errorf("wrapped ciphertext of %d bytes is empty or exceeds %d", len(w.Ciphertext), MaxWrappedBytes)
	}
	out := make([]byte, 0, 6+len(w.KeyVersion)+len(w.Ciphertext))
	out = append(out, wrappedMagic...)
	out = binary.BigEndian.AppendUint16(out, uint16(len(w.KeyVersion)))
	out = append(out, w.KeyVersion...)
	return append(out, w.Ciphertext...), nil
}

// DecodeWrapped parses EncodeWrapped's format; malformed input gets an error wrapping ErrIntegrity.
func DecodeWrapped(b []byte) (*Wrapped, error) {
	if len(b) > MaxWrappedBytes+6+maxVersionBytes {
		return nil, fmt.Errorf("%w: ciphertext of %d bytes is too large", ErrIntegrity, len(b))
	}
	if len(b) < 6 || string(b[:4]) != wrappedMagic {
		return nil, fmt.Errorf("%w: not an L1 ciphertext (missing %q header)", ErrIntegrity, wrappedMagic)
	}
	n := int(binary.BigEndian.Uint16(b[4:6]))
	if n > maxVersionBytes || len(b) < 6+n+1 {
		return nil, fmt.Errorf("%w: truncated L1 ciphertext", ErrIntegrity)
	}
	if len(b)-6-n > MaxWrappedBytes {
		return nil, fmt.Errorf("%w: wrapped ciphertext exceeds %d bytes", ErrIntegrity, MaxWrappedBytes)
	}
	return &Wrapped{KeyVersion: string(b[6 : 6+n]), Ciphertext: bytes.Clone(b[6+n:])}, nil
}

// payloadHeader is "SEK1" | uint16 len(keyID) | keyID.
func payloadHeader(keyID string) ([]byte, error) {
	if keyID == "" || len(keyID) > maxKeyIDBytes {
		return nil, fmt.Errorf("key ID of %d bytes is empty or exceeds %d", len(keyID), maxKeyIDBytes)
	}
	out := append([]byte(payloadMagic), 0, 0)
	binary.BigEndian.PutUint16(out[4:], uint16(len(keyID)))
	return append(out, keyID...), nil
}

// ParsePayload reads the header of a service-key ciphertext (Encrypt's output) and returns the key ID and the rest
// (nonce and sealed data). Malformed input gets an error wrapping ErrIntegrity.
func ParsePayload(b []byte) (keyID string, rest []byte, err error) {
	if len(b) > MaxPayload+1024 {
		return "", nil, fmt.Errorf("%w: ciphertext of %d bytes is too large", ErrIntegrity, len(b))
	}
	if len(b) < 6 || string(b[:4]) != payloadMagic {
		return "", nil, fmt.Errorf("%w: not a service-key ciphertext (missing %q header)", ErrIntegrity, payloadMagic)
	}
	n := int(binary.BigEndian.Uint16(b[4:6]))
	if n == 0 || n > maxKeyIDBytes || len(b) < 6+n {
		return "", nil, fmt.Errorf("%w: truncated service-key ciphertext header", ErrIntegrity)
	}
	return string(b[6 : 6+n]), b[6+n:], nil
}
