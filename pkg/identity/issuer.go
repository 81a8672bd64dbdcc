package identity

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// DefaultLeeway is the clock skew tolerated on exp, nbf and iat. Small on purpose: go-oidc's 5 minutes on nbf and
// none on exp are both replaced by this one value.
const DefaultLeeway = 30 * time.Second

// IssuerConfig is one trusted OIDC issuer.
type IssuerConfig struct {
	// URL is the issuer ("iss") exactly as it appears in tokens; https.
	URL string `json:"url"`
	// JWKSURL skips discovery when set (Tenant spec.oidcProvider carries it); otherwise the JWKS URL comes from
	// <URL>/.well-known/openid-configuration, discovered lazily on the first token and retried at most once per
	// MinRefreshInterval while the IdP is unreachable.
	JWKSURL string `json:"jwksURL,omitempty"`
	// Audiences: a token must name at least one of them in "aud". Required.
	Audiences []string `json:"audiences"`
	// Tenant, when set, scopes every identity of this issuer to that tenant: its users get roles in that tenant
	// only, and their usernames are prefixed so they cannot collide with platform or system users.
	Tenant string `json:"tenant,omitempty"`
}

// issuer verifies tokens of one IssuerConfig.
type issuer struct {
	cfg    IssuerConfig
	client *http.Client
	keys   *keySet
	leeway time.Duration
	now    func() time.Time

	mu            sync.Mutex
	jwksURL       string
	lastDiscovery time.Time
	discoveryErr  error
	minRefresh    time.Duration
}

func newIssuer(cfg IssuerConfig, client *http.Client, minRefresh, leeway time.Duration, now func() time.Time) (*issuer, error) {
	if cfg.URL == "" {
		return nil, errors.New("issuer URL is required")
	}
	if len(cfg.Audiences) == 0 {
		return nil, fmt.Errorf("issuer %s: at least one audience is required (tokens for other services must not be accepted)", cfg.URL)
	}
	is := &issuer{cfg: cfg, client: client, leeway: leeway, now: now, jwksURL: cfg.JWKSURL, minRefresh: minRefresh}
	is.keys = newKeySet(is.resolveJWKS, client, minRefresh, now)
	return is, nil
}

// resolveJWKS returns the JWKS URL, running discovery when needed (rate-limited like JWKS fetches).
func (is *issuer) resolveJWKS(ctx context.Context) (string, error) {
	is.mu.Lock()
	defer is.mu.Unlock()
	if is.jwksURL != "" {
		return is.jwksURL, nil
	}
	if !is.lastDiscovery.IsZero() && is.now().Sub(is.lastDiscovery) < is.minRefresh {
		return "", fmt.Errorf("discovery for %s failed recently: %w", is.cfg.URL, is.discoveryErr)
	}
	is.lastDiscovery = is.now()
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, is.client), is.cfg.URL)
	if err != nil {
		is.discoveryErr = err
		return "", fmt.Errorf("discovery for %s: %w", is.cfg.URL, err)
	}
	var meta struct {
		JWKSURI string `json:"jwks_uri"`
	}
	if err := p.Claims(&meta); err != nil || meta.JWKSURI == "" {
		is.discoveryErr = errors.New("discovery document has no jwks_uri")
		return "", is.discoveryErr
	}
	is.jwksURL = meta.JWKSURI
	return is.jwksURL, nil
}

// verifiedToken is what a verified OIDC token contributes besides its claims.
type verifiedToken struct {
	Issuer, Subject string
	Audience        []string
}

// verify checks signature, issuer, audience and time of a token already shape-checked by parseUnverified (which
// enforced the algorithm allowlist and the single compact signature). These are the checks go-oidc's verifier
// made (signature with the issuer's keys, "iss" byte for byte) plus ours (audience allowlist, exp required, one
// leeway); go-oidc is still used for discovery, but verification runs on the already-parsed token so it is parsed
// and its claims decoded once.
func (is *issuer) verify(ctx context.Context, t *rawToken) (*verifiedToken, error) {
	if err := is.keys.verify(ctx, t); err != nil {
		return nil, err
	}
	tok := &verifiedToken{}
	var aud audience
	if t.claim("iss", &tok.Issuer) != nil || t.claim("sub", &tok.Subject) != nil || t.claim("aud", &aud) != nil {
		return nil, errors.New("iss, sub and aud must be strings (aud: or a list of strings)")
	}
	if tok.Issuer != is.cfg.URL {
		return nil, fmt.Errorf("issuer %q does not match %q", tok.Issuer, is.cfg.URL)
	}
	tok.Audience = aud
	if !slices.ContainsFunc(tok.Audience, func(a string) bool { return slices.Contains(is.cfg.Audiences, a) }) {
		return nil, fmt.Errorf("audience %q is not accepted", tok.Audience)
	}
	if err := checkTimes(t, is.now(), is.leeway); err != nil {
		return nil, err
	}
	return tok, nil
}

// ErrExpired / ErrNotYetValid distinguish time failures in logs and tests.
var (
	ErrExpired     = errors.New("token expired")
	ErrNotYetValid = errors.New("token not yet valid")
)

// checkTimes requires exp and applies leeway to exp, nbf and iat.
func checkTimes(t *rawToken, now time.Time, leeway time.Duration) error {
	var exp, nbf, iat *float64
	if t.claim("exp", &exp) != nil || t.claim("nbf", &nbf) != nil || t.claim("iat", &iat) != nil {
		// Checked after the signature: a validly signed token with odd claims is invalid, not malformed.
		return errors.New("time claims must be numbers")
	}
	if exp == nil {
		return fmt.Errorf("%w: exp is required", ErrMalformed)
	}
	if now.After(unix(*exp).Add(leeway)) {
		return ErrExpired
	}
	if nbf != nil && now.Add(leeway).Before(unix(*nbf)) {
		return ErrNotYetValid
	}
	if iat != nil && now.Add(leeway).Before(unix(*iat)) {
		return fmt.Errorf("%w: issued in the future", ErrNotYetValid)
	}
	return nil
}

func unix(f float64) time.Time {
	sec := int64(f)
	return time.Unix(sec, int64((f-float64(sec))*1e9))
}

// normalizeIssuer is the lookup key of an issuer: tokens must carry iss byte for byte, but a trailing slash in the
// configuration should not make the lookup miss.
func normalizeIssuer(s string) string { return strings.TrimSuffix(s, "/") }
