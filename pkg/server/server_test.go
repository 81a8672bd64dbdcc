package server_test

// In-process tests of the real HTTPS server: a throw-away CA and serving
// certificate in t.TempDir(), port 0, real TLS handshakes against 127.0.0.1.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/apeirora/apeiro-cmk/pkg/admission"
	"github.com/apeirora/apeiro-cmk/pkg/admission/admissiontest"
	"github.com/apeirora/apeiro-cmk/pkg/hierarchy"
	"github.com/apeirora/apeiro-cmk/pkg/server"
)

func TestMain(m *testing.M) {
	logf.SetLogger(logr.Discard())
	os.Exit(m.Run())
}

// --- throw-away PKI ---

type pki struct {
	caCert *x509.Certificate
	caKey  *ecdsa.PrivateKey
	pool   *x509.CertPool
	serial atomic.Int64
}

func newPKI(t testing.TB) *pki {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "apeiro-cmk test CA"},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	p := &pki{caCert: ca, caKey: key, pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	p.serial.Store(100)
	return p
}

// writeServing issues a serving certificate for 127.0.0.1/localhost and writes tls.crt/tls.key to dir; it returns
// the serial number.
func (p *pki) writeServing(t testing.TB, dir string) *big.Int {
	t.Helper()
	serial := big.NewInt(p.serial.Add(1))
	key, der := p.issue(t, &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "apeiro-cmk-webhook"},
		DNSNames:     []string{"localhost", "apeiro-cmk-webhook.apeiro-cmk-system.svc"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	// Key first, then certificate: the watcher may read in between and sees a mismatched pair, which it must skip.
	writeFile(t, filepath.Join(dir, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	writeFile(t, filepath.Join(dir, "tls.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	return serial
}

// issue signs tmpl (valid from a minute ago for an hour, digital signature) with the CA for a fresh P-256 key.
func (p *pki) issue(t testing.TB, tmpl *x509.Certificate) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Minute), time.Now().Add(time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	return key, der
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// --- running server ---

type running struct {
	srv  *server.Server
	addr string
	pki  *pki
	dir  string
	stop context.CancelFunc
	done chan error
}

// start runs a server with a fresh certificate on 127.0.0.1:0; register adds handlers before Start.
func start(t *testing.T, opts server.Options, register func(*server.Server)) *running {
	t.Helper()
	p := newPKI(t)
	dir := t.TempDir()
	p.writeServing(t, dir)
	opts.Host, opts.Port, opts.CertDir = "127.0.0.1", 0, dir
	srv := server.New(opts)
	if register != nil {
		register(srv)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{srv: srv, pki: p, dir: dir, stop: cancel, done: make(chan error, 1)}
	go func() { r.done <- srv.Start(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for srv.Addr() == nil {
		select {
		case err := <-r.done:
			t.Fatalf("Start returned early: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("server did not start within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	r.addr = srv.Addr().String()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(10 * time.Second):
			t.Error("server did not stop within 10s")
		}
	})
	return r
}

func (r *running) tlsConfig() *tls.Config {
	return &tls.Config{RootCAs: r.pki.pool, ServerName: "127.0.0.1"}
}

func (r *running) client() *http.Client {
	return &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: r.tlsConfig(), ForceAttemptHTTP2: true},
	}
}

func (r *running) handshake(cfg *tls.Config) (tls.ConnectionState, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", r.addr, cfg)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	return c.ConnectionState(), nil
}

func okHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
}

// --- tests ---

func TestStartedChecker(t *testing.T) {
	p := newPKI(t)
	dir := t.TempDir()
	p.writeServing(t, dir)
	srv := server.New(server.Options{Host: "127.0.0.1", CertDir: dir})
	check := srv.StartedChecker()
	if err := check(nil); err == nil {
		t.Fatal("StartedChecker passes before Start")
	}
	if srv.NeedLeaderElection() {
		t.Error("every replica must serve: NeedLeaderElection() = true")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Start(ctx) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(10 * time.Second)
	for check(nil) != nil {
		if time.Now().After(deadline) {
			t.Fatal("StartedChecker still failing 10s after Start")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Started means a TLS connection is accepted right now.
	c, err := tls.Dial("tcp", srv.Addr().String(), &tls.Config{RootCAs: p.pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("StartedChecker passes but the listener refuses: %v", err)
	}
	c.Close()
}

func TestTLSVersions(t *testing.T) {
	r := start(t, server.Options{}, nil)
	for _, tc := range []struct {
		name     string
		min, max uint16
		ok       bool
	}{
		{"TLS 1.0 only", tls.VersionTLS10, tls.VersionTLS10, false},
		{"TLS 1.1 max", tls.VersionTLS10, tls.VersionTLS11, false},
		{"TLS 1.2 only", tls.VersionTLS12, tls.VersionTLS12, true},
		{"TLS 1.3", tls.VersionTLS13, tls.VersionTLS13, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := r.tlsConfig()
			cfg.MinVersion, cfg.MaxVersion = tc.min, tc.max
			st, err := r.handshake(cfg)
			if tc.ok && (err != nil || st.Version < tc.min) {
				t.Fatalf("handshake: %v (version %x)", err, st.Version)
			}
			if !tc.ok && err == nil {
				t.Fatalf("handshake with max %s succeeded (negotiated %s)", tls.VersionName(tc.max), tls.VersionName(st.Version))
			}
		})
	}
	t.Run("TLS 1.3 minimum refuses 1.2", func(t *testing.T) {
		r13 := start(t, server.Options{MinTLSVersion: tls.VersionTLS13}, nil)
		cfg := r13.tlsConfig()
		cfg.MaxVersion = tls.VersionTLS12
		if _, err := r13.handshake(cfg); err == nil {
			t.Fatal("TLS 1.2 accepted by a TLS 1.3-only server")
		}
	})
}

func TestNoHTTP2(t *testing.T) {
	r := start(t, server.Options{}, func(s *server.Server) { s.Register("/ok", okHandler()) })
	t.Run("ALPN offering h2 gets http/1.1", func(t *testing.T) {
		cfg := r.tlsConfig()
		cfg.NextProtos = []string{"h2", "http/1.1"}
		st, err := r.handshake(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if st.NegotiatedProtocol != "http/1.1" {
			t.Fatalf("negotiated %q, want http/1.1", st.NegotiatedProtocol)
		}
	})
	t.Run("h2-only client is refused", func(t *testing.T) {
		cfg := r.tlsConfig()
		cfg.NextProtos = []string{"h2"}
		st, err := r.handshake(cfg)
		if err == nil && st.NegotiatedProtocol == "h2" {
			t.Fatal("h2 negotiated")
		}
	})
	t.Run("HTTP client that would use h2 speaks HTTP/1.1", func(t *testing.T) {
		resp, err := r.client().Get("https://" + r.addr + "/ok")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.ProtoMajor != 1 || resp.StatusCode != http.StatusOK {
			t.Fatalf("got %s %d, want HTTP/1.1 200", resp.Proto, resp.StatusCode)
		}
	})
}

func TestCertificateRotation(t *testing.T) {
	r := start(t, server.Options{}, nil)
	serialNow := func() *big.Int {
		st, err := r.handshake(r.tlsConfig())
		if err != nil {
			return nil
		}
		return st.PeerCertificates[0].SerialNumber
	}
	first := serialNow()
	if first == nil {
		t.Fatal("no certificate before rotation")
	}
	next := r.pki.writeServing(t, r.dir)
	if next.Cmp(first) == 0 {
		t.Fatal("test PKI reused a serial")
	}
	deadline := time.Now().Add(30 * time.Second) // fsnotify is immediate; the watcher's poll is every 10 s
	for {
		got := serialNow()
		if got != nil && got.Cmp(next) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still serving serial %v 30s after rotation to %v", got, next)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestStartErrors(t *testing.T) {
	t.Run("missing certificate", func(t *testing.T) {
		srv := server.New(server.Options{Host: "127.0.0.1", CertDir: t.TempDir()})
		err := srv.Start(context.Background())
		if err == nil || !strings.Contains(err.Error(), "serving certificate") {
			t.Fatalf("Start = %v, want a certificate error", err)
		}
		if srv.StartedChecker()(nil) == nil {
			t.Fatal("StartedChecker passes after a failed Start")
		}
	})
	t.Run("port in use", func(t *testing.T) {
		r := start(t, server.Options{}, nil)
		_, port, _ := net.SplitHostPort(r.addr)
		p, err := strconv.Atoi(port)
		if err != nil {
			t.Fatal(err)
		}
		srv := server.New(server.Options{Host: "127.0.0.1", Port: p, CertDir: r.dir})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Start(ctx); err == nil || !strings.Contains(err.Error(), "listening") {
			t.Fatalf("Start on a used port = %v", err)
		}
	})
}

func TestGracefulShutdown(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	r := start(t, server.Options{ShutdownTimeout: 10 * time.Second}, func(s *server.Server) {
		s.Register("/slow", http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			close(entered)
			<-release
			if req.Context().Err() != nil {
				http.Error(w, "request context cancelled during drain", http.StatusInternalServerError)
				return
			}
			_, _ = io.WriteString(w, "drained")
		}))
	})
	c := r.client()
	type result struct {
		status int
		body   string
		err    error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := c.Get("https://" + r.addr + "/slow")
		if err != nil {
			got <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		got <- result{status: resp.StatusCode, body: string(b)}
	}()
	<-entered
	r.stop()
	// While draining, Start has not returned and new connections are refused.
	select {
	case err := <-r.done:
		t.Fatalf("Start returned (%v) with a request in flight", err)
	case <-time.After(200 * time.Millisecond):
	}
	if _, err := r.handshake(r.tlsConfig()); err == nil {
		t.Error("new connection accepted while draining")
	}
	close(release)
	res := <-got
	if res.err != nil || res.status != http.StatusOK || res.body != "drained" {
		t.Fatalf("in-flight request: %+v, want 200 drained", res)
	}
	select {
	case err := <-r.done:
		if err != nil {
			t.Fatalf("Start = %v after a graceful shutdown", err)
		}
		r.done <- nil // for the cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("Start did not return after the drain")
	}
}

func TestAdmissionReviewOverTLS(t *testing.T) {
	w := admissiontest.NewWorld()
	r := start(t, server.Options{}, func(s *server.Server) {
		admission.Register(s, w.Handlers(admission.Handlers{}), admission.Limits{})
	})
	c := r.client()
	post := func(path string, req admissiontest.Req) (*http.Response, []byte) {
		t.Helper()
		resp, err := c.Post("https://"+r.addr+path, "application/json", bytes.NewReader(req.Body()))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, b
	}
	for _, tc := range []struct {
		name     string
		path     string
		req      admissiontest.Req
		allowed  bool
		patched  bool
		contains string
	}{
		{"allowed", admission.PathValidateTenant,
			admissiontest.Req{Kind: "Tenant", Name: "initech", Object: admissiontest.TenantObject(hierarchy.Tenant{ID: "initech", Type: hierarchy.Root})}, true, false, ""},
		{"denied cross-tenant", admission.PathValidateServiceEncryption,
			admissiontest.Req{Kind: "ServiceEncryptionKey", Namespace: admissiontest.AcmeEU, Name: "k",
				Object: admissiontest.KeyObject(admissiontest.AcmeEU, "k", admissiontest.Globex, "main")}, false, false, `not found or not usable by tenant \"acme-eu\"`},
		{"patched", admission.PathMutateAccount,
			admissiontest.Req{Kind: "Account", Namespace: admissiontest.AcmeEU, Name: "a",
				Object: admissiontest.AccountObject(admissiontest.AcmeEU, "a", "")}, true, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := post(tc.path, tc.req)
			ar, err := admissiontest.Decode(bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			if errs := admissiontest.Conformance(resp.StatusCode, resp.Header.Get("Content-Type"), ar, string(tc.req.Request().UID), admissiontest.IsMutating(tc.path)); len(errs) > 0 {
				t.Errorf("conformance: %v", errs)
			}
			if resp.ProtoMajor != 1 {
				t.Errorf("served over %s", resp.Proto)
			}
			if ar.Response.Allowed != tc.allowed || (ar.Response.Patch != nil) != tc.patched {
				t.Fatalf("response %s, want allowed=%v patched=%v", body, tc.allowed, tc.patched)
			}
			if !strings.Contains(string(body), tc.contains) {
				t.Errorf("response %s does not contain %s", body, tc.contains)
			}
		})
	}
	t.Run("oversized body refused with 413", func(t *testing.T) {
		big := bytes.Repeat([]byte("x"), admission.DefaultMaxBodyBytes+1)
		resp, err := c.Post("https://"+r.addr+admission.PathValidateTenant, "application/json", bytes.NewReader(big))
		if err != nil {
			// The server may close the connection before the client finished sending: that is a refusal too.
			if !errors.Is(err, io.EOF) && !strings.Contains(err.Error(), "connection reset") && !strings.Contains(err.Error(), "broken pipe") {
				t.Fatal(err)
			}
			return
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("HTTP %d, want 413", resp.StatusCode)
		}
	})
}

// issueClient signs a client certificate with the test CA.
func (p *pki) issueClient(t testing.TB) tls.Certificate {
	t.Helper()
	key, der := p.issue(t, &x509.Certificate{
		SerialNumber: big.NewInt(p.serial.Add(1)),
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestClientCertificateRequired(t *testing.T) {
	clients := newPKI(t) // the API server's client CA, separate from the serving CA
	caFile := filepath.Join(t.TempDir(), "client-ca.crt")
	writeFile(t, caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: clients.caCert.Raw}))
	r := start(t, server.Options{ClientCAFile: caFile}, func(s *server.Server) { s.Register("/ok", okHandler()) })

	get := func(certs ...tls.Certificate) error {
		cfg := r.tlsConfig()
		cfg.Certificates = certs
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
		resp, err := c.Get("https://" + r.addr + "/ok")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	}
	if err := get(); err == nil {
		t.Fatal("a client without a certificate was served")
	}
	if err := get(newPKI(t).issueClient(t)); err == nil {
		t.Fatal("a client certificate from another CA was accepted")
	}
	if err := get(clients.issueClient(t)); err != nil {
		t.Fatalf("a client certificate from the client CA was refused: %v", err)
	}

	bad := filepath.Join(t.TempDir(), "empty.crt")
	writeFile(t, bad, []byte("not pem"))
	srv := server.New(server.Options{Host: "127.0.0.1", CertDir: r.dir, ClientCAFile: bad})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := srv.Start(ctx); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Fatalf("Start with an unusable client CA: %v", err)
	}
}
