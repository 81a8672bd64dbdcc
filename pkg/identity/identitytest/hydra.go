// Package identitytest starts the real OIDC provider the identity tests take tokens from (Ory Hydra, built by
// hack/peers/build-hydra.sh) and plays its login and consent apps, so tests in pkg/identity and test/e2e obtain real
// access and ID tokens. It needs HYDRA_BIN (internal/testpeers: skips locally, fails in CI when missing).
package identitytest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/apeirora/apeiro-cmk/internal/controlplane"
	"github.com/apeirora/apeiro-cmk/internal/testpeers"
	"github.com/apeirora/apeiro-cmk/pkg/netguard"
)

// Hydra is a running Ory Hydra serving TLS on loopback with a throw-away CA, all state in memory.
type Hydra struct {
	proc *controlplane.Process
	// Issuer is the public URL and the tokens' "iss" (with a trailing slash, as Hydra writes it); Admin the admin
	// API's base URL.
	Issuer, Admin string
	// Pool trusts the CA of Hydra's serving certificate; CAPEM is the same CA in PEM.
	Pool  *x509.CertPool
	CAPEM []byte
	// HTTP is the test-side client (trusts the CA, keeps cookies, does not follow redirects) for the
	// login/consent dance and token requests.
	HTTP *http.Client
	// LogPath is Hydra's log file.
	LogPath string

	mu      sync.Mutex
	clients map[string]bool // authorization-code clients registered by UserIDToken

	// bin and env start the process again on the same ports (Restart).
	bin string
	env []string
}

// StartHydra starts Hydra from HYDRA_BIN and waits until its discovery document answers. It is stopped when the
// test ends.
func StartHydra(t testing.TB) *Hydra {
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
	h := &Hydra{Issuer: fmt.Sprintf("https://127.0.0.1:%d/", ports[0]), Admin: fmt.Sprintf("https://127.0.0.1:%d", ports[1]),
		Pool: x509.NewCertPool(), CAPEM: ca.CertPEM, LogPath: filepath.Join(work, "hydra.log")}
	h.Pool.AddCert(ca.Cert)
	env := []string{
		"DSN=memory", "URLS_SELF_ISSUER=" + h.Issuer, "STRATEGIES_ACCESS_TOKEN=jwt",
		"SECRETS_SYSTEM=" + controlplane.RandomToken() + controlplane.RandomToken(),
		"SERVE_PUBLIC_HOST=127.0.0.1", fmt.Sprintf("SERVE_PUBLIC_PORT=%d", ports[0]),
		"SERVE_ADMIN_HOST=127.0.0.1", fmt.Sprintf("SERVE_ADMIN_PORT=%d", ports[1]),
		"SERVE_TLS_ENABLED=true", "SERVE_TLS_CERT_PATH=" + certFile, "SERVE_TLS_KEY_PATH=" + keyFile,
		// The login and consent "apps" are played by the test through the admin API; these URLs are never fetched.
		"URLS_LOGIN=https://127.0.0.1:1/login", "URLS_CONSENT=https://127.0.0.1:1/consent",
		"TTL_ACCESS_TOKEN=1h", "TTL_ID_TOKEN=1h", "LOG_LEVEL=warn",
	}
	h.bin, h.env = filepath.Join(dir, "hydra"), env
	jar, _ := cookiejar.New(nil)
	h.HTTP = &http.Client{Timeout: 30 * time.Second, Jar: jar,
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: h.Pool, MinVersion: tls.VersionTLS12}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	h.start(t)
	t.Cleanup(func() { _ = h.proc.Stop(5 * time.Second) })
	return h
}

// start runs the Hydra process and waits until its discovery document answers.
func (h *Hydra) start(t testing.TB) {
	t.Helper()
	proc, err := controlplane.StartProcess("hydra", h.bin, []string{"serve", "all", "--dev"}, h.LogPath, h.env...)
	if err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	h.proc = proc
	h.mu.Unlock()
	deadline := time.Now().Add(90 * time.Second)
	for {
		resp, err := h.HTTP.Get(h.Issuer + ".well-known/openid-configuration")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if exited, _ := proc.Exited(); exited || time.Now().After(deadline) {
			t.Fatalf("hydra did not become ready: %v\n%s", err, proc.LogTail(30))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Stop kills Hydra (the "IdP down" case).
func (h *Hydra) Stop(t testing.TB) {
	if err := h.proc.Stop(5 * time.Second); err != nil {
		t.Logf("stopping hydra: %v", err)
	}
}

// Restart starts a stopped Hydra again on the same issuer URL and ports. Its store is in memory, so it comes back
// as an IdP that lost everything: new signing keys (tokens signed before no longer verify), no clients (UserIDToken
// registers them again). Stop must have been called.
func (h *Hydra) Restart(t testing.TB) {
	t.Helper()
	if exited, _ := h.proc.Exited(); !exited {
		t.Fatal("hydra: Restart needs a stopped Hydra")
	}
	h.mu.Lock()
	h.clients = nil
	h.mu.Unlock()
	h.HTTP.CloseIdleConnections()
	h.start(t)
}

// SetIDTokenLifespan sets the lifetime of the ID tokens UserIDToken issues through clientID from now on (Hydra's
// per-client lifespans), e.g. a few seconds to obtain a real token that expires during a test.
func (h *Hydra) SetIDTokenLifespan(t testing.TB, clientID string, d time.Duration) {
	t.Helper()
	h.ensureCodeClient(t, clientID)
	h.AdminJSON(t, http.MethodPut, "/admin/clients/"+url.PathEscape(clientID)+"/lifespans",
		map[string]any{"authorization_code_grant_id_token_lifespan": d.String()}, nil)
}

const codeRedirect = "https://127.0.0.1:1/callback"

// ensureCodeClient registers clientID as an authorization-code client unless it already is.
func (h *Hydra) ensureCodeClient(t testing.TB, clientID string) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.clients[clientID] {
		return
	}
	h.AdminJSON(t, http.MethodPost, "/admin/clients", map[string]any{
		"client_id": clientID, "client_secret": "secret-" + clientID, "grant_types": []string{"authorization_code"},
		"response_types": []string{"code"}, "scope": "openid email", "redirect_uris": []string{codeRedirect},
		"token_endpoint_auth_method": "client_secret_basic",
	}, nil)
	if h.clients == nil {
		h.clients = map[string]bool{}
	}
	h.clients[clientID] = true
}

// Client is a netguard client trusting the test CA, loopback allowed: what production gets, plus the two test
// allowances.
func (h *Hydra) Client() *http.Client {
	return netguard.NewClient(netguard.ClientOptions{AllowLoopback: true, TLSConfig: &tls.Config{RootCAs: h.Pool}})
}

// AdminJSON calls Hydra's admin API and decodes the answer into out (when not nil); a non-2xx answer fails t.
func (h *Hydra) AdminJSON(t testing.TB, method, path string, in, out any) {
	t.Helper()
	b, _ := json.Marshal(in)
	req, _ := http.NewRequest(method, h.Admin+path, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	resp, err := h.HTTP.Do(req)
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

// ServiceToken registers a client_credentials client and returns a JWT access token for audience.
func (h *Hydra) ServiceToken(t testing.TB, clientID, audience string) string {
	t.Helper()
	h.AdminJSON(t, http.MethodPost, "/admin/clients", map[string]any{
		"client_id": clientID, "client_secret": "secret-" + clientID, "grant_types": []string{"client_credentials"},
		"response_types": []string{"token"}, "scope": "kms.read", "audience": []string{audience},
		"token_endpoint_auth_method": "client_secret_basic", "access_token_strategy": "jwt",
	}, nil)
	cc := clientcredentials.Config{ClientID: clientID, ClientSecret: "secret-" + clientID, TokenURL: h.Issuer + "oauth2/token",
		Scopes: []string{"kms.read"}, EndpointParams: url.Values{"audience": {audience}},
		// The client is registered for client_secret_basic; auto-detection would hide a failure behind a second
		// attempt with client_secret_post.
		AuthStyle: oauth2.AuthStyleInHeader}
	// Hydra's in-memory store has once refused a client right after registering it on a loaded machine: retry
	// briefly before failing (a real refusal fails the same way every time).
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		var tok *oauth2.Token
		if tok, err = cc.Token(context.WithValue(context.Background(), oauth2.HTTPClient, h.HTTP)); err == nil {
			return tok.AccessToken
		}
		time.Sleep(time.Duration(attempt+1) * 200 * time.Millisecond)
	}
	t.Fatalf("client_credentials: %v", err)
	return ""
}

// UserIDToken runs the authorization-code flow headlessly (the test accepts login and consent through the admin
// API) and returns the ID token of subject with the given groups claim; its audience is clientID. The client is
// registered on first use, so many users may log in through one client (as with kubectl's OIDC client).
func (h *Hydra) UserIDToken(t testing.TB, clientID, subject string, groups []string) string {
	t.Helper()
	redirect := codeRedirect
	h.ensureCodeClient(t, clientID)
	q := url.Values{"client_id": {clientID}, "response_type": {"code"}, "scope": {"openid email"}, "redirect_uri": {redirect},
		"state": {"state-" + controlplane.RandomToken()[:12]}, "nonce": {"nonce-" + controlplane.RandomToken()[:12]}}
	next := h.Issuer + "oauth2/auth?" + q.Encode()
	var code string
	for hop := 0; hop < 10 && code == ""; hop++ {
		resp, err := h.HTTP.Get(next)
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
			h.AdminJSON(t, http.MethodPut, "/admin/oauth2/auth/requests/login/accept?login_challenge="+url.QueryEscape(lq.Get("login_challenge")),
				map[string]any{"subject": subject}, &r)
			next = r.RedirectTo
		case lq.Get("consent_challenge") != "":
			var r struct {
				RedirectTo string `json:"redirect_to"`
			}
			h.AdminJSON(t, http.MethodPut, "/admin/oauth2/auth/requests/consent/accept?consent_challenge="+url.QueryEscape(lq.Get("consent_challenge")),
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
		Endpoint: oauth2.Endpoint{TokenURL: h.Issuer + "oauth2/token", AuthStyle: oauth2.AuthStyleInHeader}}
	tok, err := conf.Exchange(context.WithValue(context.Background(), oauth2.HTTPClient, h.HTTP), code)
	if err != nil {
		t.Fatalf("code exchange: %v", err)
	}
	idt, _ := tok.Extra("id_token").(string)
	if idt == "" {
		t.Fatal("no id_token in the token response")
	}
	return idt
}
