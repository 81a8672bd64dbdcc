package identity

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

const testAud = "cmk"

type fixture struct {
	idp   *fakeIdP
	key   signingKey
	ec    signingKey
	auth  *Authenticator
	iss   string
	clock *fakeClock
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newFixture(t testing.TB) *fixture {
	key := newRSAKey(t, "k1")
	ec := newECKey(t, "k2")
	idp := newFakeIdP(t, key.public(), ec.public())
	roles, err := NewRoleMap(RoleConfig{})
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{t: time.Now()}
	a, err := New(Options{Platform: []IssuerConfig{{URL: idp.srv.URL, Audiences: []string{testAud}}}, Roles: roles,
		Client: idp.client(), Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{idp: idp, key: key, ec: ec, auth: a, iss: idp.srv.URL, clock: clock}
}

func (f *fixture) claims() map[string]any {
	c := claimsFor(f.iss, []string{testAud}, "alice", f.clock.Now(), 5*time.Minute)
	c["groups"] = []string{"acme:Admin", "/globex/Viewer", "/tenants/initech/Member", "acme:NoSuchRole", "not-a-role"}
	return c
}

func TestAuthenticateValid(t *testing.T) {
	f := newFixture(t)
	for _, k := range []signingKey{f.key, f.ec} {
		p, err := f.auth.Authenticate(context.Background(), k.sign(t, f.claims()))
		if err != nil {
			t.Fatalf("%s: %v", k.alg, err)
		}
		if p.Username != "platform:alice" || p.Tenant != "" {
			t.Fatalf("principal %+v", p)
		}
		wantGroups := []string{"apeiro-cmk:tenant:acme:admin", "apeiro-cmk:tenant:globex:viewer", "apeiro-cmk:tenant:initech:member"}
		if !slices.Equal(p.Groups, wantGroups) {
			t.Fatalf("groups = %v, want %v", p.Groups, wantGroups)
		}
		perms := p.Extra[ExtraPermissions]
		if !slices.Contains(perms, "acme:admin") || !slices.Contains(perms, "globex:keys.read") || slices.Contains(perms, "globex:keys.write") {
			t.Fatalf("permissions = %v", perms)
		}
	}
	// One discovery, one JWKS fetch for everything above.
	if d, j := f.idp.discoHits.Load(), f.idp.jwksHits.Load(); d != 1 || j != 1 {
		t.Fatalf("discovery %d, JWKS %d fetches; want 1 and 1", d, j)
	}
}

func TestAuthenticateRejects(t *testing.T) {
	f := newFixture(t)
	other := newRSAKey(t, "k1") // same kid, different key: a forgery
	stranger := newRSAKey(t, "k-unknown")
	now := f.clock.Now()
	pubDER := pkixPEMBytes(t, f.key.priv.Public())
	enc := base64.RawURLEncoding
	good := f.key.sign(t, f.claims())
	parts := strings.Split(good, ".")

	with := func(mod func(map[string]any)) map[string]any { c := f.claims(); mod(c); return c }
	cases := []struct {
		name, token, reason string
	}{
		{"empty", "", ReasonMalformed},
		{"garbage", "not a token", ReasonMalformed},
		{"garbage base64", "e30.!!!.abc", ReasonMalformed},
		{"padded base64", parts[0] + "==." + parts[1] + "." + parts[2], ReasonMalformed},
		{"oversized", strings.Repeat("a", MaxTokenBytes+1), ReasonMalformed},
		{"two parts", parts[0] + "." + parts[1], ReasonMalformed},
		{"JWE-like five parts", good + ".a.b", ReasonMalformed},
		{"alg none", handMade(`{"alg":"none","kid":"k1"}`, `{"iss":"`+f.iss+`","aud":"cmk","sub":"x","exp":`+fmt.Sprint(now.Add(time.Hour).Unix())+`}`, nil), ReasonMalformed},
		{"HS256 with the public key as secret", handMade(`{"alg":"HS256","kid":"k1"}`, `{"iss":"`+f.iss+`","aud":"cmk","sub":"x","exp":`+fmt.Sprint(now.Add(time.Hour).Unix())+`}`, pubDER), ReasonMalformed},
		{"duplicate claim", f.key.signRaw(t, []byte(`{"iss":"`+f.iss+`","aud":"cmk","sub":"alice","sub":"admin","exp":`+fmt.Sprint(now.Add(time.Hour).Unix())+`}`), nil), ReasonMalformed},
		{"duplicate header", handMade(`{"alg":"RS256","alg":"none"}`, `{}`, []byte("x")), ReasonMalformed},
		{"unknown critical header", f.key.signRaw(t, []byte(`{"iss":"`+f.iss+`","aud":"cmk","sub":"a","exp":`+fmt.Sprint(now.Add(time.Hour).Unix())+`}`), map[jose.HeaderKey]any{"crit": []string{"x-magic"}, "x-magic": true}), ReasonMalformed},
		{"claims not an object", parts[0] + "." + enc.EncodeToString([]byte(`[1,2]`)) + "." + parts[2], ReasonMalformed},
		{"trailing data in claims", parts[0] + "." + enc.EncodeToString([]byte(`{"a":1}x`)) + "." + parts[2], ReasonMalformed},
		{"forged signature (known kid)", other.sign(t, f.claims()), ReasonInvalid},
		{"tampered payload", parts[0] + "." + enc.EncodeToString([]byte(`{"iss":"`+f.iss+`","aud":"cmk","sub":"root","exp":9999999999}`)) + "." + parts[2], ReasonInvalid},
		{"unknown kid", stranger.sign(t, f.claims()), ReasonInvalid},
		{"expired", f.key.sign(t, with(func(c map[string]any) { c["exp"] = now.Add(-time.Minute).Unix() })), ReasonInvalid},
		{"not yet valid", f.key.sign(t, with(func(c map[string]any) { c["nbf"] = now.Add(time.Minute).Unix() })), ReasonInvalid},
		{"issued in the future", f.key.sign(t, with(func(c map[string]any) { c["iat"] = now.Add(time.Hour).Unix() })), ReasonInvalid},
		{"no exp", f.key.sign(t, with(func(c map[string]any) { delete(c, "exp") })), ReasonMalformed},
		{"exp as string", f.key.sign(t, with(func(c map[string]any) { c["exp"] = "tomorrow" })), ReasonInvalid},
		{"wrong audience", f.key.sign(t, with(func(c map[string]any) { c["aud"] = "someone-else" })), ReasonInvalid},
		{"no audience", f.key.sign(t, with(func(c map[string]any) { delete(c, "aud") })), ReasonInvalid},
		{"untrusted issuer", f.key.sign(t, with(func(c map[string]any) { c["iss"] = "https://evil.example" })), ReasonInvalid},
		{"issuer with trailing slash variant", f.key.sign(t, with(func(c map[string]any) { c["iss"] = f.iss + "/" })), ReasonInvalid},
		{"iss not a string", f.key.sign(t, with(func(c map[string]any) { c["iss"] = 42 })), ReasonMalformed},
		{"empty subject", f.key.sign(t, with(func(c map[string]any) { c["sub"] = "" })), ReasonInvalid},
		{"SPIFFE subject without SPIFFE configured", f.key.sign(t, with(func(c map[string]any) { c["iss"] = ""; c["sub"] = "spiffe://e2e.test/tenant/acme/x" })), ReasonInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := f.auth.Authenticate(context.Background(), tc.token)
			if err == nil {
				t.Fatalf("accepted: %+v", p)
			}
			var rj *Rejection
			if !errors.As(err, &rj) {
				t.Fatalf("error %v is not a Rejection", err)
			}
			if rj.Reason != tc.reason {
				t.Fatalf("reason %q (%v), want %q", rj.Reason, err, tc.reason)
			}
		})
	}
}

// TestUnknownKidFloodIsBounded: thousands of tokens with fresh kids cost at most one JWKS fetch per
// MinRefreshInterval, and valid tokens keep verifying meanwhile.
func TestUnknownKidFloodIsBounded(t *testing.T) {
	f := newFixture(t)
	if _, err := f.auth.Authenticate(context.Background(), f.key.sign(t, f.claims())); err != nil {
		t.Fatal(err)
	}
	attacker := newRSAKey(t, "x")
	claims := f.claims()
	var tokens []string
	for i := range 200 {
		attacker.kid = fmt.Sprintf("random-%d", i)
		tokens = append(tokens, attacker.sign(t, claims))
	}
	var wg sync.WaitGroup
	for _, tok := range tokens {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := f.auth.Authenticate(context.Background(), tok); err == nil {
				t.Error("unknown kid accepted")
			}
		}()
	}
	wg.Wait()
	if n := f.idp.jwksHits.Load(); n > 2 {
		t.Fatalf("%d JWKS fetches for a flood of 200 unknown kids within one interval; want at most 2", n)
	}
	// After the interval one more fetch is allowed.
	f.clock.Add(DefaultMinRefreshInterval + time.Second)
	before := f.idp.jwksHits.Load()
	for _, tok := range tokens[:50] {
		_, _ = f.auth.Authenticate(context.Background(), tok)
	}
	if n := f.idp.jwksHits.Load() - before; n != 1 {
		t.Fatalf("%d fetches after the interval, want 1", n)
	}
	if _, err := f.auth.Authenticate(context.Background(), f.key.sign(t, f.claims())); err != nil {
		t.Fatalf("valid token during the flood: %v", err)
	}
}

// TestRotationPickedUp: a new key is fetched on its first token (after the interval), old cached keys stay valid
// while the IdP is down.
func TestIdPDownCachedKeysVerify(t *testing.T) {
	f := newFixture(t)
	if _, err := f.auth.Authenticate(context.Background(), f.key.sign(t, f.claims())); err != nil {
		t.Fatal(err)
	}
	f.idp.down.Store(true)
	f.clock.Add(time.Hour)
	if _, err := f.auth.Authenticate(context.Background(), f.key.sign(t, f.claims())); err != nil {
		t.Fatalf("cached key with the IdP down: %v", err)
	}
	// An unknown kid now triggers a (failing) refetch. Until the IdP answers, a rotated-in key and a made-up kid look
	// the same: the token is refused as "cannot be verified at the moment", not as invalid.
	_, err := f.auth.Authenticate(context.Background(), newRSAKey(t, "new").sign(t, f.claims()))
	var rj *Rejection
	if !errors.As(err, &rj) || rj.Reason != ReasonUnavailable || !errors.Is(err, ErrIssuerUnreachable) {
		t.Fatalf("unknown kid with IdP down: %v, want reason %q", err, ReasonUnavailable)
	}
	// Within the interval the failed attempt's answer stands, without another request to the IdP.
	hits := f.idp.jwksHits.Load() + f.idp.discoHits.Load()
	_, err = f.auth.Authenticate(context.Background(), newRSAKey(t, "new2").sign(t, f.claims()))
	if !errors.As(err, &rj) || rj.Reason != ReasonUnavailable {
		t.Fatalf("unknown kid within the interval after a failed refetch: %v, want reason %q", err, ReasonUnavailable)
	}
	if f.idp.jwksHits.Load()+f.idp.discoHits.Load() != hits {
		t.Fatal("the IdP was asked again within the refetch interval")
	}
	// Forged (known kid, wrong key) and expired tokens keep their own reason during the outage.
	forged := newRSAKey(t, "k1")
	for name, tok := range map[string]string{
		"forged":  forged.sign(t, f.claims()),
		"expired": f.key.sign(t, claimsFor(f.iss, []string{testAud}, "alice", f.clock.Now().Add(-time.Hour), time.Minute)),
	} {
		if _, err := f.auth.Authenticate(context.Background(), tok); !errors.As(err, &rj) || rj.Reason != ReasonInvalid {
			t.Fatalf("%s token with the IdP down: %v, want reason %q", name, err, ReasonInvalid)
		}
	}
	// Rotation: the IdP comes back with a new key; its first token fetches it.
	f.idp.down.Store(false)
	rotated := newECKey(t, "k3")
	f.idp.mu.Lock()
	f.idp.keys = append(f.idp.keys, rotated.public())
	f.idp.mu.Unlock()
	f.clock.Add(time.Minute)
	if _, err := f.auth.Authenticate(context.Background(), rotated.sign(t, f.claims())); err != nil {
		t.Fatalf("rotated-in key: %v", err)
	}
}

// TestIdPHangs: an IdP that accepts connections and never answers holds a review no longer than the caller's budget
// (shorter than the HTTP client's timeout); the fetch goes on in the background and its result serves later tokens.
func TestIdPHangs(t *testing.T) {
	f := newFixture(t)
	if _, err := f.auth.Authenticate(context.Background(), f.key.sign(t, f.claims())); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	f.idp.hang.Store(&release)
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	f.clock.Add(time.Hour)
	rotated := newECKey(t, "k3")
	f.idp.mu.Lock()
	f.idp.keys = append(f.idp.keys, rotated.public())
	f.idp.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := f.auth.Authenticate(ctx, rotated.sign(t, f.claims()))
	var rj *Rejection
	if !errors.As(err, &rj) || rj.Reason != ReasonUnavailable {
		t.Fatalf("new kid with the IdP hanging: %v, want reason %q", err, ReasonUnavailable)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("refused after %v: the caller's 200 ms budget was not honoured", d)
	}
	// A second caller joins the hanging fetch (no new request to the IdP) and also leaves at its own deadline.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	start = time.Now()
	if _, err := f.auth.Authenticate(ctx2, newRSAKey(t, "k4").sign(t, f.claims())); !errors.As(err, &rj) || rj.Reason != ReasonUnavailable {
		t.Fatalf("second caller during the hanging refetch: %v, want reason %q", err, ReasonUnavailable)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("second caller refused after %v: its 100 ms budget was not honoured", d)
	}
	// Cached keys do not wait for the hanging fetch.
	if _, err := f.auth.Authenticate(context.Background(), f.key.sign(t, f.claims())); err != nil {
		t.Fatalf("cached key while the refetch hangs: %v", err)
	}
	// The IdP answers: the background fetch completes and the new key verifies without a further fetch.
	close(release)
	f.idp.hang.Store(nil)
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := f.auth.Authenticate(context.Background(), rotated.sign(t, f.claims()))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rotated key after the IdP answered: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := f.auth.JWKSFetches()[normalizeIssuer(f.iss)]; n != 2 {
		t.Fatalf("%d JWKS fetches, want 2 (the first, and the one that hung)", n)
	}
}

func TestIdPDownFromStart(t *testing.T) {
	f := newFixture(t)
	f.idp.down.Store(true)
	_, err := f.auth.Authenticate(context.Background(), f.key.sign(t, f.claims()))
	var rj *Rejection
	if !errors.As(err, &rj) || rj.Reason != ReasonUnavailable {
		t.Fatalf("IdP down before any key was fetched: %v, want reason %q", err, ReasonUnavailable)
	}
	// Discovery is retried only after the interval, so an outage is not hammered.
	for range 20 {
		_, _ = f.auth.Authenticate(context.Background(), f.key.sign(t, f.claims()))
	}
	f.idp.down.Store(false)
	f.clock.Add(DefaultMinRefreshInterval + time.Second)
	if _, err := f.auth.Authenticate(context.Background(), f.key.sign(t, f.claims())); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
}

func TestTenantIssuers(t *testing.T) {
	f := newFixture(t)
	tkey := newRSAKey(t, "t1")
	tidp := newFakeIdP(t, tkey.public())
	// The tenant IdP sits on the same loopback test CA setup but has its own client config; reuse f's client
	// by giving the authenticator a client trusting both servers' certificates (httptest shares one CA).
	if err := f.auth.SetTenantIssuers([]IssuerConfig{{URL: tidp.srv.URL, JWKSURL: tidp.srv.URL + "/jwks", Audiences: []string{testAud}, Tenant: "acme"}}); err != nil {
		t.Fatal(err)
	}
	c := claimsFor(tidp.srv.URL, testAud, "bob", f.clock.Now(), time.Minute)
	c["groups"] = []string{"Admin", "globex:Admin", "/Viewer"}
	p, err := f.auth.Authenticate(context.Background(), tkey.sign(t, c))
	if err != nil {
		t.Fatal(err)
	}
	if p.Username != "tenant:acme:bob" || p.Tenant != "acme" {
		t.Fatalf("principal %+v", p)
	}
	for _, g := range p.Groups {
		if !strings.HasPrefix(g, "apeiro-cmk:tenant:acme:") {
			t.Fatalf("tenant IdP granted %q outside its tenant", g)
		}
	}
	if tidp.discoHits.Load() != 0 {
		t.Fatal("a tenant issuer with jwks_uri must not run discovery")
	}
	// A platform key cannot sign for the tenant issuer.
	c["iss"] = tidp.srv.URL
	if _, err := f.auth.Authenticate(context.Background(), f.key.sign(t, c)); err == nil {
		t.Fatal("token for the tenant issuer signed by the platform key accepted")
	}
	// Ambiguous issuers are dropped for everyone.
	err = f.auth.SetTenantIssuers([]IssuerConfig{
		{URL: tidp.srv.URL, JWKSURL: tidp.srv.URL + "/jwks", Audiences: []string{testAud}, Tenant: "acme"},
		{URL: tidp.srv.URL, JWKSURL: tidp.srv.URL + "/jwks", Audiences: []string{testAud}, Tenant: "globex"},
		{URL: f.iss, Audiences: []string{testAud}, Tenant: "initech"},
	})
	if err == nil || !strings.Contains(err.Error(), "more than one tenant") || !strings.Contains(err.Error(), "platform issuer") {
		t.Fatalf("SetTenantIssuers: %v", err)
	}
	if _, err := f.auth.Authenticate(context.Background(), tkey.sign(t, c)); err == nil {
		t.Fatal("token of an ambiguous issuer accepted")
	}
}

func TestRoleMapConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    RoleConfig
		want string
	}{
		{"unknown permission", RoleConfig{Roles: map[string][]string{"Viewer": {"keys.steal"}}}, "unknown permission"},
		{"bad role name", RoleConfig{Roles: map[string][]string{"a:b": nil}}, "invalid role name"},
		{"case duplicate", RoleConfig{Roles: map[string][]string{"Admin": nil, "admin": nil}}, "twice"},
		{"system prefix", RoleConfig{GroupPrefix: "system:masters"}, "reserved"},
	} {
		if _, err := NewRoleMap(tc.c); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}
