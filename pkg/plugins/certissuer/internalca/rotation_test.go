package internalca

import (
	"context"
	"crypto/x509"
	"os"
	"strings"
	"testing"
	"time"

	certv1 "github.com/openkcm/plugin-sdk/proto/plugin/certificate_issuer/v1"
	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func bundlePool(t *testing.T, b []byte) *x509.CertPool {
	t.Helper()
	certs, err := parseCertChainPEM(b)
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

func issueLeaf(t *testing.T, p *Plugin) *x509.Certificate {
	t.Helper()
	_, keyPEM := cmkKey(t)
	resp, err := p.GetCertificate(context.Background(), &certv1.GetCertificateRequest{CommonName: "tenant-1", Validity: days(7),
		PrivateKey: &certv1.PrivateKey{Data: keyPEM}})
	if err != nil {
		t.Fatal(err)
	}
	return parseChain(t, resp.GetCertificateChain())[0]
}

func verifies(leaf *x509.Certificate, pool *x509.CertPool) bool {
	_, err := leaf.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	return err == nil
}

// TestRolloverOnDisk: the CA Secret is renewed in place (as cert-manager does); the plugin notices, signs with the
// new CA, and its trust bundle holds both, so certificates from before and after verify.
func TestRolloverOnDisk(t *testing.T) {
	oldCA, newCA := newTestCA(t, "old CA", nil, nil), newTestCA(t, "new CA", nil, nil)
	certFile, keyFile := oldCA.files(t)
	clockNow := now
	p := New(WithClock(func() time.Time { return clockNow }))
	if _, err := p.Configure(context.Background(), &configv1.ConfigureRequest{YamlConfiguration: "caCertFile: " + certFile + "\ncaKeyFile: " + keyFile}); err != nil {
		t.Fatal(err)
	}
	before := issueLeaf(t, p)
	if !verifies(before, bundlePool(t, p.TrustBundle())) {
		t.Fatal("leaf does not verify against the bundle")
	}

	if err := os.WriteFile(certFile, []byte(newCA.certPEM), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, []byte(newCA.keyPEM), 0o600); err != nil {
		t.Fatal(err)
	}
	clockNow = clockNow.Add(rotationCheckEvery + time.Second)
	after := issueLeaf(t, p)
	if after.CheckSignatureFrom(newCA.cert) != nil {
		t.Fatal("not signing with the rotated CA")
	}
	bundle := bundlePool(t, p.TrustBundle())
	if !verifies(before, bundle) || !verifies(after, bundle) {
		t.Fatal("old and new certificates must both verify during the rollover")
	}
	// A half-written rotation (garbage key) keeps the current CA.
	if err := os.WriteFile(keyFile, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	clockNow = clockNow.Add(rotationCheckEvery + time.Second)
	if issueLeaf(t, p).CheckSignatureFrom(newCA.cert) != nil {
		t.Fatal("broken files replaced the CA")
	}
}

func TestRolloverByConfigure(t *testing.T) {
	oldCA, newCA, olderCA := newTestCA(t, "old", nil, nil), newTestCA(t, "new", nil, nil), newTestCA(t, "older", nil, nil)
	inline := func(ca *testCA) string {
		return "caCertPEM: |\n  " + strings.ReplaceAll(strings.TrimSpace(ca.certPEM), "\n", "\n  ") +
			"\ncaKeyPEM: |\n  " + strings.ReplaceAll(strings.TrimSpace(ca.keyPEM), "\n", "\n  ") + "\n"
	}
	olderFile, _ := olderCA.files(t)
	p := configure(t, inline(oldCA)+"previousCACertFiles: ["+olderFile+"]\n")
	if got := len(parseChainBytes(t, p.TrustBundle())); got != 2 {
		t.Fatalf("bundle has %d CAs, want current + configured previous", got)
	}
	before := issueLeaf(t, p)
	if _, err := p.Configure(context.Background(), &configv1.ConfigureRequest{YamlConfiguration: inline(newCA)}); err != nil {
		t.Fatal(err)
	}
	after := issueLeaf(t, p)
	bundle := bundlePool(t, p.TrustBundle())
	if !verifies(before, bundle) || !verifies(after, bundle) {
		t.Fatal("old and new certificates must both verify after a reconfiguration")
	}
	if got := len(parseChainBytes(t, p.TrustBundle())); got != 2 {
		t.Fatalf("bundle has %d CAs, want new + the one it replaced (older generations only when configured)", got)
	}
}

func parseChainBytes(t *testing.T, b []byte) []*x509.Certificate {
	t.Helper()
	c, err := parseCertChainPEM(b)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestTenantURISchemes(t *testing.T) {
	_, keyPEM := cmkKey(t)
	for name, tc := range map[string]struct{ yaml, want string }{
		"default":   {"ephemeralCA: true", "spiffe://apeiro.local/tenant/acme/component/cmk-tenant"},
		"component": {"ephemeralCA: true\nspiffeTrustDomain: apeiro.example\ncomponent: crypto-manager", "spiffe://apeiro.example/tenant/acme/component/crypto-manager"},
		"legacy":    {"ephemeralCA: true\nlegacyTenantURN: true", "spiffe://apeiro.local/tenant/acme/component/cmk-tenant urn:apeiro:tenant:acme"},
	} {
		t.Run(name, func(t *testing.T) {
			p := configure(t, tc.yaml)
			resp, err := p.GetCertificate(context.Background(), &certv1.GetCertificateRequest{CommonName: "acme", Validity: days(7),
				PrivateKey: &certv1.PrivateKey{Data: keyPEM}})
			if err != nil {
				t.Fatal(err)
			}
			var uris []string
			for _, u := range parseChain(t, resp.GetCertificateChain())[0].URIs {
				uris = append(uris, u.String())
			}
			if got := strings.Join(uris, " "); got != tc.want {
				t.Fatalf("URI SANs %q, want %q", got, tc.want)
			}
		})
	}
	p := configure(t, "ephemeralCA: true")
	for _, cn := range []string{"Acme", "ACME_corp", "a..b"} {
		_, err := p.GetCertificate(context.Background(), &certv1.GetCertificateRequest{CommonName: cn, Validity: days(7),
			PrivateKey: &certv1.PrivateKey{Data: keyPEM}})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "valid URI path segment") {
			t.Errorf("%q: err = %v", cn, err)
		}
	}
	if _, err := New().Configure(context.Background(), &configv1.ConfigureRequest{YamlConfiguration: "ephemeralCA: true\ncomponent: A/B"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("bad component: %v", err)
	}
}

func FuzzParsePrivateKey(f *testing.F) {
	f.Add([]byte("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"))
	f.Add([]byte("-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"))
	f.Add([]byte{0x30, 0x82, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := ParsePrivateKey(b)
		if err == nil && k == nil {
			t.Fatal("nil key without error")
		}
	})
}

func FuzzParseConfig(f *testing.F) {
	f.Add("ephemeralCA: true\ntenantCNPrefix: cmk-\n")
	f.Add("caCertPEM: x\ncaKeyPEM: y\n")
	f.Add("previousCACertPEM: x\nephemeralCA: true\n")
	f.Fuzz(func(t *testing.T, y string) {
		if strings.Contains(y, "File") { // never read arbitrary paths from fuzz input
			return
		}
		st, err := parseConfig(y, now)
		if err == nil && (st.caCert == nil || st.caKey == nil || st.maxValidity < 1) {
			t.Fatal("accepted a configuration without a usable CA")
		}
	})
}
