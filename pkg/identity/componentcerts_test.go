package identity

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	certv1 "github.com/openkcm/plugin-sdk/proto/plugin/certificate_issuer/v1"
	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"

	"github.com/apeirora/apeiro-cmk/pkg/mtls"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/certissuer/internalca"
)

// componentCA is a CA whose key the test holds, so it can also sign what the issuer never would (a CN naming another
// tenant than the SAN, an expired certificate) — the certificates an attacker with a leaked or old certificate has.
type componentCA struct {
	cert    *x509.Certificate
	key     crypto.Signer
	certPEM []byte
	keyPEM  []byte
}

func newComponentCA(t testing.TB, cn string) *componentCA {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(30 * 24 * time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	return &componentCA{cert: cert, key: key, certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})}
}

// sign issues a client certificate with any CN, URI SAN and validity.
func (c *componentCA) sign(t testing.TB, cn, uri string, notBefore, notAfter time.Time) tls.Certificate {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, _ := url.Parse(uri)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: notBefore, NotAfter: notAfter, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, URIs: []*url.URL{u}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, key.Public(), c.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// issueComponent has the internal CA plugin sign a certificate exactly as CMK asks for one.
func issueComponent(t testing.TB, p *internalca.Plugin, tenant string) tls.Certificate {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	resp, err := p.GetCertificate(context.Background(), &certv1.GetCertificateRequest{CommonName: "cmk-" + tenant, Locality: []string{"eu"},
		Validity:   &certv1.GetCertificateValidity{Value: 7, Type: certv1.ValidityType_VALIDITY_TYPE_DAYS},
		PrivateKey: &certv1.PrivateKey{Data: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})}})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair([]byte(resp.GetCertificateChain()), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}))
	if err != nil {
		t.Fatal(err)
	}
	return pair
}

func newInternalCA(t testing.TB, yaml string) *internalca.Plugin {
	p := internalca.New()
	if _, err := p.Configure(context.Background(), &configv1.ConfigureRequest{YamlConfiguration: yaml}); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestWorkloadKeysAcceptComponentCertificates runs the workload key endpoint over real TLS with client certificates
// from the CMK certificate issuer (the internal CA plugin, as CMK calls it) beside X.509-SVIDs: the tenant comes from
// the URI SAN only, so a certificate of tenant acme is refused for globex's key whatever its CN says, and a
// certificate of another CA or an expired one is not authenticated at all.
func TestWorkloadKeysAcceptComponentCertificates(t *testing.T) {
	good, _, sv := newSPIFFEFixture(t)
	ca := newComponentCA(t, "apeiro component CA")
	issuer := newInternalCA(t, "caCertPEM: |\n  "+strings.ReplaceAll(strings.TrimSpace(string(ca.certPEM)), "\n", "\n  ")+
		"\ncaKeyPEM: |\n  "+strings.ReplaceAll(strings.TrimSpace(string(ca.keyPEM)), "\n", "\n  ")+
		"\ntenantCNPrefix: cmk-\nspiffeTrustDomain: apeiro.local\ncomponent: crypto-manager\n")
	other := newInternalCA(t, "ephemeralCA: true\ntenantCNPrefix: cmk-\nspiffeTrustDomain: apeiro.local\ncomponent: crypto-manager\n")
	cv, err := mtls.NewVerifier("apeiro.local", issuer.TrustBundle())
	if err != nil {
		t.Fatal(err)
	}

	const acmeID, globexID = "spiffe://apeiro.local/tenant/acme/component/crypto-manager", "spiffe://apeiro.local/tenant/globex/component/crypto-manager"
	svidID := "spiffe://apeiro.test/tenant/acme/ns/payments/sa/api"
	keys := &fakeKeys{grants: map[string]*KeyGrant{
		"acme-ns/db-key":  {Namespace: "acme-ns", Name: "db-key", Tenant: "acme", WorkloadIdentities: []string{acmeID, svidID}},
		"acme-ns/other":   {Namespace: "acme-ns", Name: "other", Tenant: "acme", WorkloadIdentities: []string{"spiffe://apeiro.local/tenant/acme/component/crypto-migrate"}},
		"globex-ns/g-key": {Namespace: "globex-ns", Name: "g-key", Tenant: "globex", WorkloadIdentities: []string{globexID, acmeID}},
	}}
	serve := func(components ComponentVerifier) string {
		srv := httptest.NewUnstartedServer(&WorkloadKeyHandler{SPIFFE: sv, Components: components, Keys: keys, Service: keys, Log: quietLog()})
		srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert, MinVersion: tls.VersionTLS12}
		srv.StartTLS()
		t.Cleanup(srv.Close)
		return srv.URL
	}
	withComponents, svidsOnly := serve(cv), serve(nil)

	acme := issueComponent(t, issuer, "acme")
	leaf, _ := x509.ParseCertificate(acme.Certificate[0])
	if leaf.Subject.CommonName != "cmk-acme" || len(leaf.URIs) != 1 || leaf.URIs[0].String() != acmeID {
		t.Fatalf("issued certificate: CN %q, URIs %v", leaf.Subject.CommonName, leaf.URIs)
	}
	svidChain, svidKey := good.svid(t, svidID)
	svid := tls.Certificate{Certificate: [][]byte{svidChain[0].Raw}, PrivateKey: svidKey}
	now := time.Now()

	for _, tc := range []struct {
		name   string
		server string
		cert   tls.Certificate
		path   string
		code   int
	}{
		{"component certificate listed for its tenant's key", withComponents, acme, "acme-ns/db-key", 200},
		{"X.509-SVIDs keep working beside component certificates", withComponents, svid, "acme-ns/db-key", 200},
		{"tenant acme's certificate for globex's key, even though the key lists it", withComponents, acme, "globex-ns/g-key", 403},
		{"tenant acme's certificate whose CN says globex", withComponents, ca.sign(t, "cmk-globex", acmeID, now.Add(-time.Minute), now.Add(time.Hour)), "globex-ns/g-key", 403},
		{"same tenant, component not listed", withComponents, acme, "acme-ns/other", 403},
		{"certificate of another CA with the same SPIFFE ID", withComponents, issueComponent(t, other, "acme"), "acme-ns/db-key", 401},
		{"expired certificate of the trusted CA", withComponents, ca.sign(t, "cmk-acme", acmeID, now.Add(-2*time.Hour), now.Add(-time.Hour)), "acme-ns/db-key", 401},
		{"not yet valid certificate of the trusted CA", withComponents, ca.sign(t, "cmk-acme", acmeID, now.Add(time.Hour), now.Add(2*time.Hour)), "acme-ns/db-key", 401},
		{"certificate naming no tenant (CN only)", withComponents, ca.sign(t, "cmk-acme", "spiffe://apeiro.local/workload/x", now.Add(-time.Minute), now.Add(time.Hour)), "acme-ns/db-key", 401},
		{"certificate in another trust domain", withComponents, ca.sign(t, "cmk-acme", "spiffe://elsewhere.example/tenant/acme/component/crypto-manager", now.Add(-time.Minute), now.Add(time.Hour)), "acme-ns/db-key", 401},
		{"component certificates off (default)", svidsOnly, acme, "acme-ns/db-key", 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
				MinVersion: tls.VersionTLS12, InsecureSkipVerify: true, //nolint:gosec // the client side is not under test
				Certificates: []tls.Certificate{tc.cert}}}}
			resp, err := c.Post(tc.server+WorkloadKeyPath+tc.path+"/unwrap", "application/json", nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.code {
				t.Fatalf("HTTP %d (%s), want %d", resp.StatusCode, strings.TrimSpace(string(body)), tc.code)
			}
		})
	}
}
