package openbao

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	bao "github.com/openbao/openbao/api/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/apeirora/apeiro-cmk/pkg/keychain"
)

// Bounds of what Wrap / Unwrap accept (data keys are 32 bytes).
const (
	maxWrapPlaintext = 4096
	maxWrappedBytes  = 8192
)

// Wrapper implements keychain.Wrapper with transit encrypt/decrypt in the tenant's mount. The aad map becomes the
// AEAD associated_data of aes256-gcm96 (canonical JSON, keys sorted), so a wrapped key only unwraps for the same
// owner; derived keys (a per-context key) are not needed for that and would forbid convergent rotation semantics.
// The ciphertext is transit's "vault:v<n>:…" string, and KeyVersion is "v<n>", so keychain.Versioner can tell which
// keys to re-wrap after a rotation. Errors wrap the keychain sentinels.
type Wrapper struct {
	be *backend
}

var (
	_ keychain.Wrapper   = (*Wrapper)(nil)
	_ keychain.Versioner = (*Wrapper)(nil)
)

// NewWrapper returns a Wrapper for cfg (nil = the empty configuration). Safe for concurrent use.
func NewWrapper(cfg *Config) *Wrapper {
	if cfg == nil {
		cfg, _ = ParseConfig("")
	}
	return &Wrapper{be: newBackend(cfg)}
}

func associatedData(aad map[string]string) string {
	if len(aad) == 0 {
		return ""
	}
	raw, _ := json.Marshal(aad) // map keys are sorted: canonical
	return base64.StdEncoding.EncodeToString(raw)
}

// usable binds config, checks the key name and that the key is neither disabled nor pending deletion.
func (w *Wrapper) usable(ctx context.Context, config *structpb.Struct, keyID string) (*binding, error) {
	bd, err := w.be.bind(config)
	if err != nil {
		return nil, err
	}
	if err := checkKeyName(keyID); err != nil {
		return nil, err
	}
	st, err := w.be.cachedStateOf(ctx, bd)
	if err != nil {
		return nil, err
	}
	switch statusOf(st, &transitKey{Name: keyID}) {
	case StateDisabled:
		return nil, disabledErr("key %s/%s is disabled", bd.mount, keyID)
	case StatePendingDeletion:
		return nil, disabledErr("key %s/%s is pending deletion", bd.mount, keyID)
	}
	return bd, nil
}

// Wrap encrypts plaintext (1..4096 bytes) under keyID in the tenant's mount with associated_data = aad. The key must
// exist: transit would otherwise create a key on encrypt, so its existence is checked first.
func (w *Wrapper) Wrap(ctx context.Context, config *structpb.Struct, keyID string, plaintext []byte, aad map[string]string) (*keychain.Wrapped, error) {
	if len(plaintext) == 0 || len(plaintext) > maxWrapPlaintext {
		return nil, invalidArg("plaintext", "plaintext must be 1..%d bytes, got %d", maxWrapPlaintext, len(plaintext))
	}
	ctx, cancel := w.be.withBudget(ctx)
	defer cancel()
	bd, err := w.usable(ctx, config, keyID)
	if err != nil {
		return nil, err
	}
	if _, err := w.be.readKey(ctx, bd, keyID); err != nil {
		return nil, err
	}
	return w.encrypt(ctx, bd, keyID, plaintext, aad)
}

func (w *Wrapper) encrypt(ctx context.Context, bd *binding, keyID string, plaintext []byte, aad map[string]string) (*keychain.Wrapped, error) {
	data := map[string]any{"plaintext": base64.StdEncoding.EncodeToString(plaintext)}
	if ad := associatedData(aad); ad != "" {
		data["associated_data"] = ad
	}
	sec, err := w.be.do(ctx, bd, "encrypt with "+bd.mount+"/"+keyID, func(l logical) (*bao.Secret, error) {
		return l.WriteWithContext(ctx, bd.mount+"/encrypt/"+keyID, data)
	})
	if err != nil {
		return nil, err
	}
	return wrappedOf(sec)
}

func wrappedOf(sec *bao.Secret) (*keychain.Wrapped, error) {
	ct := ""
	if sec != nil && sec.Data != nil {
		ct, _ = sec.Data["ciphertext"].(string)
	}
	v, ok := versionOf(ct)
	if !ok {
		return nil, &Error{Code: codes.Internal, Msg: "OpenBao returned no transit ciphertext"}
	}
	return &keychain.Wrapped{Ciphertext: []byte(ct), KeyVersion: v}, nil
}

// versionOf reads "v<n>" from a transit ciphertext "vault:v<n>:<base64>".
func versionOf(ct string) (string, bool) {
	parts := strings.SplitN(ct, ":", 3)
	if len(parts) != 3 || parts[0] != "vault" || len(parts[1]) < 2 || parts[1][0] != 'v' || parts[2] == "" {
		return "", false
	}
	for _, r := range parts[1][1:] {
		if r < '0' || r > '9' {
			return "", false
		}
	}
	return parts[1], true
}

// Unwrap decrypts a Wrapped from Wrap with the same keyID and aad.
func (w *Wrapper) Unwrap(ctx context.Context, config *structpb.Struct, keyID string, wr *keychain.Wrapped, aad map[string]string) ([]byte, error) {
	if wr == nil || len(wr.Ciphertext) == 0 || len(wr.Ciphertext) > maxWrappedBytes {
		return nil, &Error{Code: codes.InvalidArgument, Field: "ciphertext", Kind: keychain.ErrIntegrity, Msg: fmt.Sprintf("wrapped key is empty or larger than %d bytes", maxWrappedBytes)}
	}
	if _, ok := versionOf(string(wr.Ciphertext)); !ok {
		return nil, &Error{Code: codes.InvalidArgument, Field: "ciphertext", Kind: keychain.ErrIntegrity, Msg: "wrapped key is not a transit ciphertext (vault:v<n>:…)"}
	}
	ctx, cancel := w.be.withBudget(ctx)
	defer cancel()
	bd, err := w.usable(ctx, config, keyID)
	if err != nil {
		return nil, err
	}
	data := map[string]any{"ciphertext": string(wr.Ciphertext)}
	if ad := associatedData(aad); ad != "" {
		data["associated_data"] = ad
	}
	sec, err := w.be.do(ctx, bd, "decrypt with "+bd.mount+"/"+keyID, func(l logical) (*bao.Secret, error) {
		return l.WriteWithContext(ctx, bd.mount+"/decrypt/"+keyID, data)
	})
	if err != nil {
		return nil, err
	}
	pt := ""
	if sec != nil && sec.Data != nil {
		pt, _ = sec.Data["plaintext"].(string)
	}
	out, derr := base64.StdEncoding.DecodeString(pt)
	if derr != nil || len(out) == 0 {
		return nil, &Error{Code: codes.Internal, Msg: "OpenBao returned no plaintext"}
	}
	return out, nil
}

// KeyVersion implements keychain.Versioner: "v<latest_version>".
func (w *Wrapper) KeyVersion(ctx context.Context, config *structpb.Struct, keyID string) (string, error) {
	ctx, cancel := w.be.withBudget(ctx)
	defer cancel()
	bd, err := w.be.bind(config)
	if err != nil {
		return "", err
	}
	if err := checkKeyName(keyID); err != nil {
		return "", err
	}
	k, err := w.be.readKey(ctx, bd, keyID)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("v%d", k.Latest), nil
}

// Rotate adds a new version to the key (transit keys/<name>/rotate); earlier versions keep decrypting.
func (w *Wrapper) Rotate(ctx context.Context, config *structpb.Struct, keyID string) (string, error) {
	ctx, cancel := w.be.withBudget(ctx)
	defer cancel()
	bd, err := w.usable(ctx, config, keyID)
	if err != nil {
		return "", err
	}
	k, err := w.be.readKey(ctx, bd, keyID)
	if err != nil {
		return "", err
	}
	if k.Imported {
		// Transit would generate the new version itself, which is not the customer's material: a BYOK key gets a
		// new version only by importing one.
		return "", &Error{Code: codes.FailedPrecondition, Field: "keyId", Kind: keychain.ErrUnsupported,
			Msg: fmt.Sprintf("key %s/%s holds imported (BYOK) material: rotate it by importing new material (GetImportParameters + ImportKeyMaterial)", bd.mount, keyID)}
	}
	if _, err := w.be.do(ctx, bd, "rotating "+bd.mount+"/"+keyID, func(l logical) (*bao.Secret, error) {
		return l.WriteWithContext(ctx, bd.mount+"/keys/"+keyID+"/rotate", map[string]any{})
	}); err != nil {
		return "", err
	}
	return w.KeyVersion(ctx, config, keyID)
}

// Rewrap re-encrypts a wrapped key under the key's latest version. Without aad this is transit's rewrap endpoint
// (the plaintext never leaves the server). With aad it is Unwrap + encrypt in the plugin: the Vault-compatible
// rewrap endpoint accepts associated_data but does not apply it to the decryption (checked against the test peer),
// so it cannot rewrap an AEAD ciphertext bound to aad. The data key passes through the plugin's memory, as on every
// Unwrap.
func (w *Wrapper) Rewrap(ctx context.Context, config *structpb.Struct, keyID string, wr *keychain.Wrapped, aad map[string]string) (*keychain.Wrapped, error) {
	if wr == nil || len(wr.Ciphertext) > maxWrappedBytes {
		return nil, &Error{Code: codes.InvalidArgument, Field: "ciphertext", Kind: keychain.ErrIntegrity, Msg: "wrapped key is missing or too large"}
	}
	if _, ok := versionOf(string(wr.Ciphertext)); !ok {
		return nil, &Error{Code: codes.InvalidArgument, Field: "ciphertext", Kind: keychain.ErrIntegrity, Msg: "wrapped key is not a transit ciphertext (vault:v<n>:…)"}
	}
	ctx, cancel := w.be.withBudget(ctx)
	defer cancel()
	if len(aad) > 0 {
		pt, err := w.Unwrap(ctx, config, keyID, wr, aad)
		if err != nil {
			return nil, err
		}
		defer clear(pt)
		bd, err := w.be.bind(config)
		if err != nil {
			return nil, err
		}
		return w.encrypt(ctx, bd, keyID, pt, aad)
	}
	bd, err := w.usable(ctx, config, keyID)
	if err != nil {
		return nil, err
	}
	sec, err := w.be.do(ctx, bd, "rewrap with "+bd.mount+"/"+keyID, func(l logical) (*bao.Secret, error) {
		return l.WriteWithContext(ctx, bd.mount+"/rewrap/"+keyID, map[string]any{"ciphertext": string(wr.Ciphertext)})
	})
	if err != nil {
		return nil, err
	}
	return wrappedOf(sec)
}

// DataKey asks OpenBao for a fresh 256-bit data key (transit datakey/plaintext) and returns it with its wrapped
// form bound to aad. Transit's datakey endpoint takes no associated_data, so its own ciphertext is discarded and the
// key is wrapped with Wrap's encrypt (associated_data = aad): one format for every wrapped key.
func (w *Wrapper) DataKey(ctx context.Context, config *structpb.Struct, keyID string, aad map[string]string) ([]byte, *keychain.Wrapped, error) {
	ctx, cancel := w.be.withBudget(ctx)
	defer cancel()
	bd, err := w.usable(ctx, config, keyID)
	if err != nil {
		return nil, nil, err
	}
	sec, err := w.be.do(ctx, bd, "datakey with "+bd.mount+"/"+keyID, func(l logical) (*bao.Secret, error) {
		return l.WriteWithContext(ctx, bd.mount+"/datakey/plaintext/"+keyID, map[string]any{"bits": 256})
	})
	if err != nil {
		return nil, nil, err
	}
	pt := ""
	if sec != nil && sec.Data != nil {
		pt, _ = sec.Data["plaintext"].(string)
	}
	key, derr := base64.StdEncoding.DecodeString(pt)
	if derr != nil || len(key) != 32 {
		return nil, nil, &Error{Code: codes.Internal, Msg: "OpenBao returned no 256-bit data key"}
	}
	wr, err := w.encrypt(ctx, bd, keyID, key, aad)
	if err != nil {
		return nil, nil, err
	}
	return key, wr, nil
}

// Health reports the server's sys/health state: nil when usable (active, or a standby that has an active node to
// forward to), else an Unavailable error naming sealed / uninitialised / standby without an active node (errors.Is
// ErrSealed / ErrUninitialized / ErrStandby).
func (w *Wrapper) Health(ctx context.Context) error {
	ctx, cancel := w.be.withBudget(ctx)
	defer cancel()
	if e := w.be.health(ctx); e != nil {
		return e
	}
	return nil
}

// EnsureMount creates the transit mount of tenant when it is missing (platform onboarding of a tenant).
func (w *Wrapper) EnsureMount(ctx context.Context, tenant string) (string, error) {
	ctx, cancel := w.be.withBudget(ctx)
	defer cancel()
	bd, err := w.be.EnsureMount(ctx, tenant)
	if err != nil {
		return "", err
	}
	return bd.mount, nil
}

// Logins reports how many logins and token renewals the Wrapper made (tests, diagnostics).
func (w *Wrapper) Logins() (logins, renewals int64) {
	return w.be.sess.logins.Load(), w.be.sess.renewals.Load()
}
