package internalca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/apeirora/apeiro-cmk/pkg/tenantid"
)

const (
	// DefaultTrustDomain is the SPIFFE trust domain of the tenant URI SAN when spiffeTrustDomain is not set.
	DefaultTrustDomain = "apeiro.local"
	// DefaultComponent is the component segment of the tenant URI SAN when component is not set.
	DefaultComponent       = "cmk-tenant"
	defaultMaxValidityDays = 90
	maxAllowedValidityDays = 825 // hard ceiling, whatever the YAML says
	ephemeralCALifetime    = 365 * 24 * time.Hour
)

// Config is the YAML accepted by Configure. Unknown fields are rejected.
// A CA is required: give caCertFile+caKeyFile, caCertPEM+caKeyPEM, or set
// ephemeralCA: true (an in-memory CA generated at Configure time, for
// development and tests — every Configure call creates a new one).
//
//	caCertFile: /etc/apeiro/ca/tls.crt   # PEM; the CA first, intermediates after it
//	caKeyFile: /etc/apeiro/ca/tls.key    # PEM: PKCS#8, PKCS#1 or SEC 1 (EC)
//	maxValidityDays: 90                  # longest leaf validity granted (≤ 825)
//	tenantCNPrefix: "cmk-"               # CN = prefix + tenantID; CNs without it are refused
//	spiffeTrustDomain: apeiro.example    # trust domain of the tenant URI SAN (default apeiro.local)
//	component: cmk-tenant                # component segment of the tenant URI SAN (default cmk-tenant)
//	legacyTenantURN: false               # also add the former urn:apeiro:tenant:<tenantID> SAN
//	previousCACertFiles: [/etc/apeiro/ca-old/tls.crt]  # CAs still trusted during a rollover (TrustBundle)
//	previousCACertPEM: "..."             # the same, inline
//	subject:                             # optional fixed subject attributes
//	  organization: [Apeiro]
//	  organizationalUnit: [CMK]
//	  country: [DE]
type Config struct {
	CACertFile        string        `json:"caCertFile,omitempty"`
	CAKeyFile         string        `json:"caKeyFile,omitempty"`
	CACertPEM         string        `json:"caCertPEM,omitempty"`
	CAKeyPEM          string        `json:"caKeyPEM,omitempty"`
	EphemeralCA       bool          `json:"ephemeralCA,omitempty"`
	MaxValidityDays   int           `json:"maxValidityDays,omitempty"`
	TenantCNPrefix    string        `json:"tenantCNPrefix,omitempty"`
	SpiffeTrustDomain string        `json:"spiffeTrustDomain,omitempty"`
	Component         string        `json:"component,omitempty"`
	LegacyTenantURN   bool          `json:"legacyTenantURN,omitempty"`
	PreviousCAFiles   []string      `json:"previousCACertFiles,omitempty"`
	PreviousCAPEM     string        `json:"previousCACertPEM,omitempty"`
	Subject           SubjectConfig `json:"subject,omitempty"`
}

// SubjectConfig holds subject attributes added to every certificate.
type SubjectConfig struct {
	Organization       []string `json:"organization,omitempty"`
	OrganizationalUnit []string `json:"organizationalUnit,omitempty"`
	Country            []string `json:"country,omitempty"`
}

// issuerState is an immutable, validated configuration with a loaded CA.
type issuerState struct {
	caCert        *x509.Certificate
	caKey         crypto.Signer
	chainPEM      string // CA and intermediates, PEM, appended after the leaf
	maxValidity   int    // days
	prefix        string
	trustDomain   string
	subject       SubjectConfig
	ephemeralCA   bool
	caFingerprint string
	component     string
	legacyURN     bool
	// previous are CAs that are no longer used to sign but still trusted (rollover); see TrustBundle.
	previous []*x509.Certificate
	// caFiles/caStamp let GetCertificate notice a CA rotated on disk (e.g. a cert-manager-renewed Secret).
	caFiles [2]string
	caStamp string
	raw     string
}

var spiffeTrustDomainRE = regexp.MustCompile(`^[a-z0-9._-]{1,255}$`)

// ErrNoCA is returned by Configure("") and any configuration without a CA.
var ErrNoCA = errors.New("a CA is required: set caCertFile and caKeyFile, caCertPEM and caKeyPEM, or ephemeralCA: true")

func parseConfig(raw string, now time.Time) (*issuerState, error) {
	cfg := &Config{}
	if strings.TrimSpace(raw) != "" {
		if err := yaml.UnmarshalStrict([]byte(raw), cfg); err != nil {
			return nil, fmt.Errorf("decode YAML: %w", err)
		}
	}
	st := &issuerState{
		maxValidity: cfg.MaxValidityDays,
		prefix:      cfg.TenantCNPrefix,
		trustDomain: cfg.SpiffeTrustDomain,
		subject:     cfg.Subject,
		component:   cfg.Component,
		legacyURN:   cfg.LegacyTenantURN,
		raw:         raw,
	}
	if st.trustDomain == "" {
		st.trustDomain = DefaultTrustDomain
	}
	if st.component == "" {
		st.component = DefaultComponent
	}
	if err := tenantid.ValidateTenant(st.component); err != nil {
		return nil, fmt.Errorf("component %q: lower-case DNS label characters only", st.component)
	}
	if st.maxValidity == 0 {
		st.maxValidity = defaultMaxValidityDays
	}
	if st.maxValidity < 1 || st.maxValidity > maxAllowedValidityDays {
		return nil, fmt.Errorf("maxValidityDays must be between 1 and %d", maxAllowedValidityDays)
	}
	if st.prefix != "" {
		if len(st.prefix) > 24 || !cnRE.MatchString(st.prefix) {
			return nil, fmt.Errorf("tenantCNPrefix %q: at most 24 characters from [A-Za-z0-9._-], starting alphanumeric", st.prefix)
		}
	}
	if !spiffeTrustDomainRE.MatchString(st.trustDomain) {
		return nil, fmt.Errorf("spiffeTrustDomain %q: lower-case letters, digits, '.', '_' and '-' only", st.trustDomain)
	}
	for _, attrs := range [][]string{cfg.Subject.Organization, cfg.Subject.OrganizationalUnit, cfg.Subject.Country} {
		for _, a := range attrs {
			if err := checkAttr(a, 64); err != nil {
				return nil, fmt.Errorf("subject: %w", err)
			}
		}
	}

	for _, f := range cfg.PreviousCAFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("read previousCACertFiles: %w", err)
		}
		certs, err := parseCertChainPEM(b)
		if err != nil {
			return nil, fmt.Errorf("previous CA %s: %w", f, err)
		}
		st.previous = append(st.previous, certs...)
	}
	if cfg.PreviousCAPEM != "" {
		certs, err := parseCertChainPEM([]byte(cfg.PreviousCAPEM))
		if err != nil {
			return nil, fmt.Errorf("previousCACertPEM: %w", err)
		}
		st.previous = append(st.previous, certs...)
	}
	for _, c := range st.previous {
		if !c.BasicConstraintsValid || !c.IsCA {
			return nil, fmt.Errorf("previous CA certificate %q is not a CA", c.Subject.String())
		}
	}

	var certPEM, keyPEM []byte
	fromFiles := cfg.CACertFile != "" || cfg.CAKeyFile != ""
	inline := cfg.CACertPEM != "" || cfg.CAKeyPEM != ""
	switch {
	case btoi(fromFiles)+btoi(inline)+btoi(cfg.EphemeralCA) > 1:
		return nil, fmt.Errorf("choose exactly one of caCertFile/caKeyFile, caCertPEM/caKeyPEM, ephemeralCA")
	case fromFiles:
		if cfg.CACertFile == "" || cfg.CAKeyFile == "" {
			return nil, fmt.Errorf("caCertFile and caKeyFile must both be set")
		}
		var err error
		if certPEM, err = os.ReadFile(cfg.CACertFile); err != nil {
			return nil, fmt.Errorf("read caCertFile: %w", err)
		}
		if keyPEM, err = os.ReadFile(cfg.CAKeyFile); err != nil {
			return nil, fmt.Errorf("read caKeyFile: %w", err)
		}
		st.caFiles = [2]string{cfg.CACertFile, cfg.CAKeyFile}
		st.caStamp = fileStamp(st.caFiles)
	case inline:
		if cfg.CACertPEM == "" || cfg.CAKeyPEM == "" {
			return nil, fmt.Errorf("caCertPEM and caKeyPEM must both be set")
		}
		certPEM, keyPEM = []byte(cfg.CACertPEM), []byte(cfg.CAKeyPEM)
	case cfg.EphemeralCA:
		cert, key, err := newEphemeralCA(now)
		if err != nil {
			return nil, fmt.Errorf("generate ephemeral CA: %w", err)
		}
		st.caCert, st.caKey, st.ephemeralCA = cert, key, true
		st.chainPEM = string(encodeCertPEM(cert.Raw))
		st.caFingerprint = fingerprint(cert)
		return st, nil
	default:
		return nil, ErrNoCA
	}

	chain, err := parseCertChainPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	key, err := ParsePrivateKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	ca := chain[0]
	if err := checkCA(ca, key, now); err != nil {
		return nil, err
	}
	st.caCert, st.caKey = ca, key
	var b strings.Builder
	for _, c := range chain {
		b.Write(encodeCertPEM(c.Raw))
	}
	st.chainPEM = b.String()
	st.caFingerprint = fingerprint(ca)
	return st, nil
}

func checkCA(ca *x509.Certificate, key crypto.Signer, now time.Time) error {
	if !ca.BasicConstraintsValid || !ca.IsCA {
		return fmt.Errorf("CA certificate %q is not a CA (basicConstraints CA:TRUE missing)", ca.Subject.String())
	}
	if ca.KeyUsage != 0 && ca.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fmt.Errorf("CA certificate %q lacks the keyCertSign key usage", ca.Subject.String())
	}
	if now.After(ca.NotAfter) || now.Before(ca.NotBefore) {
		return fmt.Errorf("CA certificate %q is not valid now (valid %s to %s)", ca.Subject.String(),
			ca.NotBefore.Format(time.RFC3339), ca.NotAfter.Format(time.RFC3339))
	}
	if !publicKeysEqual(ca.PublicKey, key.Public()) {
		return fmt.Errorf("CA key does not match the CA certificate")
	}
	return nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	e, ok := a.(equaler)
	return ok && e.Equal(b)
}

func newEphemeralCA(now time.Time) (*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	ski, err := subjectKeyID(key.Public())
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "apeiro-cmk ephemeral CA", Organization: []string{"Apeiro"}},
		NotBefore:             now.Add(-5 * time.Minute),
		NotAfter:              now.Add(ephemeralCALifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		SubjectKeyId:          ski,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

func randomSerial() (*big.Int, error) {
	// 128 random bits, positive, as RFC 5280 and the CA/B baseline recommend.
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
}

// LegacyTenantURI is the URI SAN this issuer used before it adopted pkg/tenantid; added only with legacyTenantURN.
func LegacyTenantURI(tenantID string) *url.URL {
	return &url.URL{Scheme: "urn", Opaque: "apeiro:tenant:" + tenantID}
}

// fileStamp identifies the current content of the CA files cheaply (size and modification time); a Secret
// volume update replaces the files, which changes both.
func fileStamp(files [2]string) string {
	var b strings.Builder
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			b.WriteString("missing;")
			continue
		}
		fmt.Fprintf(&b, "%d:%d;", fi.Size(), fi.ModTime().UnixNano())
	}
	return b.String()
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
