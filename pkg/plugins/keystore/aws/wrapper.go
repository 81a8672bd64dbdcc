package aws

import (
	"context"
	"fmt"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/apeirora/apeiro-cmk/pkg/keychain"
)

// maxWrapPlaintext is KMS Encrypt's plaintext limit; data keys are far smaller.
const maxWrapPlaintext = 4096

// maxWrappedBytes bounds a ciphertext handed to Unwrap (KMS ciphertexts of 4 KiB plaintexts are ~4.3 KiB).
const maxWrappedBytes = 6144

// Wrapper implements keychain.Wrapper with KMS Encrypt/Decrypt through the tenant's role: the aad map is the KMS
// EncryptionContext, so a wrapped key only unwraps for the same owner, and Decrypt names the key, so a ciphertext of
// another key never unwraps. KMS keeps every key version behind one ARN and Decrypt picks the right one, so rotation
// needs no re-wrap and Wrapper has no KeyVersion (keychain.Versioner is not implemented). Errors wrap the keychain
// sentinels (ErrKeyNotFound, ErrKeyDisabled, ErrUnavailable, ErrDenied, ErrIntegrity) with a message naming the field.
type Wrapper struct {
	be *backend
}

var _ keychain.Wrapper = (*Wrapper)(nil)

// NewWrapper returns a Wrapper for cfg (from ParseConfig; nil = the empty configuration: IRSA from the environment,
// resolved on the first call). Safe for concurrent use; credentials and clients are cached per (role, region, tenant).
func NewWrapper(cfg *Config) *Wrapper {
	return newWrapperWith(cfg, defaultFactory())
}

func newWrapperWith(cfg *Config, f clientFactory) *Wrapper {
	if cfg == nil {
		cfg, _ = ParseConfig("")
	}
	return &Wrapper{be: newBackend(cfg, f)}
}

// Wrap encrypts plaintext (1..4096 bytes) under keyID with EncryptionContext = aad.
func (w *Wrapper) Wrap(ctx context.Context, config *structpb.Struct, keyID string, plaintext []byte, aad map[string]string) (*keychain.Wrapped, error) {
	if len(plaintext) == 0 || len(plaintext) > maxWrapPlaintext {
		return nil, invalidArg("plaintext", "plaintext must be 1..%d bytes, got %d", maxWrapPlaintext, len(plaintext))
	}
	ctx, cancel := w.be.withBudget(ctx)
	defer cancel()
	c, k, _, err := w.be.keyClient(config, keyID)
	if err != nil {
		return nil, err
	}
	// Wrapping is rare (a service key is created or re-wrapped), so it first asks for the key's state: a new wrap
	// under a key that is not Enabled fails with the state named, whatever the KMS endpoint's own checks.
	md, err := w.be.describe(ctx, c, k)
	if err != nil {
		return nil, err
	}
	if md.KeyState != kmstypes.KeyStateEnabled {
		return nil, &Error{Code: codes.FailedPrecondition, Field: "keyId", Kind: keychain.ErrKeyDisabled,
			Msg: fmt.Sprintf("key %s is %s; only an enabled key wraps new keys", sdkaws.ToString(md.Arn), stateName(md.KeyState))}
	}
	out, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: sdkaws.String(k.Raw), Plaintext: plaintext, EncryptionContext: aad})
	if err != nil {
		return nil, mapAWS(ctx, "Encrypt with "+truncate(k.Raw), err)
	}
	return &keychain.Wrapped{Ciphertext: out.CiphertextBlob}, nil
}

// Unwrap decrypts a Wrapped from Wrap with the same keyID and aad.
func (w *Wrapper) Unwrap(ctx context.Context, config *structpb.Struct, keyID string, wr *keychain.Wrapped, aad map[string]string) ([]byte, error) {
	if wr == nil || len(wr.Ciphertext) == 0 || len(wr.Ciphertext) > maxWrappedBytes {
		return nil, &Error{Code: codes.InvalidArgument, Field: "ciphertext", Msg: "wrapped key is empty or larger than 6144 bytes", Kind: keychain.ErrIntegrity}
	}
	ctx, cancel := w.be.withBudget(ctx)
	defer cancel()
	c, k, _, err := w.be.keyClient(config, keyID)
	if err != nil {
		return nil, err
	}
	out, err := c.Decrypt(ctx, &kms.DecryptInput{KeyId: sdkaws.String(k.Raw), CiphertextBlob: wr.Ciphertext, EncryptionContext: aad})
	if err != nil {
		return nil, mapAWS(ctx, "Decrypt with "+truncate(k.Raw), err)
	}
	return out.Plaintext, nil
}

// CachedRoles reports how many tenant role sessions are cached and how many AssumeRole calls were made (for
// benchmarks and operators' diagnostics).
func (w *Wrapper) CachedRoles() (cached int, assumeCalls int64) {
	w.be.mu.Lock()
	defer w.be.mu.Unlock()
	return len(w.be.tenants), w.be.assumes.Load()
}
