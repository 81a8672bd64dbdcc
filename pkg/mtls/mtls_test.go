package mtls

import (
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
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(t testing.TB, name string) *ca {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &ca{cert: c, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

type leafOpt func(*x509.Certificate)

func (c *ca) issue(t testing.TB, cn string, uris []string, opts ...leafOpt) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	for _, u := range uris {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	for _, o := range opts {
		o(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, key.Public(), c.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

const td = "apeiro.example"

func uri(tenant string) string {
	return "spiffe://" + td + "/tenant/" + tenant + "/component/crypto-manager"
}

// handshake runs a real TLS handshake over loopback TCP and returns the server-side error (nil = accepted).
func handshake(t *testing.T, srv *tls.Config, client tls.Certificate, roots *x509.CertPool, serverName string) error {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	errc := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			errc <- err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		errc <- tls.Server(c, srv).Handshake()
	}()
	cc := ClientConfig(func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &client, nil }, roots, serverName)
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", ln.Addr().String(), cc)
	if err == nil {
		// TLS 1.3: the client learns of a rejected certificate only on its first read.
		_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, _ = conn.Read(make([]byte, 1))
		conn.Close()
	}
	return <-errc
}

func TestTenantIsolationHandshakes(t *testing.T) {
	trusted, other := newCA(t, "tenant CA"), newCA(t, "foreign CA")
	v, err := NewVerifier(td, trusted.pem)
	if err != nil {
		t.Fatal(err)
	}
	serverCert := trusted.issue(t, "registry", nil)
	roots := x509.NewCertPool()
	roots.AddCert(trusted.cert)
	// One host name per tenant: <tenant>.registry.test.
	srv := v.ServerConfig(ServerOptions{
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &serverCert, nil },
		TenantForServerName: func(sn string) (string, error) {
			tenant, ok := strings.CutSuffix(sn, ".registry.test")
			if !ok {
				return "", errors.New("unknown host")
			}
			return tenant, nil
		},
	})
	serverCert = trusted.issue(t, "registry", nil, func(c *x509.Certificate) { c.DNSNames = []string{"*.registry.test"} })

	expired := func(c *x509.Certificate) {
		c.NotBefore, c.NotAfter = time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour)
	}
	serverOnly := func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth} }
	tests := []struct {
		name   string
		cert   tls.Certificate
		tenant string
		want   string // "" = accepted
	}{
		{"own tenant", trusted.issue(t, "cmk-acme", []string{uri("acme")}), "acme", ""},
		{"tenant A for B", trusted.issue(t, "cmk-acme", []string{uri("acme")}), "globex", "another tenant"},
		{"CN claims B, SAN says A", trusted.issue(t, "cmk-globex", []string{uri("acme")}), "globex", "another tenant"},
		{"CN claims B, SAN says A, for A", trusted.issue(t, "cmk-globex", []string{uri("acme")}), "acme", ""},
		{"no tenant SAN", trusted.issue(t, "cmk-globex", nil), "globex", "names no tenant"},
		{"two tenants", trusted.issue(t, "x", []string{uri("acme"), uri("globex")}), "globex", "two tenants"},
		{"other trust domain", trusted.issue(t, "x", []string{"spiffe://evil.example/tenant/globex"}), "globex", "outside trust domain"},
		{"not a tenant path", trusted.issue(t, "x", []string{"spiffe://" + td + "/ns/globex"}), "globex", "names no tenant"},
		{"untrusted CA", other.issue(t, "cmk-globex", []string{uri("globex")}), "globex", "not trusted"},
		{"expired", trusted.issue(t, "cmk-globex", []string{uri("globex")}, expired), "globex", "not trusted"},
		{"no clientAuth", trusted.issue(t, "cmk-globex", []string{uri("globex")}, serverOnly), "globex", "not trusted"},
		{"urn only (old scheme)", trusted.issue(t, "cmk-globex", []string{"urn:apeiro:tenant:globex"}), "globex", "names no tenant"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := handshake(t, srv, tc.cert, roots, tc.tenant+".registry.test")
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	t.Run("no client certificate", func(t *testing.T) {
		if err := handshake(t, srv, tls.Certificate{}, roots, "acme.registry.test"); err == nil {
			t.Fatal("accepted a client without certificate")
		}
	})
}

func TestRolloverBundle(t *testing.T) {
	oldCA, newCA := newCA(t, "old"), newCA(t, "new")
	v, err := NewVerifier(td, oldCA.pem)
	if err != nil {
		t.Fatal(err)
	}
	serverCert := oldCA.issue(t, "srv", nil)
	srv := v.ServerConfig(ServerOptions{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &serverCert, nil }})
	roots := x509.NewCertPool()
	roots.AddCert(oldCA.cert)
	fromOld, fromNew := oldCA.issue(t, "a", []string{uri("acme")}), newCA.issue(t, "a", []string{uri("acme")})

	step := func(name string, oldOK, newOK bool) {
		t.Helper()
		if err := handshake(t, srv, fromOld, roots, "localhost"); (err == nil) != oldOK {
			t.Errorf("%s: old-CA client: %v", name, err)
		}
		if err := handshake(t, srv, fromNew, roots, "localhost"); (err == nil) != newOK {
			t.Errorf("%s: new-CA client: %v", name, err)
		}
	}
	step("before", true, false)
	if err := v.SetBundle(append(append([]byte{}, oldCA.pem...), newCA.pem...)); err != nil {
		t.Fatal(err)
	}
	step("during rollover", true, true)
	if err := v.SetBundle(newCA.pem); err != nil {
		t.Fatal(err)
	}
	step("after", false, true)
	if err := v.SetBundle([]byte("garbage")); err == nil {
		t.Fatal("empty bundle accepted")
	}
	step("bad bundle keeps the last good one", false, true)
}

func TestRequireTenantHTTP(t *testing.T) {
	trusted := newCA(t, "tenant CA")
	v, err := NewVerifier(td, trusted.pem)
	if err != nil {
		t.Fatal(err)
	}
	h := v.RequireTenant(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := IdentityFrom(r.Context())
		_, _ = io.WriteString(w, id.Tenant+"/"+id.Component())
	}), func(r *http.Request) (string, error) {
		// /tenants/<tenant>/...
		parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/"), "/")
		if len(parts) < 2 || parts[0] != "tenants" {
			return "", errors.New("path names no tenant")
		}
		return parts[1], nil
	})
	srv := httptest.NewUnstartedServer(h)
	srvCert := trusted.issue(t, "srv", nil)
	srv.TLS = v.ServerConfig(ServerOptions{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &srvCert, nil }})
	srv.TLS.Certificates = []tls.Certificate{srvCert} // httptest would otherwise put its own certificate here
	srv.StartTLS()
	defer srv.Close()
	roots := x509.NewCertPool()
	roots.AddCert(trusted.cert)
	get := func(cert tls.Certificate, path string) (int, string) {
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: ClientConfig(
			func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }, roots, "127.0.0.1")}}
		resp, err := c.Get(srv.URL + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	acme := trusted.issue(t, "cmk-globex", []string{uri("acme")}) // CN lies
	if code, body := get(acme, "/tenants/acme/keys"); code != 200 || body != "acme/crypto-manager" {
		t.Fatalf("own tenant: %d %s", code, body)
	}
	if code, body := get(acme, "/tenants/globex/keys"); code != http.StatusForbidden || !strings.Contains(body, `tenant "acme" presented for tenant "globex"`) {
		t.Fatalf("other tenant: %d %s", code, body)
	}
	if code, _ := get(acme, "/healthz"); code != http.StatusBadRequest {
		t.Fatalf("no tenant in path: %d", code)
	}
}

func TestBundleRejects(t *testing.T) {
	c := newCA(t, "ca")
	leaf := c.issue(t, "x", nil)
	leafPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Certificate[0]})
	for name, b := range map[string][]byte{
		"empty": nil, "garbage": []byte("x"), "leaf": leafPEM,
		"bad DER": []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
		"huge":    make([]byte, maxBundleBytes+1),
	} {
		if _, err := NewVerifier(td, b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	for _, d := range []string{"bad/domain", "", "Apeiro.local", "not a domain", "a:1", strings.Repeat("a", 256)} {
		if _, err := NewVerifier(d, c.pem); err == nil {
			t.Errorf("trust domain %q accepted", d)
		}
	}
	for _, d := range []string{"apeiro.local", "cluster_1.example-org", "td"} {
		if _, err := NewVerifier(d, c.pem); err != nil {
			t.Errorf("trust domain %q refused: %v", d, err)
		}
	}
}

func FuzzParseBundle(f *testing.F) {
	f.Add(newCA(f, "seed").pem)
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		pool, n, err := ParseBundle(b)
		if err == nil && (pool == nil || n < 0) {
			t.Fatal("nil pool without error")
		}
	})
}

func BenchmarkHandshakeAuthorize(b *testing.B) {
	c := newCA(b, "ca")
	v, _ := NewVerifier(td, c.pem)
	leaf := c.issue(b, "a", []string{uri("acme")})
	chain := []*x509.Certificate{mustParse(b, leaf.Certificate[0])}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Authorize(chain, "acme"); err != nil {
			b.Fatal(err)
		}
	}
}

func mustParse(t testing.TB, der []byte) *x509.Certificate {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// FuzzIdentify feeds arbitrary DER as a peer's leaf: parsing and verification must never panic, and nothing that is
// not signed by the trusted CA may come out as an identity.
func FuzzIdentify(f *testing.F) {
	c := newCA(f, "fuzz CA")
	f.Add(c.issue(f, "cmk-acme", []string{uri("acme")}).Certificate[0])
	f.Add(newCA(f, "other").cert.Raw)
	f.Add([]byte{0x30, 0x03, 0x02, 0x01, 0x00})
	v, err := NewVerifier(td, c.pem)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, der []byte) {
		leaf, err := x509.ParseCertificate(der)
		if err != nil {
			return
		}
		id, err := v.Identify([]*x509.Certificate{leaf})
		if err != nil {
			return
		}
		if id.Tenant == "" || leaf.CheckSignatureFrom(c.cert) != nil {
			t.Fatalf("accepted %+v", id)
		}
	})
}
