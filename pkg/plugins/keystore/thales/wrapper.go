package thales

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/miekg/pkcs11"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"

	operationsv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/operations/v1"

	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/keychain"
)

// Wrapped-key format: version byte, 12-byte IV, AES-GCM ciphertext with its 16-byte tag — computed inside the token
// with the L1 key (CKM_AES_GCM), the aad as GCM additional data.
const (
	wrapFormatV1     = 1
	gcmIVBytes       = 12
	gcmTagBits       = 128
	maxWrapPlaintext = 4096
	maxWrappedBytes  = 1 + gcmIVBytes + maxWrapPlaintext + 16
)

// Wrapper implements keychain.Wrapper inside the token: AES-256-GCM with the Account's L1 key as a single
// C_Encrypt / C_Decrypt, the aad (canonically encoded) as GCM additional data, so a wrapped key unwraps only for the
// same owner, and the data key exists outside the token only in the caller's memory. (C_WrapKey with
// CKM_AES_KEY_WRAP_PAD would need the data key imported as a session object and cannot bind the aad.)
// Only AES-256 L1 keys wrap; the key's tenant must be the caller's.
type Wrapper struct {
	be *backend
}

var (
	_ keychain.Wrapper        = (*Wrapper)(nil)
	_ keychain.AccessProvider = (*Wrapper)(nil)
)

// NewWrapper returns a Wrapper for cfg (from ParseConfig; nil = the empty configuration).
func NewWrapper(cfg *Config) *Wrapper {
	if cfg == nil {
		cfg, _ = ParseConfig("")
	}
	return &Wrapper{be: newBackend(cfg)}
}

// AccessData adds the Account's access key (derived for its tenant), so probes through the operations plugin and
// the Wrapper's own calls authenticate as the Account's tenant and no other.
func (w *Wrapper) AccessData(a *cmkv1.Account) (map[string]any, error) {
	tenant := a.Labels[cmkv1.TenantLabel]
	if tenant == "" {
		return nil, fmt.Errorf("account %s/%s has no %s label", a.Namespace, a.Name, cmkv1.TenantLabel)
	}
	secret, err := w.be.accessSecret()
	if err != nil {
		return nil, err
	}
	return map[string]any{FieldAccessKey: AccessKey(secret, tenant)}, nil
}

// encodeAAD is a canonical, unambiguous encoding of the aad map: sorted keys, each key and value length-prefixed.
func encodeAAD(aad map[string]string) []byte {
	keys := make([]string, 0, len(aad))
	for k := range aad {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := []byte("apeiro-thales/aad/v1")
	for _, k := range keys {
		out = binary.BigEndian.AppendUint32(out, uint32(len(k)))
		out = append(out, k...)
		out = binary.BigEndian.AppendUint32(out, uint32(len(aad[k])))
		out = append(out, aad[k]...)
	}
	return out
}

func (w *Wrapper) aesKey(ctx context.Context, config *structpb.Struct, keyID, what string, fn func(c p11, sh pkcs11.SessionHandle, k *keyObj) error) error {
	p := &operationsv1.RequestParameters{Config: configOf(config), KeyId: keyID}
	return w.be.withKey(ctx, p, what, func(c p11, sh pkcs11.SessionHandle, k *keyObj, _ KeyRef, _ string) error {
		if k.keyType != pkcs11.CKK_AES || k.class != pkcs11.CKO_SECRET_KEY {
			return &Error{Code: codes.FailedPrecondition, Field: "keyId", Kind: keychain.ErrUnsupported, Msg: fmt.Sprintf("key %q is not an AES key; only AES-256 L1 keys wrap service keys", k.label)}
		}
		if k.state() != StateEnabled {
			return &Error{Code: codes.FailedPrecondition, Field: "keyId", Kind: keychain.ErrKeyDisabled, Msg: fmt.Sprintf("key %q is %s; only an enabled key wraps and unwraps", k.label, k.state())}
		}
		return fn(c, sh, k)
	})
}

// Wrap encrypts plaintext (1..4096 bytes) under keyID inside the token.
func (w *Wrapper) Wrap(ctx context.Context, config *structpb.Struct, keyID string, plaintext []byte, aad map[string]string) (*keychain.Wrapped, error) {
	if len(plaintext) == 0 || len(plaintext) > maxWrapPlaintext {
		return nil, invalidArg("plaintext", "plaintext must be 1..%d bytes, got %d", maxWrapPlaintext, len(plaintext))
	}
	ctx, cancel := w.be.withBudget(ctx)
	defer cancel()
	iv := make([]byte, gcmIVBytes)
	if _, err := rand.Read(iv); err != nil {
		return nil, fmt.Errorf("IV: %w", err)
	}
	var ct []byte
	err := w.aesKey(ctx, config, keyID, "Wrap", func(c p11, sh pkcs11.SessionHandle, k *keyObj) error {
		params := pkcs11.NewGCMParams(iv, encodeAAD(aad), gcmTagBits)
		defer params.Free()
		if err := c.EncryptInit(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}, k.handle); err != nil {
			return err
		}
		out, err := c.Encrypt(sh, plaintext)
		ct = out
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, 1+gcmIVBytes+len(ct))
	out = append(append(append(out, wrapFormatV1), iv...), ct...)
	return &keychain.Wrapped{Ciphertext: out, KeyVersion: Version}, nil
}

// Unwrap decrypts a Wrapped from Wrap with the same keyID and aad. A modified ciphertext, another key or another
// aad fail GCM authentication inside the token (ErrIntegrity).
func (w *Wrapper) Unwrap(ctx context.Context, config *structpb.Struct, keyID string, wr *keychain.Wrapped, aad map[string]string) ([]byte, error) {
	if wr == nil || len(wr.Ciphertext) < 1+gcmIVBytes+16 || len(wr.Ciphertext) > maxWrappedBytes || wr.Ciphertext[0] != wrapFormatV1 {
		return nil, &Error{Code: codes.InvalidArgument, Field: "ciphertext", Kind: keychain.ErrIntegrity, Msg: "wrapped key is not a THALES-wrapped key (format, size)"}
	}
	ctx, cancel := w.be.withBudget(ctx)
	defer cancel()
	iv, body := wr.Ciphertext[1:1+gcmIVBytes], wr.Ciphertext[1+gcmIVBytes:]
	var pt []byte
	err := w.aesKey(ctx, config, keyID, "Unwrap", func(c p11, sh pkcs11.SessionHandle, k *keyObj) error {
		params := pkcs11.NewGCMParams(iv, encodeAAD(aad), gcmTagBits)
		defer params.Free()
		if err := c.DecryptInit(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}, k.handle); err != nil {
			return err
		}
		out, err := c.Decrypt(sh, body)
		if err != nil {
			// SoftHSM reports a failed tag as CKR_GENERAL_ERROR, vendor HSMs as CKR_ENCRYPTED_DATA_INVALID.
			if isRV(err, pkcs11.CKR_GENERAL_ERROR) || isRV(err, pkcs11.CKR_ENCRYPTED_DATA_INVALID) || isRV(err, pkcs11.CKR_ENCRYPTED_DATA_LEN_RANGE) {
				return &Error{Code: codes.InvalidArgument, Field: "ciphertext", Kind: keychain.ErrIntegrity, Msg: fmt.Sprintf("wrapped key does not authenticate under key %q with this aad", k.label), Cause: err}
			}
			return err
		}
		pt = out
		return nil
	})
	if err != nil {
		return nil, err
	}
	return pt, nil
}
