package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// DefaultMinRefreshInterval is the shortest time between two JWKS fetches of one issuer. go-oidc's RemoteKeySet
// refetches on every unknown kid, so a flood of tokens with random kids would become a flood of fetches against
// the IdP; comparable libraries rate-limit to 30 s - 1 min.
const DefaultMinRefreshInterval = 30 * time.Second

// maxJWKSKeys bounds how many keys one JWKS may publish (Keycloak publishes a handful).
const maxJWKSKeys = 100

// ErrUnknownKey: the token names a key the issuer does not publish (after at most one allowed refetch).
var ErrUnknownKey = errors.New("unknown signing key")

// ErrIssuerUnreachable: the token needs a key the cache does not hold and the issuer's discovery or JWKS could not
// be fetched or used (now, or at the last attempt within the refetch interval): no answer, an HTTP error, a
// document without usable keys. The token is neither known good nor known bad: a rotated-in key and a made-up kid
// look the same until the IdP answers, so the caller is told to retry later rather than that its token is invalid.
var ErrIssuerUnreachable = errors.New("issuer unreachable")

// keySet caches the keys of one issuer's JWKS URL, with a refetch rate limit. Keys are fetched lazily on first
// use, kept after a failed refetch (an IdP outage does not stop verification with cached keys), and refetched at
// most once per minRefresh when a token names an unknown kid. Concurrent refetches are coalesced.
type keySet struct {
	// jwksURL returns the JWKS URL; for discovered issuers it runs (lazy, rate-limited) discovery.
	jwksURL    func(ctx context.Context) (string, error)
	client     *http.Client
	minRefresh time.Duration
	now        func() time.Time

	mu        sync.Mutex
	keys      []jose.JSONWebKey
	lastFetch time.Time     // time of the last fetch attempt, successful or not
	inflight  chan struct{} // closed when the running fetch ends
	fetchErr  error

	fetches atomic.Int64
}

func newKeySet(jwksURL func(context.Context) (string, error), client *http.Client, minRefresh time.Duration, now func() time.Time) *keySet {
	return &keySet{jwksURL: jwksURL, client: client, minRefresh: minRefresh, now: now}
}

// Fetches is how many JWKS fetches were attempted (metrics, tests, benchmarks).
func (k *keySet) Fetches() int64 { return k.fetches.Load() }

// verify checks the signature of a shape-checked token with the issuer's cached keys, refetching the JWKS (rate
// limited) only when the token names a kid the cache does not hold. The signature is checked directly over the
// token's signing input with the selected key (verifyJWS); the token is not parsed again.
func (k *keySet) verify(ctx context.Context, t *rawToken) error {
	keys := k.cached()
	if !hasKey(keys, t.kid, t.alg) {
		var err error
		keys, err = k.refresh(ctx)
		if !hasKey(keys, t.kid, t.alg) {
			if err != nil {
				// err wraps ErrIssuerUnreachable (a failed fetch, or the caller's budget ended during one).
				return fmt.Errorf("signing key not cached, refetch failed: %w", err)
			}
			return ErrUnknownKey
		}
	}
	for _, key := range keys {
		if !keyMatches(key, t.kid, t.alg) {
			continue
		}
		if verifyJWS(key.Key, t.alg, t.signingInput, t.sig) == nil {
			return nil
		}
	}
	// A known kid with a bad signature is a forgery, not a rotation: no refetch (it would be free to trigger).
	return errors.New("signature does not verify")
}

func (k *keySet) cached() []jose.JSONWebKey {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.keys
}

func hasKey(keys []jose.JSONWebKey, kid, alg string) bool {
	for _, key := range keys {
		if keyMatches(key, kid, alg) {
			return true
		}
	}
	return false
}

// keyMatches: a token without kid may use any key; a key that states its alg must agree with the token's.
func keyMatches(key jose.JSONWebKey, kid, alg string) bool {
	if kid != "" && key.KeyID != kid {
		return false
	}
	if key.Use != "" && key.Use != "sig" {
		return false
	}
	return key.Algorithm == "" || key.Algorithm == alg
}

// refresh refetches the JWKS unless the last attempt is younger than minRefresh, in which case the cached keys and
// that attempt's error are returned unchanged. Callers arriving during a fetch wait for it. Every caller, the one
// that started the fetch included, waits at most until its own context ends: a hanging IdP (accepts connections,
// never answers) must not hold a TokenReview past its budget, which is shorter than the HTTP client's timeout.
func (k *keySet) refresh(ctx context.Context) ([]jose.JSONWebKey, error) {
	k.mu.Lock()
	ch := k.inflight
	if ch == nil {
		if !k.lastFetch.IsZero() && k.now().Sub(k.lastFetch) < k.minRefresh {
			keys, err := k.keys, k.fetchErr
			k.mu.Unlock()
			return keys, err
		}
		ch = make(chan struct{})
		k.inflight = ch
		k.lastFetch = k.now()
		// Detached from the caller's cancellation (later callers may be waiting on this fetch, and its result is
		// worth keeping), bounded by the client's own timeout.
		go k.runFetch(context.WithoutCancel(ctx), ch)
	}
	k.mu.Unlock()
	select {
	case <-ch:
	case <-ctx.Done():
		return k.cached(), fmt.Errorf("%w: JWKS refetch still running when the caller's budget ended: %w", ErrIssuerUnreachable, ctx.Err())
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.keys, k.fetchErr
}

// runFetch performs one coalesced fetch and publishes its result; ch is closed when it is in place.
func (k *keySet) runFetch(ctx context.Context, ch chan struct{}) {
	keys, err := k.fetch(ctx)
	k.mu.Lock()
	defer k.mu.Unlock()
	k.inflight = nil
	close(ch)
	if err != nil {
		// Keep the keys we had: an IdP outage must not stop verification with them.
		k.fetchErr = fmt.Errorf("%w: %w", ErrIssuerUnreachable, err)
		return
	}
	k.keys, k.fetchErr = keys, nil
}

func (k *keySet) fetch(ctx context.Context) ([]jose.JSONWebKey, error) {
	k.fetches.Add(1)
	u, err := k.jwksURL(ctx)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("JWKS request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching JWKS: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("reading JWKS: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching JWKS: HTTP %d", resp.StatusCode)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("decoding JWKS: %w", err)
	}
	if len(set.Keys) > maxJWKSKeys {
		return nil, fmt.Errorf("JWKS publishes %d keys, more than %d", len(set.Keys), maxJWKSKeys)
	}
	keys := make([]jose.JSONWebKey, 0, len(set.Keys))
	for _, key := range set.Keys {
		// Only public asymmetric keys: a symmetric key in a JWKS would let HMAC in through the back door.
		if !key.Valid() || !key.IsPublic() {
			continue
		}
		keys = append(keys, key)
	}
	if len(keys) == 0 {
		return nil, errors.New("JWKS has no usable public signing keys")
	}
	return keys, nil
}
