package local

import (
	"errors"
	"fmt"
)

// Platform-held access. CMK reaches a local keystore instance with the access data CreateKeystore minted. Accounts
// on keystore "local" have no such data: the platform (the webhook server and its controllers) is the custodian of
// the embedded keystore, so it derives the key-management access data of one instance per tenant from the shared
// secret itself, exactly as CreateKeystore would have minted it. A tenant can therefore only ever reach the keys of
// its own instance.

// TenantInstanceID is the keystore instance that holds tenant's L1 keys when the platform provides the access data.
// It cannot collide with CreateKeystore's "lks-…" instances.
func TenantInstanceID(tenant string) string { return "tenant-" + tenant }

// ErrNoSharedSecret: platform access needs the secret to be shared with the plugin that serves the keys.
var ErrNoSharedSecret = errors.New("local keystore: platform access needs `dir` or `secret` in the configuration (an in-memory keystore with a per-process secret cannot be shared)")

// PlatformAccessData returns the key-management access data (instanceId, accessKey) of instance under o's current
// configuration. The configuration must name a shared `dir` or `secret`.
func (o *Operations) PlatformAccessData(instance string) (map[string]any, error) {
	if instance == "" {
		return nil, errors.New("local keystore: instance is required")
	}
	be := o.backend()
	if be.cfg.Dir == "" && be.cfg.Secret == nil {
		return nil, ErrNoSharedSecret
	}
	return map[string]any{FieldInstanceID: instance, FieldAccessKey: AccessKey(be.secret, roleKeys, instance)}, nil
}

// CiphertextVersion returns the key version named in the header of an Encrypt ciphertext.
func CiphertextVersion(ct []byte) (string, error) {
	v, _, _, err := parseHeader(ct)
	if err != nil {
		return "", fmt.Errorf("local keystore: %w", err)
	}
	return v, nil
}
