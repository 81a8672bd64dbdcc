package keychain

import (
	"context"
	"fmt"

	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
)

// Prober proves an Account's L1 key exists and answers (the Account Ready rule). The admission webhook asks it on
// Account create within a short budget; the Account reconciler asks it periodically. Production: the keystore
// operations plugin of the Account's keystore (GetKey), deduplicated and cached (pkg/admission/pluginbacked).
// Implementations must honour ctx's deadline.
type Prober interface {
	// ProbeKey returns nil when the key answered (it exists and is enabled), an error wrapping ErrKeyNotFound when
	// the keystore says it does not exist, an error wrapping ErrKeyDisabled (a *KeyStateError) when it exists but is
	// not enabled, an error wrapping ErrTenantBinding when the keystore refuses the Account's role or key for its tenant
	// (a deterministic answer about the Account, not an outage), and any other error when the keystore could not be
	// asked (unreachable, unauthenticated, timeout).
	ProbeKey(ctx context.Context, acct *cmkv1.Account) error
}

// ErrTenantBinding: the keystore refused the Account's credentials or key because they are not bound to the
// Account's tenant (another tenant's role, a key outside the role's account). It wraps ErrDenied.
var ErrTenantBinding = fmt.Errorf("%w: not bound to the Account's tenant", ErrDenied)

// KeyStateError is a probe's answer for a key that exists but is not enabled (disabled, pending deletion, pending
// import, or a state the keystore did not name): it does not answer, so the Account is not Ready. It wraps
// ErrKeyDisabled. State is the keystore's state name (upper case, e.g. DISABLED), "UNKNOWN" for a state that does
// not look like one, or "" when the keystore reported none; it is safe to show to the Account's writer.
type KeyStateError struct{ State string }

func (e *KeyStateError) Error() string {
	if e.State == "" {
		return ErrKeyDisabled.Error() + ": the keystore reported no key state"
	}
	return ErrKeyDisabled.Error() + ": the keystore reports it " + e.State
}

// Unwrap makes errors.Is(err, ErrKeyDisabled) hold.
func (e *KeyStateError) Unwrap() error { return ErrKeyDisabled }

// ProberFunc adapts a function to Prober.
type ProberFunc func(ctx context.Context, acct *cmkv1.Account) error

// ProbeKey implements Prober.
func (f ProberFunc) ProbeKey(ctx context.Context, a *cmkv1.Account) error { return f(ctx, a) }

type dryRunKey struct{}

// WithDryRun marks ctx as serving a dry-run request: implementations answer as usual but remember nothing (no
// cache writes), so `kubectl apply --dry-run=server` leaves no trace.
func WithDryRun(ctx context.Context) context.Context {
	return context.WithValue(ctx, dryRunKey{}, true)
}

// IsDryRun reports whether ctx was marked with WithDryRun.
func IsDryRun(ctx context.Context) bool { v, _ := ctx.Value(dryRunKey{}).(bool); return v }
