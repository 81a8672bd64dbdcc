package identity

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/apeirora/apeiro-cmk/pkg/tenantid"
)

// DefaultUsernamePrefix prefixes platform users' names so a platform IdP cannot mint "system:" or service account
// names. Tenant issuers' users are always "tenant:<tenant>:<subject>".
const DefaultUsernamePrefix = "platform:"

// maxUsernameClaim bounds the claim a username is built from.
const maxUsernameClaim = 256

// Options configures an Authenticator.
type Options struct {
	// Platform are the platform IdP issuers (Keycloak realms in production); their tokens carry roles for any
	// tenant in the roles claim.
	Platform []IssuerConfig
	// Roles maps workspace roles to groups and permissions. Required.
	Roles *RoleMap
	// SPIFFE, if set, accepts JWT-SVIDs as bearer tokens.
	SPIFFE *SPIFFEVerifier
	// Client fetches discovery documents and JWKS. It must come from netguard.NewClient (timeouts, size limits,
	// no internal addresses). Required.
	Client *http.Client
	// UsernameClaim names platform users (default "sub"); UsernamePrefix prefixes it (default "platform:").
	UsernameClaim  string
	UsernamePrefix string
	// MinRefreshInterval rate-limits JWKS and discovery fetches per issuer (default DefaultMinRefreshInterval).
	MinRefreshInterval time.Duration
	// Leeway is the tolerated clock skew (default DefaultLeeway).
	Leeway time.Duration
	// Now is the clock (tests).
	Now func() time.Time
}

// Principal is an authenticated caller.
type Principal struct {
	Username string
	UID      string
	Groups   []string
	Extra    map[string][]string
	// Issuer and Subject of the token (for a workload: the trust domain and SPIFFE ID).
	Issuer, Subject string
	// Tenant is set for identities bound to one tenant (tenant issuers' users, workloads in the tenant scheme).
	Tenant   string
	Grants   []Grant
	Workload *Workload
}

// Authenticator verifies bearer tokens from the platform IdP, the tenants' IdPs and SPIFFE.
type Authenticator struct {
	o        Options
	platform map[string]*issuer

	mu      sync.RWMutex
	tenants map[string]*issuer // normalized issuer URL → tenant issuer
}

// New validates o and returns an Authenticator. No network call happens here: discovery and JWKS are fetched on
// the first token of each issuer, so the server starts while the IdP is down.
func New(o Options) (*Authenticator, error) {
	if o.Client == nil {
		return nil, errors.New("identity: an HTTP client (netguard.NewClient) is required")
	}
	if o.Roles == nil {
		return nil, errors.New("identity: a role map is required")
	}
	if o.UsernameClaim == "" {
		o.UsernameClaim = "sub"
	}
	if o.UsernamePrefix == "" {
		o.UsernamePrefix = DefaultUsernamePrefix
	}
	if o.MinRefreshInterval <= 0 {
		o.MinRefreshInterval = DefaultMinRefreshInterval
	}
	if o.Leeway <= 0 {
		o.Leeway = DefaultLeeway
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	a := &Authenticator{o: o, platform: map[string]*issuer{}, tenants: map[string]*issuer{}}
	for _, c := range o.Platform {
		if c.Tenant != "" {
			return nil, fmt.Errorf("identity: platform issuer %s must not name a tenant", c.URL)
		}
		is, err := newIssuer(c, o.Client, o.MinRefreshInterval, o.Leeway, o.Now)
		if err != nil {
			return nil, fmt.Errorf("identity: %w", err)
		}
		key := normalizeIssuer(c.URL)
		if _, dup := a.platform[key]; dup {
			return nil, fmt.Errorf("identity: platform issuer %s listed twice", c.URL)
		}
		a.platform[key] = is
	}
	return a, nil
}

// SetTenantIssuers replaces the tenant issuers (from Tenants' spec.oidcProvider). Issuers whose configuration is
// unchanged keep their cached keys. An issuer claimed by two tenants, or equal to a platform issuer, is ambiguous
// and dropped for every claimant; the returned error lists what was dropped, the rest is applied.
func (a *Authenticator) SetTenantIssuers(cfgs []IssuerConfig) error {
	count := map[string]int{}
	for _, c := range cfgs {
		count[normalizeIssuer(c.URL)]++
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	next := map[string]*issuer{}
	var errs []error
	for _, c := range cfgs {
		key := normalizeIssuer(c.URL)
		if err := tenantid.ValidateTenant(c.Tenant); err != nil {
			errs = append(errs, fmt.Errorf("issuer %s: %w", c.URL, err))
			continue
		}
		if _, ok := a.platform[key]; ok {
			errs = append(errs, fmt.Errorf("tenant %s: issuer %s is the platform issuer; ignored", c.Tenant, c.URL))
			continue
		}
		if count[key] > 1 {
			errs = append(errs, fmt.Errorf("tenant %s: issuer %s is used by more than one tenant; ignored for all of them", c.Tenant, c.URL))
			continue
		}
		if old, ok := a.tenants[key]; ok && sameIssuerConfig(old.cfg, c) {
			next[key] = old
			continue
		}
		is, err := newIssuer(c, a.o.Client, a.o.MinRefreshInterval, a.o.Leeway, a.o.Now)
		if err != nil {
			errs = append(errs, fmt.Errorf("tenant %s: %w", c.Tenant, err))
			continue
		}
		next[key] = is
	}
	a.tenants = next
	return errors.Join(errs...)
}

func sameIssuerConfig(a, b IssuerConfig) bool {
	return a.URL == b.URL && a.JWKSURL == b.JWKSURL && a.Tenant == b.Tenant && strings.Join(a.Audiences, "\x00") == strings.Join(b.Audiences, "\x00")
}

// JWKSFetches reports JWKS fetch attempts per issuer URL.
func (a *Authenticator) JWKSFetches() map[string]int64 {
	out := map[string]int64{}
	for k, is := range a.platform {
		out[k] = is.keys.Fetches()
	}
	a.mu.RLock()
	defer a.mu.RUnlock()
	for k, is := range a.tenants {
		out[k] = is.keys.Fetches()
	}
	return out
}

// Rejection is an authentication failure. Reason is coarse and safe to show an unauthenticated caller; Err has
// the detail for logs.
type Rejection struct {
	Reason string
	Err    error
}

func (r *Rejection) Error() string { return r.Reason + ": " + r.Err.Error() }
func (r *Rejection) Unwrap() error { return r.Err }

// Public reasons. They say what a client can act on (send a well-formed token, get a new one, retry later) and
// nothing about which check failed.
const (
	ReasonMalformed = "malformed token"
	ReasonInvalid   = "invalid token"
	// ReasonUnavailable: verifying needs the IdP (a key id not cached yet, or no keys at all) and the IdP did not
	// answer. Retrying later may succeed; getting a new token will not help until the IdP is back.
	ReasonUnavailable = "token cannot be verified at the moment"
)

func reject(reason string, err error) error { return &Rejection{Reason: reason, Err: err} }

// Authenticate verifies a bearer token and returns its principal, or a *Rejection.
func (a *Authenticator) Authenticate(ctx context.Context, token string) (*Principal, error) {
	t, err := parseUnverified(token)
	if err != nil {
		return nil, reject(ReasonMalformed, err)
	}
	var iss, sub string
	if t.claim("iss", &iss) != nil || t.claim("sub", &sub) != nil {
		return nil, reject(ReasonMalformed, fmt.Errorf("%w: iss and sub must be strings", ErrMalformed))
	}
	key := normalizeIssuer(iss)
	if is, ok := a.platform[key]; ok && iss != "" {
		return a.oidcUser(ctx, is, t)
	}
	a.mu.RLock()
	is, ok := a.tenants[key]
	a.mu.RUnlock()
	if ok && iss != "" {
		return a.oidcUser(ctx, is, t)
	}
	if strings.HasPrefix(sub, "spiffe://") && a.o.SPIFFE != nil {
		w, err := a.o.SPIFFE.VerifyJWTSVID(token)
		if err != nil {
			if errors.Is(err, ErrMalformed) {
				return nil, reject(ReasonMalformed, err)
			}
			return nil, reject(ReasonInvalid, err)
		}
		return a.workloadPrincipal(w), nil
	}
	return nil, reject(ReasonInvalid, fmt.Errorf("issuer %q is not trusted", iss))
}

func (a *Authenticator) oidcUser(ctx context.Context, is *issuer, t *rawToken) (*Principal, error) {
	tok, err := is.verify(ctx, t)
	if err != nil {
		switch {
		case errors.Is(err, ErrMalformed):
			return nil, reject(ReasonMalformed, err)
		case errors.Is(err, ErrIssuerUnreachable):
			// The token needs a key only the IdP can provide, and the IdP did not answer: not known to be bad.
			return nil, reject(ReasonUnavailable, err)
		case errors.Is(err, ErrUnknownKey), errors.Is(err, ErrExpired), errors.Is(err, ErrNotYetValid):
			return nil, reject(ReasonInvalid, err)
		}
		return nil, reject(ReasonInvalid, err)
	}
	p := &Principal{Issuer: tok.Issuer, Subject: tok.Subject, Tenant: is.cfg.Tenant, Extra: map[string][]string{}}
	var name string
	claim := a.o.UsernameClaim
	if is.cfg.Tenant != "" {
		claim = "sub"
	}
	if err := t.claim(claim, &name); err != nil || name == "" || len(name) > maxUsernameClaim {
		return nil, reject(ReasonInvalid, fmt.Errorf("claim %q must be a non-empty string of at most %d bytes", claim, maxUsernameClaim))
	}
	if is.cfg.Tenant != "" {
		p.Username = "tenant:" + is.cfg.Tenant + ":" + name
		p.Extra[ExtraTenant] = []string{is.cfg.Tenant}
	} else {
		p.Username = a.o.UsernamePrefix + name
	}
	p.UID = tok.Issuer + "#" + tok.Subject
	var roles []string
	if err := t.claim(a.o.Roles.Claim(), &roles); err != nil {
		// A roles claim of the wrong type is ignored like an absent one: the user is authenticated without roles.
		roles = nil
	}
	p.Grants = a.o.Roles.ParseGrants(roles, is.cfg.Tenant)
	p.Groups = a.o.Roles.Groups(p.Grants)
	if perms := a.o.Roles.TenantPermissions(p.Grants); len(perms) > 0 {
		p.Extra[ExtraPermissions] = perms
	}
	return p, nil
}

// workloadPrincipal names a workload by its SPIFFE ID. A workload in the tenant scheme gets the group
// "<prefix><tenant>:workload"; its key access is decided per key (spec.workloadIdentities), not by groups.
func (a *Authenticator) workloadPrincipal(w *Workload) *Principal {
	p := &Principal{Username: w.ID.String(), UID: w.ID.String(), Issuer: w.ID.TrustDomain().IDString(), Subject: w.ID.String(),
		Tenant: w.Tenant, Workload: w, Extra: map[string][]string{ExtraSPIFFEID: {w.ID.String()}}}
	if w.Tenant != "" {
		p.Groups = []string{a.o.Roles.groupPrefix + w.Tenant + ":workload"}
		p.Extra[ExtraTenant] = []string{w.Tenant}
	}
	return p
}
