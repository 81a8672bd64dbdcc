// Package internalca is a CertificateIssuerService plugin that signs tenant
// client certificates with a CA it holds itself.
//
// It is the default certificate plugin of the Apeiro profile (builtin name
// APEIRO_PKI) and is also served as an external plugin binary by
// cmd/plugins/certissuer-internalca.
//
// What CMK sends (docs/plugins.md): common_name = <prefix><tenantID>,
// locality = [landscape region], validity {N, DAYS}, and the tenant's RSA
// 3072 private key as PKCS#1 PEM. The plugin signs a certificate for the
// public half of that key:
//   - Subject CN = common_name, L = locality, plus configured O/OU/C;
//   - ExtKeyUsage clientAuth, KeyUsage digitalSignature (+keyEncipherment
//     for RSA), not a CA, 128-bit random serial, SKI/AKI;
//   - SAN URI spiffe://<td>/tenant/<tenantID>/component/<component>
//     (pkg/tenantid; td = spiffeTrustDomain, default apeiro.local), the one
//     identity pkg/mtls enforces. Earlier versions wrote
//     urn:apeiro:tenant:<tenantID> (plus spiffe://<td>/tenant/<tenantID> when
//     a trust domain was set); legacyTenantURN: true still adds the urn for
//     verifiers not yet migrated. tenantID is the CN without the configured
//     tenantCNPrefix and must be a Tenant name (DNS-1123 subdomain, so a valid
//     URI path segment); with a prefix configured, a CN lacking it is
//     refused, so no certificate can name a tenant outside the convention;
//   - NotBefore = now − 5 min (clock skew, never before the CA), NotAfter =
//     now + validity (calendar arithmetic for months and years), at most
//     maxValidityDays and never beyond the CA's own NotAfter;
//   - the response is PEM: leaf, then the CA (and any intermediates given
//     after it in the CA file).
//
// Input checks (InvalidArgument): CN empty, longer than 64 bytes or outside
// [A-Za-z0-9._-] (must start alphanumeric); locality entries empty, longer
// than 128 bytes or containing control characters, more than 8 of them;
// validity missing, non-positive or of unspecified type; a private key that is
// not RSA 2048–8192 / ECDSA P-256..P-521 / Ed25519 in PKCS#8, PKCS#1 or SEC 1
// (PEM or DER), or is encrypted. The private key is used only to derive the
// public key; it is never logged or stored.
//
// Configuration: a CA is mandatory, so Configure("") fails with a clear
// message (ErrNoCA) — silently issuing from a throw-away CA would produce
// certificates nobody trusts. ephemeralCA: true opts into exactly that for
// development and tests. Until Configure succeeds, GetCertificate answers
// FailedPrecondition. Configure swaps the loaded CA atomically.
//
// Rollover: TrustBundle is the signing CA plus every still-valid previous CA
// (previousCACertFiles/PEM, and implicitly the CA replaced by the last
// Configure or by a rotation of the CA files on disk, which GetCertificate
// notices within 5 s). Verifiers load that bundle, so certificates of the
// old and the new CA are both accepted until the old one is dropped.
package internalca

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/openkcm/plugin-sdk/pkg/catalog"
	certv1 "github.com/openkcm/plugin-sdk/proto/plugin/certificate_issuer/v1"
	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/internal/pluginlog"
	"github.com/apeirora/apeiro-cmk/pkg/tenantid"
)

const (
	// BuiltinName is the name under which the builtin is registered.
	BuiltinName = "APEIRO_PKI"
	// PluginType is the plugin-sdk type (and handshake cookie).
	PluginType = certv1.Type

	// MaxCommonNameBytes is X.520's upper bound for commonName.
	MaxCommonNameBytes = 64
	maxLocalities      = 8
	maxLocalityBytes   = 128
	clockSkew          = 5 * time.Minute
	maxValidityValue   = 100_000 // guards calendar arithmetic against overflow

	buildInfo = `{"plugin":"apeiro-certissuer-internalca","type":"CertificateIssuerService"}`
)

var cnRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// Plugin implements CertificateIssuerService and the config service.
type Plugin struct {
	certv1.UnimplementedCertificateIssuerServiceServer
	configv1.UnimplementedConfigServer

	now   func() time.Time
	state atomic.Pointer[issuerState]
	// lastRotationCheck (unix nanos) throttles the on-disk CA check to one stat pair per rotationCheckEvery.
	lastRotationCheck atomic.Int64
	pluginlog.Holder
}

// rotationCheckEvery bounds how often GetCertificate looks at the CA files.
const rotationCheckEvery = 5 * time.Second

var (
	_ certv1.CertificateIssuerServiceServer = (*Plugin)(nil)
	_ configv1.ConfigServer                 = (*Plugin)(nil)
)

// Option customises New.
type Option func(*Plugin)

// WithClock overrides the time source (tests).
func WithClock(now func() time.Time) Option { return func(p *Plugin) { p.now = now } }

// New returns an unconfigured plugin.
func New(opts ...Option) *Plugin {
	p := &Plugin{now: time.Now}
	for _, o := range opts {
		o(p)
	}
	return p
}

// NewBuiltIn returns the plugin as a plugin-sdk builtin named APEIRO_PKI.
func NewBuiltIn() catalog.BuiltInPlugin { return NewBuiltInFrom(New()) }

// NewBuiltInFrom wraps an existing Plugin as a builtin.
func NewBuiltInFrom(p *Plugin) catalog.BuiltInPlugin {
	return catalog.MakeBuiltIn(BuiltinName,
		certv1.CertificateIssuerServicePluginServer(p),
		configv1.ConfigServiceServer(p))
}

// Configure loads the CA and settings; on error the previous CA stays active.
func (p *Plugin) Configure(_ context.Context, req *configv1.ConfigureRequest) (*configv1.ConfigureResponse, error) {
	st, err := parseConfig(req.GetYamlConfiguration(), p.now())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "internalca: invalid configuration: %v", err)
	}
	p.store(p.state.Load(), st)
	p.Log().Info("internal CA configured", "ca", st.caCert.Subject.String(), "caSha256", st.caFingerprint,
		"caNotAfter", st.caCert.NotAfter, "ephemeral", st.ephemeralCA, "maxValidityDays", st.maxValidity)
	bi := buildInfo
	return &configv1.ConfigureResponse{BuildInfo: &bi}, nil
}

// store installs next, carrying the CA it replaces over as a previous (still trusted) CA while it is valid, so
// certificates issued a moment ago keep verifying against TrustBundle during a rollover.
func (p *Plugin) store(prev, next *issuerState) {
	if prev != nil && !prev.caCert.Equal(next.caCert) && p.now().Before(prev.caCert.NotAfter) {
		keep := []*x509.Certificate{prev.caCert}
		for _, c := range prev.previous {
			// Only one generation is carried over implicitly; older ones must be configured explicitly.
			if slices.ContainsFunc(next.previous, c.Equal) {
				keep = append(keep, c)
			}
		}
		for _, c := range keep {
			if !slices.ContainsFunc(next.previous, c.Equal) {
				next.previous = append(next.previous, c)
			}
		}
	}
	p.state.Store(next)
}

// reloadIfRotated re-reads the configuration when the CA files changed on disk (at most every
// rotationCheckEvery); on any error the loaded CA stays in use.
func (p *Plugin) reloadIfRotated(st *issuerState) *issuerState {
	if st.caFiles[0] == "" {
		return st
	}
	now := p.now()
	last := p.lastRotationCheck.Load()
	if now.UnixNano()-last < int64(rotationCheckEvery) || !p.lastRotationCheck.CompareAndSwap(last, now.UnixNano()) {
		return st
	}
	if fileStamp(st.caFiles) == st.caStamp {
		return st
	}
	next, err := parseConfig(st.raw, now)
	if err != nil {
		p.Log().Warn("CA files changed but cannot be loaded; keeping the current CA", "error", err.Error())
		return st
	}
	if !p.state.CompareAndSwap(st, st) { // reconfigured meanwhile
		return p.state.Load()
	}
	p.store(st, next)
	p.Log().Info("internal CA rotated from disk", "ca", next.caCert.Subject.String(), "caSha256", next.caFingerprint,
		"previousTrusted", len(next.previous))
	return next
}

// TrustBundle returns the PEM bundle verifiers should trust: the signing CA and every previous CA that has not
// expired (pkg/mtls.Verifier.SetBundle takes it as is). Nil before Configure.
func (p *Plugin) TrustBundle() []byte {
	st := p.state.Load()
	if st == nil {
		return nil
	}
	out := encodeCertPEM(st.caCert.Raw)
	now := p.now()
	for _, c := range st.previous {
		if now.Before(c.NotAfter) {
			out = append(out, encodeCertPEM(c.Raw)...)
		}
	}
	return out
}

// CACertificate returns the CA certificate in use, or nil before Configure.
// Useful to build trust bundles for an ephemeral CA.
func (p *Plugin) CACertificate() *x509.Certificate {
	if st := p.state.Load(); st != nil {
		return st.caCert
	}
	return nil
}

// GetCertificate signs a client certificate for the supplied key.
func (p *Plugin) GetCertificate(_ context.Context, req *certv1.GetCertificateRequest) (*certv1.GetCertificateResponse, error) {
	st := p.state.Load()
	if st == nil {
		return nil, status.Error(codes.FailedPrecondition, "internalca: not configured (no CA loaded)")
	}
	st = p.reloadIfRotated(st)
	cn := req.GetCommonName()
	tenantID, err := st.tenantFromCN(cn)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "common_name: %v", err)
	}
	if err := checkLocalities(req.GetLocality()); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "locality: %v", err)
	}
	now := p.now()
	notAfter, err := st.notAfter(now, req.GetValidity())
	if err != nil {
		return nil, err
	}
	key, err := ParsePrivateKey(req.GetPrivateKey().GetData())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "private_key: %v", err)
	}
	pub := key.Public()

	serial, err := randomSerial()
	if err != nil {
		return nil, status.Errorf(codes.Internal, "serial number: %v", err)
	}
	ski, err := subjectKeyID(pub)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "private_key: public key: %v", err)
	}
	notBefore := now.Add(-clockSkew)
	if notBefore.Before(st.caCert.NotBefore) {
		notBefore = st.caCert.NotBefore
	}
	id, err := tenantid.Format(st.trustDomain, tenantID, "component", st.component)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "common_name: %v", err)
	}
	uris := []*url.URL{id}
	if st.legacyURN {
		uris = append(uris, LegacyTenantURI(tenantID))
	}
	usage := x509.KeyUsageDigitalSignature
	if _, isRSA := pub.(*rsa.PublicKey); isRSA {
		usage |= x509.KeyUsageKeyEncipherment
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName:         cn,
			Locality:           append([]string(nil), req.GetLocality()...),
			Organization:       st.subject.Organization,
			OrganizationalUnit: st.subject.OrganizationalUnit,
			Country:            st.subject.Country,
		},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              usage,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  false,
		SubjectKeyId:          ski,
		URIs:                  uris,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, st.caCert, pub, st.caKey)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "sign certificate: %v", err)
	}
	p.Log().Info("issued client certificate", "cn", cn, "tenant", tenantID, "serial", serial.Text(16), "notAfter", notAfter)
	chain := string(encodeCertPEM(der)) + st.chainPEM
	return &certv1.GetCertificateResponse{CertificateChain: chain}, nil
}

// tenantFromCN validates a common name and derives the tenant ID from it.
func (st *issuerState) tenantFromCN(cn string) (string, error) {
	switch {
	case cn == "":
		return "", fmt.Errorf("is required")
	case len(cn) > MaxCommonNameBytes:
		return "", fmt.Errorf("longer than %d bytes", MaxCommonNameBytes)
	case !cnRE.MatchString(cn):
		return "", fmt.Errorf("%q: only [A-Za-z0-9._-] allowed, starting alphanumeric", cn)
	}
	tenant, ok := strings.CutPrefix(cn, st.prefix)
	if !ok {
		return "", fmt.Errorf("%q does not start with the tenant prefix %q", cn, st.prefix)
	}
	if tenant == "" || !cnRE.MatchString(tenant) {
		return "", fmt.Errorf("%q: tenant ID after prefix %q is empty or does not start alphanumeric", cn, st.prefix)
	}
	// The tenant ID becomes a path segment of the SPIFFE ID, so it must be a Tenant name (DNS-1123 subdomain).
	if err := tenantid.ValidateTenant(tenant); err != nil {
		return "", fmt.Errorf("%q: %w (the tenant ID must be a valid URI path segment)", cn, err)
	}
	return tenant, nil
}

func checkLocalities(ls []string) error {
	if len(ls) > maxLocalities {
		return fmt.Errorf("%d entries, at most %d allowed", len(ls), maxLocalities)
	}
	for i, l := range ls {
		if err := checkAttr(l, maxLocalityBytes); err != nil {
			return fmt.Errorf("[%d]: %w", i, err)
		}
	}
	return nil
}

// checkAttr accepts a printable, non-empty UTF-8 attribute value of at most max bytes.
func checkAttr(v string, limit int) error {
	switch {
	case strings.TrimSpace(v) == "":
		return fmt.Errorf("empty value")
	case len(v) > limit:
		return fmt.Errorf("value longer than %d bytes", limit)
	case !utf8.ValidString(v):
		return fmt.Errorf("value is not valid UTF-8")
	case strings.ContainsFunc(v, func(r rune) bool { return !unicode.IsPrint(r) }):
		return fmt.Errorf("value contains non-printable characters")
	}
	return nil
}

// notAfter computes the leaf expiry for a requested validity.
func (st *issuerState) notAfter(now time.Time, v *certv1.GetCertificateValidity) (time.Time, error) {
	if v == nil {
		return time.Time{}, status.Error(codes.InvalidArgument, "validity is required")
	}
	n := v.GetValue()
	if n <= 0 || n > maxValidityValue {
		return time.Time{}, status.Errorf(codes.InvalidArgument, "validity value %d must be positive", n)
	}
	var end time.Time
	switch v.GetType() {
	case certv1.ValidityType_VALIDITY_TYPE_DAYS:
		end = now.AddDate(0, 0, int(n))
	case certv1.ValidityType_VALIDITY_TYPE_MONTHS:
		end = now.AddDate(0, int(n), 0)
	case certv1.ValidityType_VALIDITY_TYPE_YEARS:
		end = now.AddDate(int(n), 0, 0)
	default:
		return time.Time{}, status.Errorf(codes.InvalidArgument, "validity type %s is not supported (want DAYS, MONTHS or YEARS)", v.GetType())
	}
	if limit := now.AddDate(0, 0, st.maxValidity); end.After(limit) {
		return time.Time{}, status.Errorf(codes.InvalidArgument, "requested validity (%d %s) exceeds the maximum of %d days",
			n, strings.TrimPrefix(v.GetType().String(), "VALIDITY_TYPE_"), st.maxValidity)
	}
	if end.After(st.caCert.NotAfter) {
		return time.Time{}, status.Errorf(codes.FailedPrecondition, "requested validity ends %s, after the CA expires (%s)",
			end.UTC().Format(time.RFC3339), st.caCert.NotAfter.UTC().Format(time.RFC3339))
	}
	return end, nil
}
