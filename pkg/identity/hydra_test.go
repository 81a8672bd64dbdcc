package identity

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/apeirora/apeiro-cmk/internal/controlplane"
	"github.com/apeirora/apeiro-cmk/internal/testpeers"
	"github.com/apeirora/apeiro-cmk/pkg/netguard"
)

// hydra is a running Ory Hydra (the real OIDC provider built by hack/peers/build-hydra.sh), serving TLS on
// loopback with a throw-away CA, all state in memory.
type hydra struct {
	proc          *controlplane.Process
	issuer, admin string
	pool          *x509.CertPool
	http          *http.Client // test-side client (trusts the CA) for the login/consent dance and token requests
}

func startHydra(t testing.TB) *hydra {
	t.Helper()
	dir := testpeers.Env(t, "HYDRA_BIN", "run `make hydra-bin` (bash hack/peers/build-hydra.sh) and export HYDRA_BIN")
	work := t.TempDir()
	ca, err := controlplane.NewCA("hydra-test-ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := ca.IssueServing("127.0.0.1", []net.IP{net.ParseIP("127.0.0.1")}, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(work, "tls.crt"), filepath.Join(work, "tls.key")
	if err := kp.WriteFiles(certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	ports, err := controlplane.FreePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	h := &hydra{issuer: fmt.Sprintf("https://127.0.0.1:%d/", ports[0]), admin: fmt.Sprintf("https://127.0.0.1:%d", ports[1]), pool: x509.NewCertPool()}
	h.pool.AddCert(ca.Cert)
	env := []string{
		"DSN=memory", "URLS_SELF_ISSUER=" + h.issuer, "STRATEGIES_ACCESS_TOKEN=jwt",
		"SECRETS_SYSTEM=" + controlplane.RandomToken() + controlplane.RandomToken(),
		"SERVE_PUBLIC_HOST=127.0.0.1", fmt.Sprintf("SERVE_PUBLIC_PORT=%d", ports[0]),
		"SERVE_ADMIN_HOST=127.0.0.1", fmt.Sprintf("SERVE_ADMIN_PORT=%d", ports[1]),
		"SERVE_TLS_ENABLED=true", "SERVE_TLS_CERT_PATH=" + certFile, "SERVE_TLS_KEY_PATH=" + keyFile,
		// The login and consent "apps" are played by the test through the admin API; these URLs are never fetched.
		"URLS_LOGIN=https://127.0.0.1:1/login", "URLS_CONSENT=https://127.0.0.1:1/consent",
		"TTL_ACCESS_TOKEN=1h", "TTL_ID_TOKEN=1h", "LOG_LEVEL=warn",
	}
	proc, err := controlplane.StartProcess("hydra", filepath.Join(dir, "hydra"), []string{"serve", "all", "--dev"}, filepath.Join(work, "hydra.log"), env...)
	if err != nil {
		t.Fatal(err)
	}
	h.proc = proc
	t.Cleanup(func() { _ = proc.Stop(5 * time.Second) })
	jar, _ := cookiejar.New(nil)
	h.http = &http.Client{Timeout: 30 * time.Second, Jar: jar,
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: h.pool, MinVersion: tls.VersionTLS12}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	deadline := time.Now().Add(90 * time.Second)
	for {
		resp, err := h.http.Get(h.issuer + ".well-known/openid-configuration")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if exited, _ := proc.Exited(); exited || time.Now().After(deadline) {
			t.Fatalf("hydra did not become ready: %v\n%s", err, proc.LogTail(30))
		}
		time.Sleep(200 * time.Millisecond)
	}
	return h
}

// stop kills Hydra (the "IdP down" case).
func (h *hydra) stop(t testing.TB) {
	if err := h.proc.Stop(5 * time.Second); err != nil {
		t.Logf("stopping hydra: %v", err)
	}
}

// client is a netguard client trusting the test CA, loopback allowed: what production gets, plus the two test
// allowances.
func (h *hydra) client() *http.Client {
	return netguard.NewClient(netguard.ClientOptions{AllowLoopback: true, TLSConfig: &tls.Config{RootCAs: h.pool}})
}

func (h *hydra) adminJSON(t testing.TB, method, path string, in, out any) {
	t.Helper()
	b, _ := json.Marshal(in)
	req, _ := http.NewRequest(method, h.admin+path, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	resp, err := h.http.Do(req)
	if err != nil {
		t.Fatalf("hydra admin %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("hydra admin %s %s: %d %s", method, path, resp.StatusCode, body)
	}
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			t.Fatalf("hydra admin %s: %v", path, err)
		}
	}
}

// serviceToken registers a client_credentials client and returns a JWT access token for audience.
func (h *hydra) serviceToken(t testing.TB, clientID, audience string) string {
	t.Helper()
	h.adminJSON(t, http.MethodPost, "/admin/clients", map[string]any{
		"client_id": clientID, "client_secret": "secret-" + clientID, "grant_types": []string{"client_credentials"},
		"response_types": []string{"token"}, "scope": "kms.read", "audience": []string{audience},
		"token_endpoint_auth_method": "client_secret_basic", "access_token_strategy": "jwt",
	}, nil)
	cc := clientcredentials.Config{ClientID: clientID, ClientSecret: "secret-" + clientID, TokenURL: h.issuer + "oauth2/token",
		Scopes: []string{"kms.read"}, EndpointParams: url.Values{"audience": {audience}}}
	tok, err := cc.Token(context.WithValue(context.Background(), oauth2.HTTPClient, h.http))
	if err != nil {
		t.Fatalf("client_credentials: %v", err)
	}
	return tok.AccessToken
}

// userIDToken runs the authorization-code flow headlessly (the test accepts login and consent through the admin
// API) and returns the ID token of subject with the given groups claim; its audience is clientID.
func (h *hydra) userIDToken(t testing.TB, clientID, subject string, groups []string) string {
	t.Helper()
	redirect := "https://127.0.0.1:1/callback"
	h.adminJSON(t, http.MethodPost, "/admin/clients", map[string]any{
		"client_id": clientID, "client_secret": "secret-" + clientID, "grant_types": []string{"authorization_code"},
		"response_types": []string{"code"}, "scope": "openid email", "redirect_uris": []string{redirect},
		"token_endpoint_auth_method": "client_secret_basic",
	}, nil)
	q := url.Values{"client_id": {clientID}, "response_type": {"code"}, "scope": {"openid email"}, "redirect_uri": {redirect},
		"state": {"state-" + controlplane.RandomToken()[:12]}, "nonce": {"nonce-" + controlplane.RandomToken()[:12]}}
	next := h.issuer + "oauth2/auth?" + q.Encode()
	var code string
	for hop := 0; hop < 10 && code == ""; hop++ {
		resp, err := h.http.Get(next)
		if err != nil {
			t.Fatalf("auth flow GET %s: %v", next, err)
		}
		resp.Body.Close()
		loc, err := resp.Location()
		if err != nil {
			t.Fatalf("auth flow: %s answered %d without a redirect", next, resp.StatusCode)
		}
		lq := loc.Query()
		switch {
		case lq.Get("login_challenge") != "":
			var r struct {
				RedirectTo string `json:"redirect_to"`
			}
			h.adminJSON(t, http.MethodPut, "/admin/oauth2/auth/requests/login/accept?login_challenge="+url.QueryEscape(lq.Get("login_challenge")),
				map[string]any{"subject": subject}, &r)
			next = r.RedirectTo
		case lq.Get("consent_challenge") != "":
			var r struct {
				RedirectTo string `json:"redirect_to"`
			}
			h.adminJSON(t, http.MethodPut, "/admin/oauth2/auth/requests/consent/accept?consent_challenge="+url.QueryEscape(lq.Get("consent_challenge")),
				map[string]any{"grant_scope": []string{"openid", "email"}, "session": map[string]any{
					"id_token": map[string]any{"email": subject + "@example.org", "groups": groups}}}, &r)
			next = r.RedirectTo
		case lq.Get("code") != "":
			code = lq.Get("code")
		case lq.Get("error") != "":
			t.Fatalf("auth flow error: %s: %s", lq.Get("error"), lq.Get("error_description"))
		default:
			next = loc.String()
		}
	}
	if code == "" {
		t.Fatal("auth flow did not end with a code")
	}
	conf := oauth2.Config{ClientID: clientID, ClientSecret: "secret-" + clientID, RedirectURL: redirect,
		Endpoint: oauth2.Endpoint{TokenURL: h.issuer + "oauth2/token", AuthStyle: oauth2.AuthStyleInHeader}}
	tok, err := conf.Exchange(context.WithValue(context.Background(), oauth2.HTTPClient, h.http), code)
	if err != nil {
		t.Fatalf("code exchange: %v", err)
	}
	idt, _ := tok.Extra("id_token").(string)
	if idt == "" {
		t.Fatal("no id_token in the token response")
	}
	return idt
}

// TestHydra proves token verification against a real OIDC provider: Hydra's discovery, JWKS and real tokens.
func TestHydra(t *testing.T) {
	h := startHydra(t)
	roles, _ := NewRoleMap(RoleConfig{})
	auth, err := New(Options{Platform: []IssuerConfig{{URL: h.issuer, Audiences: []string{"cmk-api", "cmk-web"}}}, Roles: roles, Client: h.client(),
		MinRefreshInterval: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	svc := h.serviceToken(t, "e2e-svc", "cmk-api")
	p, err := auth.Authenticate(ctx, svc)
	if err != nil {
		t.Fatalf("Hydra client_credentials token: %v", err)
	}
	if p.Username != "platform:e2e-svc" || len(p.Groups) != 0 {
		t.Fatalf("service principal %+v", p)
	}

	idt := h.userIDToken(t, "cmk-web", "alice", []string{"acme:Admin", "globex:Viewer"})
	p, err = auth.Authenticate(ctx, idt)
	if err != nil {
		t.Fatalf("Hydra ID token: %v", err)
	}
	if p.Username != "platform:alice" || strings.Join(p.Groups, ",") != "apeiro-cmk:tenant:acme:admin,apeiro-cmk:tenant:globex:viewer" {
		t.Fatalf("user principal %+v", p)
	}

	t.Run("rejections", func(t *testing.T) {
		other := h.serviceToken(t, "other-svc", "someone-else")
		parts := strings.Split(idt, ".")
		forgedKey := newRSAKey(t, headerKid(t, idt))
		var claims map[string]any
		_ = json.Unmarshal(mustB64(t, parts[1]), &claims)
		expired := func() map[string]any {
			c := map[string]any{}
			for k, v := range claims {
				c[k] = v
			}
			c["exp"] = time.Now().Add(-time.Hour).Unix()
			return c
		}()
		for name, tok := range map[string]string{
			"wrong audience (real Hydra token)":    other,
			"forged with Hydra's kid":              forgedKey.sign(t, claims),
			"expired claims, forged signature":     forgedKey.sign(t, expired),
			"unknown kid":                          newRSAKey(t, "not-hydras").sign(t, claims),
			"signature of another token":           parts[0] + "." + parts[1] + "." + strings.Split(svc, ".")[2],
			"HS256 with Hydra's claims":            handMade(`{"alg":"HS256","kid":"`+headerKid(t, idt)+`"}`, string(mustB64(t, parts[1])), []byte("k")),
			"payload swapped under real signature": parts[0] + "." + strings.Split(svc, ".")[1] + "." + parts[2],
		} {
			if p, err := auth.Authenticate(ctx, tok); err == nil {
				t.Errorf("%s: accepted as %s", name, p.Username)
			}
		}
	})

	t.Run("expired real token", func(t *testing.T) {
		// A real Hydra token judged one hour into the future.
		late, err := New(Options{Platform: []IssuerConfig{{URL: h.issuer, Audiences: []string{"cmk-api"}}}, Roles: roles, Client: h.client(),
			Now: func() time.Time { return time.Now().Add(2 * time.Hour) }})
		if err != nil {
			t.Fatal(err)
		}
		_, err = late.Authenticate(ctx, svc)
		if !errors.Is(err, ErrExpired) {
			t.Fatalf("expired Hydra token: %v, want ErrExpired", err)
		}
	})

	t.Run("unknown-kid flood is bounded", func(t *testing.T) {
		before := auth.JWKSFetches()[normalizeIssuer(h.issuer)]
		attacker := newRSAKey(t, "x")
		for i := range 100 {
			attacker.kid = fmt.Sprintf("flood-%d", i)
			_, _ = auth.Authenticate(ctx, attacker.sign(t, claims(idt, t)))
		}
		if n := auth.JWKSFetches()[normalizeIssuer(h.issuer)] - before; n > 1 {
			t.Fatalf("%d JWKS fetches from Hydra for 100 unknown kids within the interval, want at most 1", n)
		}
	})

	t.Run("IdP down: cached keys keep verifying", func(t *testing.T) {
		h.stop(t)
		if _, err := auth.Authenticate(ctx, idt); err != nil {
			t.Fatalf("with Hydra stopped: %v", err)
		}
		time.Sleep(2100 * time.Millisecond) // past MinRefreshInterval: an unknown kid now tries (and fails) a refetch
		_, err := auth.Authenticate(ctx, newRSAKey(t, "new").sign(t, claims(idt, t)))
		var rj *Rejection
		if !errors.As(err, &rj) || rj.Reason != ReasonInvalid {
			t.Fatalf("unknown kid with Hydra down: %v", err)
		}
		if _, err := auth.Authenticate(ctx, svc); err != nil {
			t.Fatalf("cached key after a failed refetch: %v", err)
		}
		// A fresh authenticator that never saw Hydra's keys says so clearly.
		fresh, _ := New(Options{Platform: []IssuerConfig{{URL: h.issuer, Audiences: []string{"cmk-api"}}}, Roles: roles, Client: h.client()})
		_, err = fresh.Authenticate(ctx, svc)
		if !errors.As(err, &rj) || rj.Reason != ReasonUnavailable {
			t.Fatalf("no cached keys and Hydra down: %v, want %q", err, ReasonUnavailable)
		}
	})
}

func mustB64(t testing.TB, s string) []byte {
	b, err := base64RawURL(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func headerKid(t testing.TB, tok string) string {
	var h struct {
		Kid string `json:"kid"`
	}
	_ = json.Unmarshal(mustB64(t, strings.Split(tok, ".")[0]), &h)
	return h.Kid
}

func claims(tok string, t testing.TB) map[string]any {
	var c map[string]any
	_ = json.Unmarshal(mustB64(t, strings.Split(tok, ".")[1]), &c)
	return c
}
