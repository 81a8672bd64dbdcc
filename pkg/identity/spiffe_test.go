package identity

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/apeirora/apeiro-cmk/pkg/keychain"
)

// testTD is a SPIFFE trust domain with an X.509 CA and a JWT signing key, standing in for a SPIRE server in unit
// tests (the real one is exercised in spire_test.go).
type testTD struct {
	td     spiffeid.TrustDomain
	caKey  *ecdsa.PrivateKey
	caCert *x509.Certificate
	jwtKey signingKey
}

func newTestTD(t testing.TB, name string) *testTD {
	td := spiffeid.RequireTrustDomainFromString(name)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		URIs: []*url.URL{td.ID().URL()}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testTD{td: td, caKey: key, caCert: cert, jwtKey: newECKey(t, "jwt-"+name)}
}

func (d *testTD) bundle() *spiffebundle.Bundle {
	b := spiffebundle.New(d.td)
	b.AddX509Authority(d.caCert)
	_ = b.AddJWTAuthority(d.jwtKey.kid, d.jwtKey.priv.Public())
	return b
}

// svid issues an X.509-SVID for id (any string, so malformed IDs can be tested) signed by this domain's CA.
func (d *testTD) svid(t testing.TB, id string) ([]*x509.Certificate, crypto.Signer) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, err := url.Parse(id)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, URIs: []*url.URL{u}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, d.caCert, key.Public(), d.caKey)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return []*x509.Certificate{c}, key
}

func (d *testTD) jwtSVID(t testing.TB, sub string, aud string, ttl time.Duration) string {
	now := time.Now()
	return d.jwtKey.sign(t, map[string]any{"sub": sub, "aud": []string{aud}, "exp": now.Add(ttl).Unix(), "iat": now.Unix()})
}

func newSPIFFEFixture(t testing.TB) (*testTD, *testTD, *SPIFFEVerifier) {
	good, evil := newTestTD(t, "apeiro.test"), newTestTD(t, "evil.test")
	set := spiffebundle.NewSet(good.bundle(), evil.bundle())
	// Both bundles are known (as with federation), but only apeiro.test is accepted.
	v, err := NewSPIFFEVerifier(set, []string{"apeiro.test"}, []string{"cmk"})
	if err != nil {
		t.Fatal(err)
	}
	return good, evil, v
}

func TestSPIFFEVerification(t *testing.T) {
	good, evil, v := newSPIFFEFixture(t)
	id := "spiffe://apeiro.test/tenant/acme/ns/payments/sa/api"

	certs, _ := good.svid(t, id)
	w, err := v.VerifyX509SVID(certs)
	if err != nil || w.ID.String() != id || w.Tenant != "acme" || strings.Join(w.Path, "/") != "ns/payments/sa/api" {
		t.Fatalf("X.509-SVID: %+v, %v", w, err)
	}
	w, err = v.VerifyJWTSVID(good.jwtSVID(t, id, "cmk", time.Minute))
	if err != nil || w.ID.String() != id || w.Tenant != "acme" {
		t.Fatalf("JWT-SVID: %+v, %v", w, err)
	}
	// A SPIFFE ID outside the tenant scheme authenticates but belongs to no tenant.
	w, err = v.VerifyJWTSVID(good.jwtSVID(t, "spiffe://apeiro.test/workload/x", "cmk", time.Minute))
	if err != nil || w.Tenant != "" {
		t.Fatalf("non-tenant SPIFFE ID: %+v, %v", w, err)
	}

	evilCerts, _ := evil.svid(t, "spiffe://evil.test/tenant/acme/x")
	impostor, _ := evil.svid(t, id) // claims apeiro.test, signed by evil.test's CA
	for name, chain := range map[string][]*x509.Certificate{"wrong trust domain": evilCerts, "forged (other CA)": impostor, "empty": nil} {
		if w, err := v.VerifyX509SVID(chain); err == nil {
			t.Errorf("X.509 %s accepted as %v", name, w.ID)
		}
	}
	if _, err := v.VerifyX509SVID(evilCerts); !errors.Is(err, ErrTrustDomain) {
		t.Errorf("wrong trust domain: %v, want ErrTrustDomain", err)
	}
	forgedJWT := evil.jwtKey
	forgedJWT.kid = good.jwtKey.kid
	for name, tok := range map[string]string{
		"wrong trust domain": evil.jwtSVID(t, "spiffe://evil.test/tenant/acme/x", "cmk", time.Minute),
		"forged":             forgedJWT.sign(t, map[string]any{"sub": id, "aud": "cmk", "exp": time.Now().Add(time.Minute).Unix()}),
		"wrong audience":     good.jwtSVID(t, id, "other", time.Minute),
		"expired":            good.jwtSVID(t, id, "cmk", -10*time.Minute),
		"malformed SPIFFE ID (uppercase trust domain)": good.jwtSVID(t, "spiffe://APEIRO.test/tenant/acme", "cmk", time.Minute),
		"malformed SPIFFE ID (dot segment)":            good.jwtSVID(t, "spiffe://apeiro.test/tenant/../x", "cmk", time.Minute),
		"malformed SPIFFE ID (query)":                  good.jwtSVID(t, "spiffe://apeiro.test/tenant/acme?x=1", "cmk", time.Minute),
		"not a SPIFFE subject":                         good.jwtSVID(t, "alice", "cmk", time.Minute),
	} {
		if w, err := v.VerifyJWTSVID(tok); err == nil {
			t.Errorf("JWT-SVID %s accepted as %v", name, w.ID)
		}
	}
}

// fakeKeys is a KeyLookup + KeyService over a map (the real ones are KubeKeyLookup and *keychain.Chain).
type fakeKeys struct {
	mu     sync.Mutex
	grants map[string]*KeyGrant
	used   []string
}

func (f *fakeKeys) Lookup(_ context.Context, ns, name string) (*KeyGrant, error) {
	if g, ok := f.grants[ns+"/"+name]; ok {
		return g, nil
	}
	return nil, ErrNoSuchKey
}

func (f *fakeKeys) UnwrapServiceKey(_ context.Context, ns, name string) ([]byte, error) {
	f.mu.Lock()
	f.used = append(f.used, "unwrap "+ns+"/"+name)
	f.mu.Unlock()
	if name == "not-ready" {
		return nil, keychain.ErrServiceKeyNotReady
	}
	return bytes.Repeat([]byte{0x42}, 32), nil
}

func (f *fakeKeys) Encrypt(_ context.Context, ns, name string, pt, aad []byte) ([]byte, error) {
	return append([]byte("ct:"), pt...), nil
}

func (f *fakeKeys) Decrypt(_ context.Context, ns, name string, ct, aad []byte) ([]byte, error) {
	if !bytes.HasPrefix(ct, []byte("ct:")) {
		return nil, keychain.ErrIntegrity
	}
	return ct[3:], nil
}

func TestWorkloadKeyHandler(t *testing.T) {
	good, evil, v := newSPIFFEFixture(t)
	api := "spiffe://apeiro.test/tenant/acme/ns/payments/sa/api"
	keys := &fakeKeys{grants: map[string]*KeyGrant{
		"acme-ns/db-key":    {Namespace: "acme-ns", Name: "db-key", Tenant: "acme", WorkloadIdentities: []string{api, "spiffe://apeiro.test/tenant/globex/ns/x/sa/y"}},
		"acme-ns/not-ready": {Namespace: "acme-ns", Name: "not-ready", Tenant: "acme", WorkloadIdentities: []string{api}},
		"globex-ns/g-key":   {Namespace: "globex-ns", Name: "g-key", Tenant: "globex", WorkloadIdentities: []string{api}},
	}}
	var logs bytes.Buffer
	var logMu sync.Mutex
	h := &WorkloadKeyHandler{SPIFFE: v, Keys: keys, Service: keys, Log: slogTo(&logs, &logMu)}
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())

	clientFor := func(chain []*x509.Certificate, key crypto.Signer) *http.Client {
		cfg := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
		if chain != nil {
			cfg.Certificates = []tls.Certificate{{Certificate: [][]byte{chain[0].Raw}, PrivateKey: key, Leaf: chain[0]}}
		}
		return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
	}
	post := func(c *http.Client, path, bearer, body string) (int, []byte) {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+path, strings.NewReader(body))
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	apiCerts, apiKey := good.svid(t, api)
	mtls := clientFor(apiCerts, apiKey)
	anon := clientFor(nil, nil)

	code, body := post(mtls, "/v1/workload-keys/acme-ns/db-key/unwrap", "", "")
	var kr WorkloadKeyResponse
	if code != 200 || json.Unmarshal(body, &kr) != nil || kr.Key == "" {
		t.Fatalf("listed workload over mTLS: %d %s", code, body)
	}
	code, _ = post(anon, "/v1/workload-keys/acme-ns/db-key/unwrap", good.jwtSVID(t, api, "cmk", time.Minute), "")
	if code != 200 {
		t.Fatalf("listed workload with a JWT-SVID: %d", code)
	}
	code, body = post(mtls, "/v1/workload-keys/acme-ns/db-key/encrypt", "", `{"plaintext":"aGVsbG8="}`)
	var cr WorkloadCryptoResponse
	if code != 200 || json.Unmarshal(body, &cr) != nil || string(cr.Ciphertext) != "ct:hello" {
		t.Fatalf("encrypt: %d %s", code, body)
	}

	other, otherKey := good.svid(t, "spiffe://apeiro.test/tenant/acme/ns/payments/sa/other")
	globex, globexKey := good.svid(t, "spiffe://apeiro.test/tenant/globex/ns/x/sa/y")
	evilCerts, evilKey := evil.svid(t, api)
	noTenant, noTenantKey := good.svid(t, "spiffe://apeiro.test/workload/api")
	for _, tc := range []struct {
		name   string
		c      *http.Client
		path   string
		bearer string
		code   int
	}{
		{"unlisted workload of the same tenant", clientFor(other, otherKey), "/v1/workload-keys/acme-ns/db-key/unwrap", "", 403},
		{"listed ID of another tenant (a mis-listing must not cross tenants)", clientFor(globex, globexKey), "/v1/workload-keys/acme-ns/db-key/unwrap", "", 403},
		{"tenant-A workload asking for a tenant-B key that lists it", mtls, "/v1/workload-keys/globex-ns/g-key/unwrap", "", 403},
		{"no such key (same answer as forbidden)", mtls, "/v1/workload-keys/acme-ns/nope/unwrap", "", 403},
		{"wrong trust domain CA", clientFor(evilCerts, evilKey), "/v1/workload-keys/acme-ns/db-key/unwrap", "", 401},
		{"SPIFFE ID without tenant", clientFor(noTenant, noTenantKey), "/v1/workload-keys/acme-ns/db-key/unwrap", "", 403},
		{"no credentials", anon, "/v1/workload-keys/acme-ns/db-key/unwrap", "", 401},
		{"garbage bearer", anon, "/v1/workload-keys/acme-ns/db-key/unwrap", "!!!", 401},
		{"OIDC-style token as bearer", anon, "/v1/workload-keys/acme-ns/db-key/unwrap", good.jwtKey.sign(t, map[string]any{"sub": "alice", "aud": "cmk", "exp": time.Now().Add(time.Minute).Unix()}), 401},
		{"bad path", mtls, "/v1/workload-keys/acme-ns/db-key/steal", "", 404},
		{"key not ready", mtls, "/v1/workload-keys/acme-ns/not-ready/unwrap", "", 409},
	} {
		if code, body := post(tc.c, tc.path, tc.bearer, ""); code != tc.code {
			t.Errorf("%s: HTTP %d (%s), want %d", tc.name, code, body, tc.code)
		}
	}
	if code, _ := post(mtls, "/v1/workload-keys/acme-ns/db-key/decrypt", "", `{"ciphertext":"eA=="}`); code != 400 {
		t.Errorf("tampered ciphertext: %d, want 400", code)
	}
	logMu.Lock()
	out := logs.String()
	logMu.Unlock()
	if !strings.Contains(out, api) || !strings.Contains(out, "acme-ns/db-key") {
		t.Fatalf("access log lacks the SPIFFE ID or key:\n%s", out)
	}
	if strings.Contains(out, kr.Key) || strings.Contains(out, "QkJCQkJC") {
		t.Fatal("key material in the log")
	}
}
