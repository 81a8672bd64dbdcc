package keychain

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"google.golang.org/protobuf/types/known/structpb"

	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
)

// Optional capabilities a Wrapper may have. The chain checks for them with type assertions so a backend implements
// only what it can.
type (
	// AccessProvider adds backend access data to an Account's instance configuration. The local keystore uses it:
	// the platform holds the keystore secret and derives the tenant instance's access key (see docs/keychain.md),
	// just as the IRSA platform identity assumes the tenant's role for aws.
	AccessProvider interface {
		AccessData(a *cmkv1.Account) (map[string]any, error)
	}
	// Versioner reports the L1 key's current version, so keys wrapped under an older version can be re-wrapped
	// after a rotation. A backend whose rotation is transparent (KMS keeps every version behind one ARN and Decrypt
	// picks the right one) need not implement it.
	Versioner interface {
		KeyVersion(ctx context.Context, config *structpb.Struct, keyID string) (string, error)
	}
	// Provisioner creates a missing L1 key. Only the embedded local keystore implements it: the platform is its
	// custodian. Keys in a customer's keystore (aws, openbao, thales) are never created by us.
	Provisioner interface {
		EnsureKey(ctx context.Context, config *structpb.Struct, keyID string) (created bool, err error)
	}
)

// Errors of the service-key API (besides the Wrapper errors, which pass through wrapped).
var (
	ErrNoWrapper           = errors.New("no keystore backend wraps keys for this keystore type")
	ErrServiceKeyNotFound  = errors.New("service encryption key not found")
	ErrServiceKeyNotReady  = errors.New("service encryption key is not ready")
	ErrWrappedKeyCorrupted = errors.New("stored wrapped key is missing or does not belong to the key")
	ErrUnsupported         = errors.New("operation not supported for this key")
)

// Chain is the key chain Tenant → Account (L1 key) → ServiceEncryptionKey: it maps keystore types to their
// Wrappers and reads keys, Accounts and the stored wrapped material through Reader.
type Chain struct {
	// Reader reads ServiceEncryptionKeys, Accounts and Secrets. Use a live reader (the manager's API reader) so
	// Secrets are not cached cluster-wide in memory.
	Reader client.Reader

	mu        sync.RWMutex
	wrappers  map[cmkv1.KeystoreType]Wrapper
	provision map[cmkv1.KeystoreType]bool
}

// NewChain returns an empty chain reading through r.
func NewChain(r client.Reader) *Chain {
	return &Chain{Reader: r, wrappers: map[cmkv1.KeystoreType]Wrapper{}, provision: map[cmkv1.KeystoreType]bool{}}
}

// Register maps keystore type ks to w (replacing an earlier mapping).
func (c *Chain) Register(ks cmkv1.KeystoreType, w Wrapper) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.wrappers == nil {
		c.wrappers = map[cmkv1.KeystoreType]Wrapper{}
	}
	c.wrappers[ks] = w
}

// SetProvisioning turns creation of missing L1 keys on or off for ks (only effective when its Wrapper is a
// Provisioner).
func (c *Chain) SetProvisioning(ks cmkv1.KeystoreType, on bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.provision == nil {
		c.provision = map[cmkv1.KeystoreType]bool{}
	}
	c.provision[ks] = on
}

// Keystores lists the mapped keystore types, sorted.
func (c *Chain) Keystores() []cmkv1.KeystoreType {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]cmkv1.KeystoreType, 0, len(c.wrappers))
	for k := range c.wrappers {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Wrapper returns the Wrapper of keystore type ks or an error wrapping ErrNoWrapper.
func (c *Chain) Wrapper(ks cmkv1.KeystoreType) (Wrapper, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	w, ok := c.wrappers[ks]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrNoWrapper, ks)
	}
	return w, nil
}

// Provisions reports whether missing L1 keys of ks are created by the platform (and therefore not a reason to deny
// an Account at admission).
func (c *Chain) Provisions(ks cmkv1.KeystoreType) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	_, ok := c.wrappers[ks].(Provisioner)
	return ok && c.provision[ks]
}

// InstanceConfig is the keystore instance configuration for a (the values the keystore plugins receive), with the
// backend's access data added when its Wrapper is an AccessProvider.
func (c *Chain) InstanceConfig(a *cmkv1.Account) (*structpb.Struct, error) {
	v := BaseInstanceConfig(a)
	c.mu.RLock()
	w := c.wrappers[a.Spec.Keystore]
	c.mu.RUnlock()
	if ap, ok := w.(AccessProvider); ok {
		extra, err := ap.AccessData(a)
		if err != nil {
			return nil, fmt.Errorf("access data for keystore %q: %w", a.Spec.Keystore, err)
		}
		for k, x := range extra {
			v[k] = x
		}
	}
	return structpb.NewStruct(v)
}

// BaseInstanceConfig is what every backend gets for an Account: region, key reference, namespace, the owning tenant
// (stamped from the namespace and validated by the webhook, so a plugin can bind credentials to it, e.g. as the STS
// ExternalId) and the authentication references. It never contains secret values.
func BaseInstanceConfig(a *cmkv1.Account) map[string]any {
	v := map[string]any{"region": a.Spec.Region, "keyRef": a.Spec.KeyRef, "namespace": a.Namespace, "tenant": a.Labels[cmkv1.TenantLabel]}
	if au := a.Spec.Auth; au != nil {
		if au.IRSARoleARN != "" {
			v["roleArn"] = au.IRSARoleARN
		}
		if au.OpenBaoRole != "" {
			v["openBaoRole"] = au.OpenBaoRole
		}
		if au.SecretRef != nil {
			v["secretRef"] = map[string]any{"name": au.SecretRef.Name, "key": au.SecretRef.Key}
		}
	}
	return v
}

// EnsureL1Key creates the Account's L1 key when its keystore is provisioned by the platform and the key is missing.
// It reports whether a key was created; for other keystores it does nothing. It looks at the keystore only, not at
// the Account's history: the Account reconciler calls it only for an Account that never had a working key
// (KeyEstablished), so a lost key is reported, never replaced. Other callers (cmkctl, tests) hand it Accounts of
// their own making.
func (c *Chain) EnsureL1Key(ctx context.Context, a *cmkv1.Account) (bool, error) {
	if !c.Provisions(a.Spec.Keystore) {
		return false, nil
	}
	w, _ := c.Wrapper(a.Spec.Keystore)
	cfg, err := c.InstanceConfig(a)
	if err != nil {
		return false, err
	}
	return w.(Provisioner).EnsureKey(ctx, cfg, a.Spec.KeyRef)
}

// L1KeyVersion returns the current version of the Account's L1 key, or "" when the backend does not report
// versions.
func (c *Chain) L1KeyVersion(ctx context.Context, a *cmkv1.Account) (string, error) {
	w, err := c.Wrapper(a.Spec.Keystore)
	if err != nil {
		return "", err
	}
	v, ok := w.(Versioner)
	if !ok {
		return "", nil
	}
	cfg, err := c.InstanceConfig(a)
	if err != nil {
		return "", err
	}
	return v.KeyVersion(ctx, cfg, a.Spec.KeyRef)
}

// WrapWithAccount wraps plaintext with the Account's L1 key.
func (c *Chain) WrapWithAccount(ctx context.Context, a *cmkv1.Account, plaintext []byte, aad map[string]string) (*Wrapped, error) {
	w, err := c.Wrapper(a.Spec.Keystore)
	if err != nil {
		return nil, err
	}
	cfg, err := c.InstanceConfig(a)
	if err != nil {
		return nil, err
	}
	out, err := w.Wrap(ctx, cfg, a.Spec.KeyRef, plaintext, aad)
	if err != nil {
		return nil, fmt.Errorf("wrapping with L1 key %q of account %s/%s: %w", a.Spec.KeyRef, a.Namespace, a.Name, err)
	}
	return out, nil
}

// UnwrapWithAccount unwraps w with the Account's L1 key.
func (c *Chain) UnwrapWithAccount(ctx context.Context, a *cmkv1.Account, wr *Wrapped, aad map[string]string) ([]byte, error) {
	w, err := c.Wrapper(a.Spec.Keystore)
	if err != nil {
		return nil, err
	}
	cfg, err := c.InstanceConfig(a)
	if err != nil {
		return nil, err
	}
	out, err := w.Unwrap(ctx, cfg, a.Spec.KeyRef, wr, aad)
	if err != nil {
		return nil, fmt.Errorf("unwrapping with L1 key %q of account %s/%s: %w", a.Spec.KeyRef, a.Namespace, a.Name, err)
	}
	return out, nil
}

// Account reads an Account.
func (c *Chain) Account(ctx context.Context, namespace, name string) (*cmkv1.Account, error) {
	var a cmkv1.Account
	if err := c.Reader.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, &a); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("account %s/%s: %w", namespace, name, err)
		}
		return nil, fmt.Errorf("reading account %s/%s: %w", namespace, name, err)
	}
	return &a, nil
}

// ServiceKey is a Ready ServiceEncryptionKey with its Account and stored wrapped material.
type ServiceKey struct {
	Key     *cmkv1.ServiceEncryptionKey
	Account *cmkv1.Account
	Wrapped *Wrapped
}

// LoadServiceKey reads a Ready key, its Account and its stored wrapped material, checking that the material
// belongs to this key (owner UID and key ID).
func (c *Chain) LoadServiceKey(ctx context.Context, namespace, name string) (*ServiceKey, error) {
	var k cmkv1.ServiceEncryptionKey
	if err := c.Reader.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, &k); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("%w: %s/%s", ErrServiceKeyNotFound, namespace, name)
		}
		return nil, fmt.Errorf("reading service encryption key %s/%s: %w", namespace, name, err)
	}
	if !k.DeletionTimestamp.IsZero() {
		return nil, fmt.Errorf("%w: %s/%s is being deleted", ErrServiceKeyNotReady, namespace, name)
	}
	if k.Status.KeyID == "" || !meta.IsStatusConditionTrue(k.Status.Conditions, cmkv1.ConditionReady) {
		return nil, fmt.Errorf("%w: %s/%s has no wrapped key yet", ErrServiceKeyNotReady, namespace, name)
	}
	var s corev1.Secret
	if err := c.Reader.Get(ctx, types.NamespacedName{Namespace: namespace, Name: SecretName(name)}, &s); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("%w: secret %s/%s is gone", ErrWrappedKeyCorrupted, namespace, SecretName(name))
		}
		return nil, fmt.Errorf("reading wrapped key of %s/%s: %w", namespace, name, err)
	}
	wr, err := WrappedFromSecret(&s, &k)
	if err != nil {
		return nil, err
	}
	acctNS := k.Spec.AccountRef.Namespace
	if acctNS == "" {
		acctNS = k.Namespace
	}
	a, err := c.Account(ctx, acctNS, k.Spec.AccountRef.Name)
	if err != nil {
		return nil, err
	}
	return &ServiceKey{Key: &k, Account: a, Wrapped: wr}, nil
}

// UnwrapServiceKey returns the plaintext material of a Ready ServiceEncryptionKey, unwrapped by its Account's L1
// key. The caller must already be authorised for the key (the identity layer checks the workload's SPIFFE ID with
// WorkloadAllowed) and must not log or persist the result. AES256 keys are 32 raw bytes; RSA keys are PKCS#8 DER.
func (c *Chain) UnwrapServiceKey(ctx context.Context, namespace, name string) ([]byte, error) {
	sk, err := c.LoadServiceKey(ctx, namespace, name)
	if err != nil {
		return nil, err
	}
	return c.UnwrapWithAccount(ctx, sk.Account, sk.Wrapped, ServiceKeyAAD(sk.Key))
}

// WorkloadAllowed reports whether the SPIFFE ID is listed in the key's spec.workloadIdentities.
func WorkloadAllowed(k *cmkv1.ServiceEncryptionKey, spiffeID string) bool {
	return spiffeID != "" && slices.Contains(k.Spec.WorkloadIdentities, spiffeID)
}

// Encrypt seals plaintext with an AES256 ServiceEncryptionKey (AES-256-GCM, random nonce); aad, optional, must be
// given again to Decrypt. The ciphertext names the key ID, so a payload cannot be opened with another key.
func (c *Chain) Encrypt(ctx context.Context, namespace, name string, plaintext, aad []byte) ([]byte, error) {
	if len(plaintext) > MaxPayload {
		return nil, fmt.Errorf("payload of %d bytes exceeds the limit of %d", len(plaintext), MaxPayload)
	}
	sk, key, err := c.dataKey(ctx, namespace, name)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	return sealPayload(key, sk.Key.Status.KeyID, plaintext, aad)
}

// Decrypt opens a ciphertext from Encrypt.
func (c *Chain) Decrypt(ctx context.Context, namespace, name string, ciphertext, aad []byte) ([]byte, error) {
	keyID, _, err := ParsePayload(ciphertext)
	if err != nil {
		return nil, err
	}
	sk, key, err := c.dataKey(ctx, namespace, name)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	if keyID != sk.Key.Status.KeyID {
		return nil, fmt.Errorf("%w: ciphertext was sealed with key ID %q, %s/%s has %q", ErrIntegrity, keyID, namespace, name, sk.Key.Status.KeyID)
	}
	return openPayload(key, ciphertext, aad)
}

func (c *Chain) dataKey(ctx context.Context, namespace, name string) (*ServiceKey, []byte, error) {
	sk, err := c.LoadServiceKey(ctx, namespace, name)
	if err != nil {
		return nil, nil, err
	}
	if sk.Key.Spec.Algorithm != cmkv1.AlgorithmAES256 {
		return nil, nil, fmt.Errorf("%w: %s/%s is %s; payload encryption needs an AES256 key", ErrUnsupported, namespace, name, sk.Key.Spec.Algorithm)
	}
	key, err := c.UnwrapWithAccount(ctx, sk.Account, sk.Wrapped, ServiceKeyAAD(sk.Key))
	if err != nil {
		return nil, nil, err
	}
	if len(key) != 32 {
		clear(key)
		return nil, nil, fmt.Errorf("%w: unwrapped key of %s/%s has %d bytes, want 32", ErrWrappedKeyCorrupted, namespace, name, len(key))
	}
	return sk, key, nil
}

// EncryptWithAccount encrypts a (small) payload directly with an Account's L1 key; the result carries the L1 key
// version for Decrypt. aad binds it to the Account's tenant, namespace and name.
func (c *Chain) EncryptWithAccount(ctx context.Context, namespace, name string, plaintext []byte) ([]byte, error) {
	a, err := c.Account(ctx, namespace, name)
	if err != nil {
		return nil, err
	}
	return c.EncryptForAccount(ctx, a, plaintext)
}

// EncryptForAccount is EncryptWithAccount for an Account the caller already holds (e.g. read from a manifest).
func (c *Chain) EncryptForAccount(ctx context.Context, a *cmkv1.Account, plaintext []byte) ([]byte, error) {
	if len(plaintext) == 0 || len(plaintext) > MaxL1Payload {
		return nil, fmt.Errorf("payload of %d bytes: direct L1 encryption takes 1..%d bytes; use a service encryption key for more", len(plaintext), MaxL1Payload)
	}
	w, err := c.WrapWithAccount(ctx, a, plaintext, AccountAAD(a))
	if err != nil {
		return nil, err
	}
	return EncodeWrapped(w)
}

// DecryptWithAccount opens a ciphertext from EncryptWithAccount.
func (c *Chain) DecryptWithAccount(ctx context.Context, namespace, name string, ciphertext []byte) ([]byte, error) {
	a, err := c.Account(ctx, namespace, name)
	if err != nil {
		return nil, err
	}
	return c.DecryptForAccount(ctx, a, ciphertext)
}

// DecryptForAccount is DecryptWithAccount for an Account the caller already holds.
func (c *Chain) DecryptForAccount(ctx context.Context, a *cmkv1.Account, ciphertext []byte) ([]byte, error) {
	w, err := DecodeWrapped(ciphertext)
	if err != nil {
		return nil, err
	}
	return c.UnwrapWithAccount(ctx, a, w, AccountAAD(a))
}

// AccountAAD binds a direct L1 ciphertext to its Account.
func AccountAAD(a *cmkv1.Account) map[string]string {
	return map[string]string{"tenant": a.Labels[cmkv1.TenantLabel], "namespace": a.Namespace, "account": a.Name}
}

// ServiceKeyAAD binds a wrapped service key to its owner: tenant, namespace, name and key ID (the object's UID, so
// a key deleted and re-created under the same name never accepts the old material).
func ServiceKeyAAD(k *cmkv1.ServiceEncryptionKey) map[string]string {
	return map[string]string{"tenant": k.Labels[cmkv1.TenantLabel], "namespace": k.Namespace, "serviceEncryptionKey": k.Name, "keyID": k.Status.KeyID}
}

func sealPayload(key []byte, keyID string, plaintext, aad []byte) ([]byte, error) {
	gcm, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	header, err := payloadHeader(keyID)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, gcm.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("nonce: %w", err)
	}
	out := append(header, nonce...)
	return gcm.Seal(out, nonce, plaintext, append(append([]byte(nil), header...), aad...)), nil
}

func openPayload(key, ciphertext, aad []byte) ([]byte, error) {
	_, rest, err := ParsePayload(ciphertext)
	if err != nil {
		return nil, err
	}
	header := ciphertext[:len(ciphertext)-len(rest)]
	gcm, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	if len(rest) < gcm.NonceSize()+gcm.Overhead() {
		return nil, fmt.Errorf("%w: truncated ciphertext", ErrIntegrity)
	}
	pt, err := gcm.Open(nil, rest[:gcm.NonceSize()], rest[gcm.NonceSize():], append(append([]byte(nil), header...), aad...))
	if err != nil {
		return nil, fmt.Errorf("%w: ciphertext or additional data was modified", ErrIntegrity)
	}
	return pt, nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("cipher: %w", err)
	}
	return cipher.NewGCM(b)
}
