// Package localwrap is the keychain.Wrapper of the embedded local keystore. It runs the local operations plugin
// in-process (the v0.14 keystore service has no wrap/unwrap RPC) with the same yamlConfiguration as the profile's
// LOCAL entry, so it sees the same key directory and secret as the plugin the probes and CMK talk to.
//
// Access data: the platform is the custodian of the embedded keystore, so every tenant gets one keystore instance
// (local.TenantInstanceID) whose key-management access key the Wrapper derives from the shared secret
// (AccessData). Missing L1 keys are created on request (EnsureKey): nobody else could create them.
package localwrap

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	commonv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/common/v1"
	operationsv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/operations/v1"
	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"

	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/keychain"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/local"
)

// Wrapper wraps data keys with local keystore keys (AES-256-GCM under the key's latest version).
type Wrapper struct {
	ops *local.Operations
}

var (
	_ keychain.Wrapper        = (*Wrapper)(nil)
	_ keychain.AccessProvider = (*Wrapper)(nil)
	_ keychain.Versioner      = (*Wrapper)(nil)
	_ keychain.Provisioner    = (*Wrapper)(nil)
)

// New configures an in-process local operations plugin with yamlConfiguration (the profile's LOCAL operations
// entry). The configuration must name a `dir` (shared with the plugin that serves probes) — or, for tests that use
// only this Wrapper, a `secret`.
func New(ctx context.Context, yamlConfiguration string) (*Wrapper, error) {
	o := local.NewOperations()
	if _, err := o.Configure(ctx, &configv1.ConfigureRequest{YamlConfiguration: yamlConfiguration}); err != nil {
		return nil, fmt.Errorf("configuring the local keystore wrapper: %w", err)
	}
	if _, err := o.PlatformAccessData("check"); err != nil {
		return nil, err
	}
	return &Wrapper{ops: o}, nil
}

// AccessData implements keychain.AccessProvider: the access data of the Account's tenant instance.
func (w *Wrapper) AccessData(a *cmkv1.Account) (map[string]any, error) {
	tenant := a.Labels[cmkv1.TenantLabel]
	if tenant == "" {
		return nil, fmt.Errorf("account %s/%s has no %s label yet (the mutating webhook stamps it from the namespace)", a.Namespace, a.Name, cmkv1.TenantLabel)
	}
	return w.ops.PlatformAccessData(local.TenantInstanceID(tenant))
}

func params(config *structpb.Struct, keyID string) *operationsv1.RequestParameters {
	return &operationsv1.RequestParameters{Config: &commonv1.KeystoreInstanceConfig{Values: config}, KeyId: keyID}
}

// Wrap implements keychain.Wrapper.
func (w *Wrapper) Wrap(ctx context.Context, config *structpb.Struct, keyID string, plaintext []byte, aad map[string]string) (*keychain.Wrapped, error) {
	ct, err := w.ops.Encrypt(ctx, params(config, keyID), plaintext, EncodeAAD(aad))
	if err != nil {
		return nil, mapErr(err)
	}
	v, err := local.CiphertextVersion(ct)
	if err != nil {
		return nil, err
	}
	return &keychain.Wrapped{Ciphertext: ct, KeyVersion: v}, nil
}

// Unwrap implements keychain.Wrapper.
func (w *Wrapper) Unwrap(ctx context.Context, config *structpb.Struct, keyID string, wr *keychain.Wrapped, aad map[string]string) ([]byte, error) {
	if wr == nil || len(wr.Ciphertext) == 0 {
		return nil, fmt.Errorf("%w: empty wrapped key", keychain.ErrIntegrity)
	}
	pt, err := w.ops.Decrypt(ctx, params(config, keyID), wr.Ciphertext, EncodeAAD(aad))
	if err != nil {
		return nil, mapErr(err)
	}
	return pt, nil
}

// KeyVersion implements keychain.Versioner: the latest version of the key.
func (w *Wrapper) KeyVersion(ctx context.Context, config *structpb.Struct, keyID string) (string, error) {
	r, err := w.ops.GetKeyVersions(ctx, &local.GetKeyVersionsRequest{Parameters: params(config, keyID)})
	if err != nil {
		return "", mapErr(err)
	}
	vs := r.GetVersions()
	if len(vs) == 0 {
		return "", fmt.Errorf("%w: key %q has no versions", keychain.ErrKeyDisabled, keyID)
	}
	return vs[len(vs)-1].GetVersionId(), nil
}

// EnsureKey implements keychain.Provisioner: an AES-256 SYSTEM_MANAGED key named keyID in the tenant's instance.
func (w *Wrapper) EnsureKey(ctx context.Context, config *structpb.Struct, keyID string) (bool, error) {
	_, err := w.ops.GetKey(ctx, &operationsv1.GetKeyRequest{Parameters: params(config, keyID)})
	if err == nil {
		return false, nil
	}
	if status.Code(err) != codes.NotFound {
		return false, mapErr(err)
	}
	id := keyID
	_, err = w.ops.CreateKey(ctx, &operationsv1.CreateKeyRequest{
		Config: &commonv1.KeystoreInstanceConfig{Values: config}, Id: &id,
		Algorithm: operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256, KeyType: operationsv1.KeyType_KEY_TYPE_SYSTEM_MANAGED,
	})
	if status.Code(err) == codes.AlreadyExists { // a concurrent reconcile (or another replica) won
		return false, nil
	}
	if err != nil {
		return false, mapErr(err)
	}
	return true, nil
}

// Rotate adds a new version to the key (a Go API of the local keystore; used by tests and cmkctl).
func (w *Wrapper) Rotate(ctx context.Context, config *structpb.Struct, keyID string) (string, error) {
	v, err := w.ops.RotateKey(ctx, params(config, keyID))
	if err != nil {
		return "", mapErr(err)
	}
	return v, nil
}

// Disable disables the key (tests: a Ready key that stops answering).
func (w *Wrapper) Disable(ctx context.Context, config *structpb.Struct, keyID string) error {
	_, err := w.ops.DisableKey(ctx, &operationsv1.DisableKeyRequest{Parameters: params(config, keyID)})
	return mapErr(err)
}

// EncodeAAD serialises aad deterministically and unambiguously: sorted keys, each key and value length-prefixed.
func EncodeAAD(aad map[string]string) []byte {
	keys := make([]string, 0, len(aad))
	for k := range aad {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var out []byte
	for _, k := range keys {
		out = binary.AppendUvarint(out, uint64(len(k)))
		out = append(out, k...)
		out = binary.AppendUvarint(out, uint64(len(aad[k])))
		out = append(out, aad[k]...)
	}
	return out
}

// mapErr turns the local plugin's gRPC statuses into the keychain errors (the message is kept).
func mapErr(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("%w: %v", keychain.ErrUnavailable, err)
	}
	msg := st.Message()
	var kind error
	switch st.Code() {
	case codes.NotFound:
		kind = keychain.ErrKeyNotFound
	case codes.FailedPrecondition:
		kind = keychain.ErrKeyDisabled
	case codes.InvalidArgument:
		switch {
		case strings.Contains(msg, "authenticate"), strings.Contains(msg, "access data"):
			kind = keychain.ErrDenied
		default:
			kind = keychain.ErrIntegrity
		}
	case codes.PermissionDenied, codes.Unauthenticated:
		kind = keychain.ErrDenied
	case codes.DeadlineExceeded, codes.Canceled:
		return fmt.Errorf("%w: %w", keychain.ErrUnavailable, context.DeadlineExceeded)
	default:
		kind = keychain.ErrUnavailable
	}
	if errors.Is(kind, keychain.ErrIntegrity) {
		return fmt.Errorf("%w (local keystore: %s)", kind, msg)
	}
	return fmt.Errorf("%w: local keystore: %s", kind, msg)
}
