// Package contracttest is the reusable contract suite for
// CertificateIssuerService plugins. Run loads any implementation through the
// real plugin-sdk catalog — as an in-process builtin and as an external
// go-plugin process — configures it from YAML and checks what CMK relies on
// (CMK internal/manager/certificate.go; docs/plugins.md):
//
//   - a CMK-shaped request (RSA 3072 key as PKCS#1 PEM, common_name =
//     prefix+tenantID, locality = [region], validity {N, DAYS}) yields a PEM
//     chain whose first certificate is a client certificate for exactly that
//     key: Subject CN and L as requested, ExtKeyUsage clientAuth, not a CA,
//     NotAfter ≈ now + N days, chaining to Roots (or to the chain's last
//     certificate);
//   - the tenant ID is carried in a URI SAN (TenantURI), FR-2.3;
//   - hostile common names, missing or unparsable keys and non-positive
//     validity are refused with InvalidArgument; a validity over the
//     plugin's maximum (ExcessiveValidity) too;
//   - optionally (ExtraKeyFormats), PKCS#8 RSA, PKCS#8 ECDSA and SEC 1 keys;
//   - Configure concurrent with issuance, Configure("") behaviour
//     (ConfigOptional), invalid YAML rejected at load with a clear error,
//     go-plugin health SERVING, clean shutdown.
package contracttest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/openkcm/plugin-sdk/pkg/catalog"
	certv1 "github.com/openkcm/plugin-sdk/proto/plugin/certificate_issuer/v1"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/host"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/plugintest"
)

// DefaultName is the profile name used when Config.Name is empty.
const DefaultName = "APEIRO_PKI"

// Config describes the implementation under test.
type Config struct {
	// Name is the profile (and builtin) name; default APEIRO_PKI.
	Name string
	// BuiltIn returns a fresh builtin registered under Name. Nil skips builtin mode.
	BuiltIn func() catalog.BuiltInPlugin
	// BinaryPackage is the external plugin's main package. Empty skips external mode.
	BinaryPackage string
	Args          []string

	// YAML configures a working issuer.
	YAML string
	// ConfigOptional: Configure("") must succeed; otherwise it must fail
	// (a CA-backed issuer usually cannot work without configuration).
	// EmptyConfigMessage, if set, must appear in the Configure("") error.
	ConfigOptional     bool
	EmptyConfigMessage string
	// InvalidYAML must be rejected (default: broken YAML); InvalidYAMLMessage,
	// if set, must appear in the load error.
	InvalidYAML        string
	InvalidYAMLMessage string

	// CommonName is a valid CN under YAML (CMK: DefaultTenantCertPrefix + tenantID).
	CommonName string
	// TenantURI, if set, must be among the leaf's URI SANs.
	TenantURI string
	// Locality is sent as CMK sends the landscape region; default [eu-central].
	Locality []string
	// ValidityDays is the requested validity; default 30 (CMK: 7..30).
	ValidityDays int64
	// Roots verifies the leaf; nil trusts the last certificate of the chain.
	Roots *x509.CertPool
	// HostileCommonNames must be refused with InvalidArgument; default a set
	// of empty, over-long, injection and wildcard names.
	HostileCommonNames []string
	// ExcessiveValidity, if set, exceeds the configured maximum and must be
	// refused with InvalidArgument.
	ExcessiveValidity *certv1.GetCertificateValidity
	// ExtraKeyFormats: PKCS#8 (RSA, ECDSA P-256) and SEC 1 keys are accepted too.
	ExtraKeyFormats bool
}

func (c *Config) defaults() {
	if c.Name == "" {
		c.Name = DefaultName
	}
	if c.InvalidYAML == "" {
		c.InvalidYAML = "{{{ this is: [not yaml"
	}
	if len(c.Locality) == 0 {
		c.Locality = []string{"eu-central"}
	}
	if c.ValidityDays == 0 {
		c.ValidityDays = 30
	}
	if c.HostileCommonNames == nil {
		c.HostileCommonNames = []string{
			"",
			strings.Repeat("a", 65),
			c.CommonName + ",O=Evil",
			c.CommonName + "\nCN=evil",
			c.CommonName + "\x00",
			"*." + c.CommonName,
			"../" + c.CommonName,
			c.CommonName + " admin",
		}
	}
}

func (c *Config) spec(yaml string) plugintest.Spec {
	return plugintest.Spec{
		Type: host.TypeCertificateIssuer, Name: c.Name, YAML: yaml,
		BuiltIn: c.BuiltIn, Package: c.BinaryPackage, Args: c.Args,
	}
}

var (
	keyOnce sync.Once
	rsaKey  *rsa.PrivateKey
	keyErr  error
)

// tenantKey is what CMK generates per tenant: RSA 3072 (generated once per
// test process; it is slow).
func tenantKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	keyOnce.Do(func() { rsaKey, keyErr = rsa.GenerateKey(rand.Reader, 3072) })
	if keyErr != nil {
		t.Fatal(keyErr)
	}
	return rsaKey
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// Run runs the suite in every load mode the Config supports.
func Run(t *testing.T, c Config) {
	t.Helper()
	c.defaults()
	if c.CommonName == "" {
		t.Fatal("contracttest: Config.CommonName is required")
	}
	for _, mode := range c.spec("").Modes() {
		t.Run(string(mode), func(t *testing.T) {
			l := plugintest.Load(t, c.spec(c.YAML), mode)
			ci, err := l.CertificateIssuer()
			if err != nil {
				t.Fatal(err)
			}
			t.Run("cmk-request", func(t *testing.T) {
				key := tenantKey(t)
				issueAndCheck(t, &c, ci, pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(key)), key.Public())
			})
			if c.ExtraKeyFormats {
				t.Run("key-formats", func(t *testing.T) { checkKeyFormats(t, &c, ci) })
			}
			t.Run("rejects", func(t *testing.T) { checkRejects(t, &c, ci) })
			t.Run("reconfigure-under-load", func(t *testing.T) { checkReconfigure(t, &c, l, ci) })
			checkConfigLifecycle(t, &c, mode)
			t.Run("health", func(t *testing.T) { plugintest.CheckHealth(t, l) })
			t.Run("shutdown", func(t *testing.T) { plugintest.CheckShutdown(t, l) })
		})
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

func (c *Config) request(keyData []byte) *certv1.GetCertificateRequest {
	return &certv1.GetCertificateRequest{
		CommonName: c.CommonName,
		Locality:   c.Locality,
		Validity:   &certv1.GetCertificateValidity{Value: c.ValidityDays, Type: certv1.ValidityType_VALIDITY_TYPE_DAYS},
		PrivateKey: &certv1.PrivateKey{Data: keyData},
	}
}

// parseChain decodes the PEM chain the way CMK does (PEM blocks, in order).
func parseChain(t *testing.T, chain string) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	rest := []byte(chain)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			t.Fatalf("certificate_chain contains a %q PEM block", b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatalf("certificate_chain block %d: %v", len(out), err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		t.Fatalf("certificate_chain holds no PEM certificate: %q", chain)
	}
	if strings.TrimSpace(string(rest)) != "" {
		t.Fatalf("certificate_chain has trailing non-PEM data")
	}
	return out
}

func issueAndCheck(t *testing.T, c *Config, ci certv1.CertificateIssuerServiceClient, keyData []byte, pub crypto.PublicKey) {
	t.Helper()
	before := time.Now()
	resp, err := ci.GetCertificate(ctx(t), c.request(keyData))
	if err != nil {
		t.Fatalf("GetCertificate: %v", err)
	}
	chain := parseChain(t, resp.GetCertificateChain())
	leaf := chain[0]

	type equaler interface{ Equal(crypto.PublicKey) bool }
	if e, ok := leaf.PublicKey.(equaler); !ok || !e.Equal(pub) {
		t.Fatal("leaf certificate is not for the public half of the supplied private key")
	}
	if leaf.Subject.CommonName != c.CommonName {
		t.Fatalf("Subject CN = %q, want %q", leaf.Subject.CommonName, c.CommonName)
	}
	if !slices.Equal(leaf.Subject.Locality, c.Locality) {
		t.Fatalf("Subject L = %v, want %v", leaf.Subject.Locality, c.Locality)
	}
	if leaf.IsCA {
		t.Fatal("leaf is a CA certificate")
	}
	if !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		t.Fatalf("ExtKeyUsage %v lacks clientAuth", leaf.ExtKeyUsage)
	}
	wantEnd := before.AddDate(0, 0, int(c.ValidityDays))
	if d := leaf.NotAfter.Sub(wantEnd); d < -10*time.Minute || d > 10*time.Minute {
		t.Fatalf("NotAfter = %s, want ≈ %s", leaf.NotAfter, wantEnd)
	}
	if leaf.NotBefore.After(before.Add(time.Minute)) {
		t.Fatalf("NotBefore %s is in the future", leaf.NotBefore)
	}
	if c.TenantURI != "" {
		var uris []string
		for _, u := range leaf.URIs {
			uris = append(uris, u.String())
		}
		if !slices.Contains(uris, c.TenantURI) {
			t.Fatalf("URI SANs %v lack the tenant URI %q", uris, c.TenantURI)
		}
	}
	roots, inters := c.Roots, x509.NewCertPool()
	if roots == nil {
		roots = x509.NewCertPool()
		roots.AddCert(chain[len(chain)-1])
	}
	for _, ic := range chain[1:] {
		inters.AddCert(ic)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("leaf does not verify as a client certificate: %v", err)
	}
}

func checkKeyFormats(t *testing.T, c *Config, ci certv1.CertificateIssuerServiceClient) {
	rk := tenantKey(t)
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaPKCS8, _ := x509.MarshalPKCS8PrivateKey(rk)
	ecPKCS8, _ := x509.MarshalPKCS8PrivateKey(ec)
	sec1, _ := x509.MarshalECPrivateKey(ec)
	for name, k := range map[string]struct {
		data []byte
		pub  crypto.PublicKey
	}{
		"PKCS#8 RSA":   {pemBlock("PRIVATE KEY", rsaPKCS8), rk.Public()},
		"PKCS#8 ECDSA": {pemBlock("PRIVATE KEY", ecPKCS8), ec.Public()},
		"SEC 1 ECDSA":  {pemBlock("EC PRIVATE KEY", sec1), ec.Public()},
	} {
		t.Run(name, func(t *testing.T) { issueAndCheck(t, c, ci, k.data, k.pub) })
	}
}

func checkRejects(t *testing.T, c *Config, ci certv1.CertificateIssuerServiceClient) {
	key := pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(tenantKey(t)))
	want := func(what string, req *certv1.GetCertificateRequest) {
		t.Helper()
		_, err := ci.GetCertificate(ctx(t), req)
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: got %v, want InvalidArgument", what, err)
		}
	}
	for _, cn := range c.HostileCommonNames {
		req := c.request(key)
		req.CommonName = cn
		want("common_name "+strings.ToValidUTF8(strings.ReplaceAll(cn, "\x00", `\0`), "?"), req)
	}
	noKey := c.request(nil)
	noKey.PrivateKey = nil
	want("missing private_key", noKey)
	want("unparsable private_key", c.request([]byte("-----BEGIN RSA PRIVATE KEY-----\nZm9v\n-----END RSA PRIVATE KEY-----\n")))
	for _, v := range []*certv1.GetCertificateValidity{
		nil,
		{Value: 0, Type: certv1.ValidityType_VALIDITY_TYPE_DAYS},
		{Value: -5, Type: certv1.ValidityType_VALIDITY_TYPE_DAYS},
		{Value: 5, Type: certv1.ValidityType_VALIDITY_TYPE_UNSPECIFIED},
	} {
		req := c.request(key)
		req.Validity = v
		want("validity "+v.String(), req)
	}
	if c.ExcessiveValidity != nil {
		req := c.request(key)
		req.Validity = c.ExcessiveValidity
		want("validity over the maximum", req)
	}
}

func checkReconfigure(t *testing.T, c *Config, l *plugintest.Loaded, ci certv1.CertificateIssuerServiceClient) {
	key := pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(tenantKey(t)))
	plugintest.CheckReconfigureUnderLoad(t, l, func(ctx context.Context) error {
		_, err := ci.GetCertificate(ctx, c.request(key))
		return err
	})
}

func checkConfigLifecycle(t *testing.T, c *Config, mode plugintest.Mode) {
	plugintest.CheckConfigLifecycle(t, plugintest.ConfigCheck{Spec: c.spec, Optional: c.ConfigOptional,
		EmptyMessage: c.EmptyConfigMessage, InvalidYAML: c.InvalidYAML, InvalidYAMLMessage: c.InvalidYAMLMessage}, mode)
}
