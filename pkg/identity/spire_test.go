package identity

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/apeirora/apeiro-cmk/internal/controlplane"
	"github.com/apeirora/apeiro-cmk/internal/testpeers"
)

const spireTD = "apeiro.test"

// spire is a running SPIRE server + agent (hack/peers/build-spire.sh); the agent serves the Workload API to this
// test process, attested by its uid.
type spire struct {
	bin, dir, serverSock, agentSock string
}

func startSPIRE(t testing.TB) *spire {
	t.Helper()
	bin := testpeers.Env(t, "SPIRE_BIN", "run `make spire-bin` (bash hack/peers/build-spire.sh) and export SPIRE_BIN")
	// Unix socket paths are limited to 107 bytes; t.TempDir() names grow with the test name.
	dir, err := os.MkdirTemp("", "spr")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	for _, d := range []string{"sock", "data/server", "data/agent"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	s := &spire{bin: bin, dir: dir, serverSock: filepath.Join(dir, "sock", "s.sock"), agentSock: filepath.Join(dir, "sock", "a.sock")}
	ports, err := controlplane.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	serverConf := fmt.Sprintf(`server {
  bind_address = "127.0.0.1"
  bind_port = "%d"
  trust_domain = "%s"
  socket_path = "%s"
  data_dir = "%s/data/server"
  ca_ttl = "24h"
  default_x509_svid_ttl = "1h"
  default_jwt_svid_ttl = "5m"
  log_level = "WARN"
}
plugins {
  DataStore "sql" { plugin_data { database_type = "sqlite3"  connection_string = "%s/data/server/datastore.sqlite3" } }
  KeyManager "memory" { plugin_data {} }
  NodeAttestor "join_token" { plugin_data {} }
}
`, ports[0], spireTD, s.serverSock, dir, dir)
	agentConf := fmt.Sprintf(`agent {
  server_address = "127.0.0.1"
  server_port = "%d"
  socket_path = "%s"
  trust_domain = "%s"
  data_dir = "%s/data/agent"
  insecure_bootstrap = true
  log_level = "WARN"
}
plugins {
  NodeAttestor "join_token" { plugin_data {} }
  KeyManager "memory" { plugin_data {} }
  WorkloadAttestor "unix" { plugin_data {} }
}
`, ports[0], s.agentSock, spireTD, dir)
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	srv, err := controlplane.StartProcess("spire-server", filepath.Join(bin, "spire-server"), []string{"run", "-config", write("server.conf", serverConf)}, filepath.Join(dir, "server.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop(5 * time.Second) })
	s.waitHealthy(t, "spire-server", "-socketPath", s.serverSock)
	out := s.run(t, "spire-server", "token", "generate", "-socketPath", s.serverSock, "-spiffeID", "spiffe://"+spireTD+"/node/agent1")
	token := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(out), "Token:"))
	agent, err := controlplane.StartProcess("spire-agent", filepath.Join(bin, "spire-agent"), []string{"run", "-config", write("agent.conf", agentConf), "-joinToken", token}, filepath.Join(dir, "agent.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = agent.Stop(5 * time.Second) })
	s.waitHealthy(t, "spire-agent", "-socketPath", s.agentSock)
	return s
}

func (s *spire) run(t testing.TB, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(s.bin, bin), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", bin, args, err, out)
	}
	return string(out)
}

func (s *spire) waitHealthy(t testing.TB, bin string, args ...string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := exec.CommandContext(ctx, filepath.Join(s.bin, bin), append([]string{"healthcheck"}, args...)...).Run()
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			logs, _ := os.ReadFile(filepath.Join(s.dir, strings.TrimPrefix(bin, "spire-")+".log"))
			t.Fatalf("%s not healthy: %v\n%s", bin, err, logs)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// register creates an entry for this process's uid and waits until the Workload API serves its X.509-SVID (the
// agent syncs every few seconds; until then it answers PermissionDenied and one-shot fetches do not retry).
func (s *spire) register(t testing.TB, id string) *x509svid.SVID {
	t.Helper()
	s.run(t, "spire-server", "entry", "create", "-socketPath", s.serverSock, "-parentID", "spiffe://"+spireTD+"/node/agent1",
		"-spiffeID", id, "-selector", fmt.Sprintf("unix:uid:%d", os.Getuid()))
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		svid, err := workloadapi.FetchX509SVID(ctx, workloadapi.WithAddr(s.addr()))
		cancel()
		if err == nil && svid.ID.String() == id {
			return svid
		}
		if time.Now().After(deadline) {
			t.Fatalf("no X.509-SVID for %s from the Workload API: %v", id, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func (s *spire) addr() string { return "unix://" + s.agentSock }

// TestSPIRE proves SVID validation against a real SPIRE server and agent: X.509- and JWT-SVIDs issued through the
// Workload API verify against the bundles streamed from the same API, map to tenant and workload, and unlock a key
// over mTLS; other trust domains, forgeries and wrong audiences are refused.
func TestSPIRE(t *testing.T) {
	s := startSPIRE(t)
	id := "spiffe://" + spireTD + "/tenant/acme/ns/payments/sa/api"
	svid := s.register(t, id)

	ctx := context.Background()
	v, err := OpenSPIFFE(ctx, SPIFFEConfig{WorkloadAPIAddr: s.addr(), TrustDomains: []string{spireTD}, Audiences: []string{"cmk"}}, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.Close() })

	w, err := v.VerifyX509SVID(svid.Certificates)
	if err != nil || w.ID.String() != id || w.Tenant != "acme" || strings.Join(w.Path, "/") != "ns/payments/sa/api" {
		t.Fatalf("SPIRE X.509-SVID: %+v, %v", w, err)
	}
	fetchJWT := func(aud string) string {
		c, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		js, err := workloadapi.FetchJWTSVID(c, jwtsvid.Params{Audience: aud}, workloadapi.WithAddr(s.addr()))
		if err != nil {
			t.Fatalf("FetchJWTSVID(%s): %v", aud, err)
		}
		return js.Marshal()
	}
	jwtTok := fetchJWT("cmk")
	if w, err := v.VerifyJWTSVID(jwtTok); err != nil || w.Tenant != "acme" {
		t.Fatalf("SPIRE JWT-SVID: %+v, %v", w, err)
	}
	roles, _ := NewRoleMap(RoleConfig{})
	auth, err := New(Options{Roles: roles, SPIFFE: v, Client: http.DefaultClient})
	if err != nil {
		t.Fatal(err)
	}
	p, err := auth.Authenticate(ctx, jwtTok)
	if err != nil || p.Username != id || p.Tenant != "acme" || p.Extra[ExtraSPIFFEID][0] != id {
		t.Fatalf("JWT-SVID through Authenticate: %+v, %v", p, err)
	}

	evil := newTestTD(t, "evil.test")
	evilCerts, _ := evil.svid(t, "spiffe://evil.test/tenant/acme/ns/payments/sa/api")
	forgedCerts, _ := evil.svid(t, id) // claims SPIRE's trust domain, signed by another CA
	if _, err := v.VerifyX509SVID(evilCerts); err == nil {
		t.Error("X.509-SVID of another trust domain accepted")
	}
	if _, err := v.VerifyX509SVID(forgedCerts); err == nil {
		t.Error("forged X.509-SVID accepted")
	}
	parts := strings.Split(jwtTok, ".")
	forgedKey := newECKey(t, headerKid(t, jwtTok))
	forgedKey.alg = "ES256"
	for name, tok := range map[string]string{
		"wrong audience (real SPIRE token)":      fetchJWT("someone-else"),
		"wrong trust domain":                     evil.jwtSVID(t, "spiffe://evil.test/tenant/acme/x", "cmk", time.Minute),
		"forged with SPIRE's kid":                forgedKey.sign(t, claims(jwtTok, t)),
		"tampered payload under SPIRE signature": parts[0] + "." + strings.Split(evil.jwtSVID(t, "spiffe://"+spireTD+"/tenant/globex/x", "cmk", time.Minute), ".")[1] + "." + parts[2],
	} {
		if _, err := v.VerifyJWTSVID(tok); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}

	// The workload key endpoint with the real SVIDs.
	keys := &fakeKeys{grants: map[string]*KeyGrant{
		"acme-ns/db-key": {Namespace: "acme-ns", Name: "db-key", Tenant: "acme", WorkloadIdentities: []string{id}},
		"acme-ns/other":  {Namespace: "acme-ns", Name: "other", Tenant: "acme", WorkloadIdentities: []string{"spiffe://" + spireTD + "/tenant/acme/ns/x/sa/y"}},
	}}
	var mu sync.Mutex
	var logs strings.Builder
	srv := httptest.NewUnstartedServer(&WorkloadKeyHandler{SPIFFE: v, Keys: keys, Service: keys, Log: slogTo(&logs, &mu)})
	srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	chain := make([][]byte, 0, len(svid.Certificates))
	for _, c := range svid.Certificates {
		chain = append(chain, c.Raw)
	}
	mtls := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12,
		Certificates: []tls.Certificate{{Certificate: chain, PrivateKey: svid.PrivateKey, Leaf: svid.Certificates[0]}}}}}
	post := func(c *http.Client, path, bearer string) int {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+path, nil)
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	plain := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}
	if c := post(mtls, "/v1/workload-keys/acme-ns/db-key/unwrap", ""); c != 200 {
		t.Fatalf("SPIRE X.509-SVID over mTLS: HTTP %d", c)
	}
	if c := post(plain, "/v1/workload-keys/acme-ns/db-key/unwrap", jwtTok); c != 200 {
		t.Fatalf("SPIRE JWT-SVID as bearer: HTTP %d", c)
	}
	if c := post(mtls, "/v1/workload-keys/acme-ns/other/unwrap", ""); c != 403 {
		t.Fatalf("key not listing the SVID: HTTP %d, want 403", c)
	}
	t.Run("workload key endpoint with the real key chain", func(t *testing.T) { testWorkloadKeysWithKeychain(t, v, svid, jwtTok) })
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), id) {
		t.Fatalf("access log lacks the SPIFFE ID:\n%s", logs.String())
	}
}
