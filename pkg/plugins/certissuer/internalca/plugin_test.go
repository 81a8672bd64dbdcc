package internalca

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	certv1 "github.com/openkcm/plugin-sdk/proto/plugin/certificate_issuer/v1"
	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var now = time.Date(2026, 8, 1, 12, 0, 0, 0, time.UTC)

func clock() time.Time { return now }

// testCA is a CA cert + key in PEM, optionally signed by a parent.
type testCA struct {
	cert    *x509.Certificate
	key     crypto.Signer
	certPEM string
	keyPEM  string
}

func newTestCA(t *testing.T, name string, parent *testCA, mutate func(*x509.Certificate)) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ski, _ := subjectKeyID(key.Public())
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-24 * time.Hour),
		NotAfter:              now.AddDate(2, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		SubjectKeyId:          ski,
	}
	if mutate != nil {
		mutate(tmpl)
	}
	signerCert, signerKey := tmpl, crypto.Signer(key)
	if parent != nil {
		signerCert, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signerCert, key.Public(), signerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	return &testCA{
		cert: cert, key: key,
		certPEM: string(encodeCertPEM(der)),
		keyPEM:  string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})),
	}
}

func (ca *testCA) files(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	if err := os.WriteFile(certFile, []byte(ca.certPEM), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, []byte(ca.keyPEM), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func configure(t *testing.T, y string) *Plugin {
	t.Helper()
	p := New(WithClock(clock))
	if _, err := p.Configure(context.Background(), &configv1.ConfigureRequest{YamlConfiguration: y}); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	return p
}

var (
	rsaOnce sync.Once
	rsaKey  *rsa.PrivateKey
)

// cmkKey is what CMK sends: an RSA 3072 key as PKCS#1 PEM.
func cmkKey(t *testing.T) (*rsa.PrivateKey, []byte) {
	t.Helper()
	rsaOnce.Do(func() {
		var err error
		if rsaKey, err = rsa.GenerateKey(rand.Reader, 3072); err != nil {
			t.Fatal(err)
		}
	})
	return rsaKey, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)})
}

func days(n int64) *certv1.GetCertificateValidity {
	return &certv1.GetCertificateValidity{Value: n, Type: certv1.ValidityType_VALIDITY_TYPE_DAYS}
}

func parseChain(t *testing.T, chain string) []*x509.Certificate {
	t.Helper()
	certs, err := parseCertChainPEM([]byte(chain))
	if err != nil {
		t.Fatalf("chain: %v", err)
	}
	return certs
}

func TestIssueCMKShapedRequest(t *testing.T) {
	ca := newTestCA(t, "apeiro test CA", nil, nil)
	certFile, keyFile := ca.files(t)
	p := configure(t, `
caCertFile: `+certFile+`
caKeyFile: `+keyFile+`
tenantCNPrefix: cmk-
spiffeTrustDomain: apeiro.example
subject: {organization: [Apeiro], organizationalUnit: [CMK], country: [DE]}
`)
	key, keyPEM := cmkKey(t)
	resp, err := p.GetCertificate(context.Background(), &certv1.GetCertificateRequest{
		CommonName: "cmk-tenant-42",
		Locality:   []string{"eu-central"},
		Validity:   days(30),
		PrivateKey: &certv1.PrivateKey{Data: keyPEM},
	})
	if err != nil {
		t.Fatalf("GetCertificate: %v", err)
	}
	certs := parseChain(t, resp.GetCertificateChain())
	if len(certs) != 2 || !certs[1].Equal(ca.cert) {
		t.Fatalf("chain has %d certs, want leaf + CA", len(certs))
	}
	leaf := certs[0]
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("leaf does not verify as a client certificate: %v", err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Error("leaf must not be valid for server auth")
	}
	if !publicKeysEqual(leaf.PublicKey, key.Public()) {
		t.Error("leaf public key is not the request key's")
	}
	s := leaf.Subject
	if s.CommonName != "cmk-tenant-42" || strings.Join(s.Locality, ",") != "eu-central" ||
		strings.Join(s.Organization, ",") != "Apeiro" || strings.Join(s.OrganizationalUnit, ",") != "CMK" || strings.Join(s.Country, ",") != "DE" {
		t.Errorf("subject = %s", s)
	}
	var uris []string
	for _, u := range leaf.URIs {
		uris = append(uris, u.String())
	}
	if got := strings.Join(uris, " "); got != "spiffe://apeiro.example/tenant/tenant-42/component/cmk-tenant" {
		t.Errorf("URI SANs = %s", got)
	}
	if leaf.IsCA || leaf.KeyUsage != x509.KeyUsageDigitalSignature|x509.KeyUsageKeyEncipherment {
		t.Errorf("IsCA=%v KeyUsage=%v", leaf.IsCA, leaf.KeyUsage)
	}
	if !leaf.NotAfter.Equal(now.AddDate(0, 0, 30)) || !leaf.NotBefore.Equal(now.Add(-clockSkew)) {
		t.Errorf("validity %s .. %s", leaf.NotBefore, leaf.NotAfter)
	}
	if len(leaf.SubjectKeyId) == 0 || string(leaf.AuthorityKeyId) != string(ca.cert.SubjectKeyId) {
		t.Error("SKI/AKI missing or wrong")
	}
	if leaf.SerialNumber.BitLen() < 64 {
		t.Errorf("serial too short: %d bits", leaf.SerialNumber.BitLen())
	}
}

func TestKeyEncodings(t *testing.T) {
	p := configure(t, "ephemeralCA: true")
	ec, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	rsaK, _ := cmkKey(t)
	pkcs8 := func(k any) []byte { b, _ := x509.MarshalPKCS8PrivateKey(k); return b }
	sec1, _ := x509.MarshalECPrivateKey(ec)
	pemOf := func(typ string, b []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}) }
	ecParams := append(pemOf("EC PARAMETERS", []byte{0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22}), pemOf("EC PRIVATE KEY", sec1)...)

	tests := map[string]struct {
		data []byte
		pub  crypto.PublicKey
	}{
		"PKCS#1 PEM":          {pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaK)), rsaK.Public()},
		"PKCS#1 DER":          {x509.MarshalPKCS1PrivateKey(rsaK), rsaK.Public()},
		"PKCS#8 PEM RSA":      {pemOf("PRIVATE KEY", pkcs8(rsaK)), rsaK.Public()},
		"PKCS#8 PEM EC":       {pemOf("PRIVATE KEY", pkcs8(ec)), ec.Public()},
		"PKCS#8 DER EC":       {pkcs8(ec), ec.Public()},
		"SEC1 PEM":            {pemOf("EC PRIVATE KEY", sec1), ec.Public()},
		"SEC1 PEM w/ params":  {ecParams, ec.Public()},
		"SEC1 DER":            {sec1, ec.Public()},
		"PKCS#8 PEM Ed25519":  {pemOf("PRIVATE KEY", pkcs8(ed)), ed.Public()},
		"PEM with whitespace": {append([]byte("\n\n  "), pemOf("PRIVATE KEY", pkcs8(ec))...), ec.Public()},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			resp, err := p.GetCertificate(context.Background(), &certv1.GetCertificateRequest{
				CommonName: "tenant-1", Validity: days(7), PrivateKey: &certv1.PrivateKey{Data: tc.data}})
			if err != nil {
				t.Fatal(err)
			}
			leaf := parseChain(t, resp.GetCertificateChain())[0]
			if !publicKeysEqual(leaf.PublicKey, tc.pub) {
				t.Fatal("wrong public key in certificate")
			}
			if _, isRSA := tc.pub.(*rsa.PublicKey); !isRSA && leaf.KeyUsage&x509.KeyUsageKeyEncipherment != 0 {
				t.Error("keyEncipherment on a non-RSA key")
			}
		})
	}
}

func TestRejectsBadKeys(t *testing.T) {
	p := configure(t, "ephemeralCA: true")
	weak, _ := rsa.GenerateKey(rand.Reader, 1024)
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	p224DER, _ := x509.MarshalPKCS8PrivateKey(p224)
	_, keyPEM := cmkKey(t)
	tests := map[string]struct {
		data []byte
		want string
	}{
		"empty":         {nil, "empty"},
		"garbage":       {[]byte("not a key"), "cannot parse"},
		"bad PEM body":  {[]byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), "cannot parse"},
		"certificate":   {[]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), "unexpected PEM block"},
		"encrypted":     {[]byte("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"), "encrypted"},
		"legacy enc":    {[]byte("-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----\n"), "encrypted"},
		"rsa 1024":      {x509.MarshalPKCS1PrivateKey(weak), "1024 bits"},
		"P-224":         {p224DER, "P-224"},
		"huge":          {make([]byte, maxKeyInputBytes+1), "exceeds"},
		"truncated PEM": {keyPEM[:len(keyPEM)/2], "no private key PEM block"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := p.GetCertificate(context.Background(), &certv1.GetCertificateRequest{
				CommonName: "tenant-1", Validity: days(7), PrivateKey: &certv1.PrivateKey{Data: tc.data}})
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want InvalidArgument with %q", err, tc.want)
			}
		})
	}
	// Missing private_key message entirely.
	if _, err := p.GetCertificate(context.Background(), &certv1.GetCertificateRequest{CommonName: "tenant-1", Validity: days(7)}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("nil private_key: %v", err)
	}
}

func TestRejectsHostileNames(t *testing.T) {
	p := configure(t, "ephemeralCA: true\ntenantCNPrefix: cmk-")
	_, keyPEM := cmkKey(t)
	tests := map[string]struct {
		cn       string
		locality []string
		want     string
	}{
		"empty CN":         {"", nil, "required"},
		"long CN":          {"cmk-" + strings.Repeat("a", 61), nil, "longer than 64"},
		"space":            {"cmk-a b", nil, "only [A-Za-z0-9._-]"},
		"slash":            {"cmk-a/b", nil, "only"},
		"comma injection":  {"cmk-a,O=evil", nil, "only"},
		"NUL":              {"cmk-a\x00", nil, "only"},
		"newline":          {"cmk-a\n", nil, "only"},
		"unicode":          {"cmk-tënant", nil, "only"},
		"wildcard":         {"cmk-*", nil, "only"},
		"leading dash":     {"-cmk-a", nil, "only"},
		"no prefix":        {"tenant-1", nil, "tenant prefix"},
		"prefix only":      {"cmk-", nil, "empty"},
		"tenant dot start": {"cmk-.x", nil, "does not start alphanumeric"},
		"empty locality":   {"cmk-t1", []string{""}, "empty"},
		"ctrl locality":    {"cmk-t1", []string{"eu\x1b[31m"}, "non-printable"},
		"long locality":    {"cmk-t1", []string{strings.Repeat("l", 129)}, "longer than 128"},
		"many localities":  {"cmk-t1", make([]string, 9), "at most 8"},
		"bad utf8":         {"cmk-t1", []string{"\xff"}, "UTF-8"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := p.GetCertificate(context.Background(), &certv1.GetCertificateRequest{
				CommonName: tc.cn, Locality: tc.locality, Validity: days(7), PrivateKey: &certv1.PrivateKey{Data: keyPEM}})
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want InvalidArgument with %q", err, tc.want)
			}
		})
	}
}

func TestValidity(t *testing.T) {
	ca := newTestCA(t, "short CA", nil, func(c *x509.Certificate) { c.NotAfter = now.AddDate(0, 0, 60) })
	p := configure(t, "maxValidityDays: 400\ncaCertPEM: |\n  "+strings.ReplaceAll(strings.TrimSpace(ca.certPEM), "\n", "\n  ")+
		"\ncaKeyPEM: |\n  "+strings.ReplaceAll(strings.TrimSpace(ca.keyPEM), "\n", "\n  "))
	_, keyPEM := cmkKey(t)
	v := func(n int64, typ certv1.ValidityType) *certv1.GetCertificateValidity {
		return &certv1.GetCertificateValidity{Value: n, Type: typ}
	}
	tests := map[string]struct {
		v     *certv1.GetCertificateValidity
		code  codes.Code
		until time.Time
	}{
		"7 days":      {days(7), codes.OK, now.AddDate(0, 0, 7)},
		"1 month":     {v(1, certv1.ValidityType_VALIDITY_TYPE_MONTHS), codes.OK, now.AddDate(0, 1, 0)},
		"missing":     {nil, codes.InvalidArgument, time.Time{}},
		"zero":        {days(0), codes.InvalidArgument, time.Time{}},
		"negative":    {days(-1), codes.InvalidArgument, time.Time{}},
		"huge":        {days(1 << 40), codes.InvalidArgument, time.Time{}},
		"unspecified": {v(5, certv1.ValidityType_VALIDITY_TYPE_UNSPECIFIED), codes.InvalidArgument, time.Time{}},
		"over max":    {v(2, certv1.ValidityType_VALIDITY_TYPE_YEARS), codes.InvalidArgument, time.Time{}},
		"past CA":     {v(3, certv1.ValidityType_VALIDITY_TYPE_MONTHS), codes.FailedPrecondition, time.Time{}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			resp, err := p.GetCertificate(context.Background(), &certv1.GetCertificateRequest{
				CommonName: "tenant-1", Validity: tc.v, PrivateKey: &certv1.PrivateKey{Data: keyPEM}})
			if status.Code(err) != tc.code {
				t.Fatalf("err = %v, want %v", err, tc.code)
			}
			if tc.code == codes.OK {
				if leaf := parseChain(t, resp.GetCertificateChain())[0]; !leaf.NotAfter.Equal(tc.until) {
					t.Fatalf("NotAfter = %s, want %s", leaf.NotAfter, tc.until)
				}
			}
		})
	}
	// Default max is 90 days.
	d := configure(t, "ephemeralCA: true")
	if _, err := d.GetCertificate(context.Background(), &certv1.GetCertificateRequest{CommonName: "t-1", Validity: days(91),
		PrivateKey: &certv1.PrivateKey{Data: keyPEM}}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("91 days with default max: %v", err)
	}
}

func TestIntermediateChain(t *testing.T) {
	root := newTestCA(t, "root", nil, nil)
	inter := newTestCA(t, "intermediate", root, nil)
	p := configure(t, "caCertPEM: |\n  "+strings.ReplaceAll(strings.TrimSpace(inter.certPEM+root.certPEM), "\n", "\n  ")+
		"\ncaKeyPEM: |\n  "+strings.ReplaceAll(strings.TrimSpace(inter.keyPEM), "\n", "\n  "))
	_, keyPEM := cmkKey(t)
	resp, err := p.GetCertificate(context.Background(), &certv1.GetCertificateRequest{CommonName: "tenant-1", Validity: days(7),
		PrivateKey: &certv1.PrivateKey{Data: keyPEM}})
	if err != nil {
		t.Fatal(err)
	}
	certs := parseChain(t, resp.GetCertificateChain())
	if len(certs) != 3 || !certs[1].Equal(inter.cert) || !certs[2].Equal(root.cert) {
		t.Fatalf("chain length %d, want leaf, intermediate, root", len(certs))
	}
	pool, inters := x509.NewCertPool(), x509.NewCertPool()
	pool.AddCert(root.cert)
	inters.AddCert(certs[1])
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inters, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatal(err)
	}
}

func TestConfigure(t *testing.T) {
	ca := newTestCA(t, "ca", nil, nil)
	other := newTestCA(t, "other", nil, nil)
	notCA := newTestCA(t, "leafish", nil, func(c *x509.Certificate) { c.IsCA = false; c.KeyUsage = x509.KeyUsageDigitalSignature })
	expired := newTestCA(t, "expired", nil, func(c *x509.Certificate) { c.NotAfter = now.Add(-time.Hour) })
	noSign := newTestCA(t, "nosign", nil, func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageDigitalSignature })
	certFile, keyFile := ca.files(t)
	_, otherKey := other.files(t)
	nf, _ := notCA.files(t)
	_, nk := notCA.files(t)
	ef, ek := expired.files(t)
	sf, sk := noSign.files(t)

	tests := map[string]struct{ yaml, want string }{
		"empty":             {"", "a CA is required"},
		"bad yaml":          {"caCertFile: [", "decode YAML"},
		"unknown field":     {"caCert: x", "unknown field"},
		"two sources":       {"ephemeralCA: true\ncaCertFile: " + certFile + "\ncaKeyFile: " + keyFile, "exactly one"},
		"cert without key":  {"caCertFile: " + certFile, "both be set"},
		"inline half":       {"caKeyPEM: x", "both be set"},
		"missing file":      {"caCertFile: /nonexistent/ca.crt\ncaKeyFile: " + keyFile, "read caCertFile"},
		"key mismatch":      {"caCertFile: " + certFile + "\ncaKeyFile: " + otherKey, "does not match"},
		"not a CA":          {"caCertFile: " + nf + "\ncaKeyFile: " + nk, "not a CA"},
		"expired CA":        {"caCertFile: " + ef + "\ncaKeyFile: " + ek, "not valid now"},
		"no certSign":       {"caCertFile: " + sf + "\ncaKeyFile: " + sk, "keyCertSign"},
		"key as cert":       {"caCertFile: " + keyFile + "\ncaKeyFile: " + keyFile, "no CERTIFICATE"},
		"max too large":     {"ephemeralCA: true\nmaxValidityDays: 9999", "maxValidityDays"},
		"max negative":      {"ephemeralCA: true\nmaxValidityDays: -1", "maxValidityDays"},
		"bad prefix":        {"ephemeralCA: true\ntenantCNPrefix: 'a b'", "tenantCNPrefix"},
		"long prefix":       {"ephemeralCA: true\ntenantCNPrefix: " + strings.Repeat("p", 25), "tenantCNPrefix"},
		"bad trust domain":  {"ephemeralCA: true\nspiffeTrustDomain: Apeiro/x", "spiffeTrustDomain"},
		"bad subject value": {"ephemeralCA: true\nsubject: {organization: ['']}", "subject"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p := New(WithClock(clock))
			_, err := p.Configure(context.Background(), &configv1.ConfigureRequest{YamlConfiguration: tc.yaml})
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want InvalidArgument with %q", err, tc.want)
			}
			if p.CACertificate() != nil {
				t.Fatal("failed Configure installed a CA")
			}
		})
	}
}

func TestUnconfiguredAndEphemeral(t *testing.T) {
	_, keyPEM := cmkKey(t)
	req := &certv1.GetCertificateRequest{CommonName: "tenant-1", Validity: days(7), PrivateKey: &certv1.PrivateKey{Data: keyPEM}}
	p := New(WithClock(clock))
	if _, err := p.GetCertificate(context.Background(), req); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("unconfigured: %v", err)
	}
	if _, err := p.Configure(context.Background(), &configv1.ConfigureRequest{YamlConfiguration: "ephemeralCA: true"}); err != nil {
		t.Fatal(err)
	}
	first := p.CACertificate()
	resp, err := p.GetCertificate(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	certs := parseChain(t, resp.GetCertificateChain())
	if !certs[1].Equal(first) || certs[0].CheckSignatureFrom(first) != nil {
		t.Fatal("leaf not signed by the ephemeral CA")
	}
	// A rejected reconfiguration keeps the CA.
	if _, err := p.Configure(context.Background(), &configv1.ConfigureRequest{}); err == nil {
		t.Fatal("Configure(\"\") must fail")
	}
	if !p.CACertificate().Equal(first) {
		t.Fatal("CA replaced by a failed Configure")
	}
}

func TestConcurrentConfigureAndIssue(t *testing.T) {
	p := configure(t, "ephemeralCA: true")
	_, keyPEM := cmkKey(t)
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			for range 5 {
				if _, err := p.Configure(context.Background(), &configv1.ConfigureRequest{YamlConfiguration: "ephemeralCA: true"}); err != nil {
					t.Error(err)
				}
			}
		})
		wg.Go(func() {
			for range 10 {
				resp, err := p.GetCertificate(context.Background(), &certv1.GetCertificateRequest{CommonName: "tenant-1", Validity: days(7),
					PrivateKey: &certv1.PrivateKey{Data: keyPEM}})
				if err != nil {
					t.Error(err)
					return
				}
				certs := parseChain(t, resp.GetCertificateChain())
				if err := certs[0].CheckSignatureFrom(certs[1]); err != nil {
					t.Errorf("leaf and CA of one response disagree: %v", err)
				}
			}
		})
	}
	wg.Wait()
}
