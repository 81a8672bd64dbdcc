// Package certmanager is a CertificateIssuerService plugin that has tenant client certificates signed by the
// platform's cert-manager: each GetCertificate becomes one cert-manager CertificateRequest (API cert-manager.io/v1)
// against a configured Issuer or ClusterIssuer.
//
// Builtin name APEIRO_CERT_MANAGER; external binary cmd/plugins/certissuer-certmanager.
//
// What CMK sends (common_name = prefix+tenantID, locality = [region], validity {N, DAYS}, the tenant's RSA-3072
// private key as PKCS#1 PEM) is turned into a PKCS#10 CSR signed with that key:
//   - Subject CN = common_name, L = locality;
//   - one URI SAN spiffe://<trustDomain>/tenant/<tenantID>/component/<component> (pkg/tenantid), which is what
//     pkg/mtls enforces; tenantID is the CN without tenantCNPrefix and must be a Tenant name (DNS-1123 subdomain),
//     so it is a valid URI path segment;
//   - usages digital signature (+ key encipherment for RSA) and client auth, duration = the requested validity.
//
// The request is created with the plugin's labels, then the plugin waits (bounded by timeout) for cert-manager:
// Approved+Ready → the chain is verified (key, CN, exactly this tenant, clientAuth) and returned; Denied →
// PermissionDenied; InvalidRequest → InvalidArgument; Ready=False/Failed → FailedPrecondition; no verdict within
// the bound → DeadlineExceeded naming where it stuck (never approved / no issuer acted). A missing or not-Ready
// issuer is FailedPrecondition before anything is created. The request is deleted in every case; requests left by a
// crash are swept on the next Configure. The private key never leaves the plugin: only the CSR goes to the API.
package certmanager

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/cert-manager/cert-manager/pkg/client/clientset/versioned"
	"github.com/openkcm/plugin-sdk/pkg/catalog"
	certv1 "github.com/openkcm/plugin-sdk/proto/plugin/certificate_issuer/v1"
	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/client-go/rest"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/certissuer/internalca"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/internal/pluginlog"
	"github.com/apeirora/apeiro-cmk/pkg/tenantid"
)

const (
	// BuiltinName is the profile name of the builtin.
	BuiltinName = "APEIRO_CERT_MANAGER"

	maxCommonNameBytes = 64
	maxLocalities      = 8
	maxLocalityBytes   = 128
	maxValidityValue   = 100_000

	buildInfo = `{"plugin":"apeiro-certissuer-certmanager","type":"CertificateIssuerService"}`
)

// Plugin implements CertificateIssuerService and the config service.
type Plugin struct {
	certv1.UnimplementedCertificateIssuerServiceServer
	configv1.UnimplementedConfigServer
	pluginlog.Holder

	now       func() time.Time
	newClient func(kubeconfig string) (Client, error)
	state     atomic.Pointer[state]
}

type state struct {
	s *settings
	c Client
}

// Option customises New.
type Option func(*Plugin)

// WithClient makes Configure use c instead of building a client from the kubeconfig (tests).
func WithClient(c Client) Option {
	return func(p *Plugin) { p.newClient = func(string) (Client, error) { return c, nil } }
}

// WithRESTConfig makes Configure build its client from rc (a process that already has one, like the webhook)
// instead of the kubeconfig setting.
func WithRESTConfig(rc *rest.Config) Option {
	return func(p *Plugin) {
		p.newClient = func(string) (Client, error) {
			cs, err := versioned.NewForConfig(rc)
			if err != nil {
				return nil, err
			}
			return NewClient(cs), nil
		}
	}
}

// WithClock overrides the time source.
func WithClock(now func() time.Time) Option { return func(p *Plugin) { p.now = now } }

// New returns an unconfigured plugin.
func New(opts ...Option) *Plugin {
	p := &Plugin{now: time.Now, newClient: newClientFromKubeconfig}
	for _, o := range opts {
		o(p)
	}
	return p
}

// NewBuiltIn returns the plugin as a plugin-sdk builtin named APEIRO_CERT_MANAGER.
func NewBuiltIn() catalog.BuiltInPlugin { return NewBuiltInFrom(New()) }

// NewBuiltInFrom wraps an existing Plugin as a builtin.
func NewBuiltInFrom(p *Plugin) catalog.BuiltInPlugin {
	return catalog.MakeBuiltIn(BuiltinName,
		certv1.CertificateIssuerServicePluginServer(p),
		configv1.ConfigServiceServer(p))
}

// Configure validates the YAML and builds the API client; on error the previous configuration stays active. It does
// not require the API server to be reachable (the issuer is checked per request, so an outage heals by itself).
func (p *Plugin) Configure(_ context.Context, req *configv1.ConfigureRequest) (*configv1.ConfigureResponse, error) {
	s, err := parseConfig(req.GetYamlConfiguration())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "certmanager: invalid configuration: %v", err)
	}
	c, err := p.newClient(s.kubeconfig)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "certmanager: invalid configuration: %v", err)
	}
	p.state.Store(&state{s: s, c: c})
	go p.sweep(c, s)
	p.Log().Info("cert-manager issuer configured", "namespace", s.namespace, "issuerKind", s.issuer.Kind,
		"issuer", s.issuer.Name, "trustDomain", s.trustDomain, "component", s.component, "timeout", s.timeout.String())
	bi := buildInfo
	return &configv1.ConfigureResponse{BuildInfo: &bi}, nil
}

func (p *Plugin) loaded() (*state, error) {
	st := p.state.Load()
	if st == nil {
		return nil, status.Error(codes.FailedPrecondition, "certmanager: not configured")
	}
	return st, nil
}

// GetCertificate has cert-manager sign a client certificate for the supplied key.
func (p *Plugin) GetCertificate(ctx context.Context, req *certv1.GetCertificateRequest) (*certv1.GetCertificateResponse, error) {
	st, err := p.loaded()
	if err != nil {
		return nil, err
	}
	s := st.s
	cn := req.GetCommonName()
	tenant, err := tenantFromCN(cn, s.prefix)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "common_name: %v", err)
	}
	if err := checkLocalities(req.GetLocality()); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "locality: %v", err)
	}
	duration, err := validity(p.now(), req.GetValidity(), s.maxValidity)
	if err != nil {
		return nil, err
	}
	key, err := internalca.ParsePrivateKey(req.GetPrivateKey().GetData())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "private_key: %v", err)
	}
	if err := keyStrength(key.Public(), s.minRSABits); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "private_key: %v", err)
	}
	uri, err := tenantid.Format(s.trustDomain, tenant, "component", s.component)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "common_name: %v", err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: cn, Locality: append([]string(nil), req.GetLocality()...)},
		URIs:    []*url.URL{uri},
	}, key)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "private_key: cannot sign a CSR with it: %v", err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "certmanager: CSR: %v", err)
	}
	out, err := p.sign(ctx, st.c, s, tenant, csr, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), duration)
	if err != nil {
		p.Log().Warn("certificate not issued", "tenant", tenant, "error", err.Error())
		return nil, err
	}
	p.Log().Info("issued client certificate", "tenant", tenant, "serial", out.leaf.SerialNumber.Text(16),
		"notAfter", out.leaf.NotAfter, "request", out.name)
	return &certv1.GetCertificateResponse{CertificateChain: out.chainPEM}, nil
}

// SignCSR has cert-manager sign a PEM CSR that a component generated itself (its key never leaves it) for tenant.
// The CSR must name tenant in every way it names anything: its CN (prefix+tenant) and its URI SANs (exactly one,
// in this plugin's trust domain); a CSR that names another tenant is PermissionDenied, DNS/IP/e-mail SANs are
// InvalidArgument. It returns the verified PEM chain.
func (p *Plugin) SignCSR(ctx context.Context, tenant string, csrPEM []byte, lifetime time.Duration) (string, error) {
	st, err := p.loaded()
	if err != nil {
		return "", err
	}
	s := st.s
	if err := tenantid.ValidateTenant(tenant); err != nil {
		return "", status.Errorf(codes.InvalidArgument, "tenant: %v", err)
	}
	csr, err := ParseCSR(csrPEM)
	if err != nil {
		return "", status.Errorf(codes.InvalidArgument, "csr: %v", err)
	}
	if err := keyStrength(csr.PublicKey, s.minRSABits); err != nil {
		return "", status.Errorf(codes.InvalidArgument, "csr: %v", err)
	}
	if len(csr.DNSNames)+len(csr.IPAddresses)+len(csr.EmailAddresses) > 0 || len(csr.URIs) != 1 {
		return "", status.Error(codes.InvalidArgument, "csr: a client certificate request carries exactly one URI SAN and no DNS, IP or e-mail SANs")
	}
	td, named, _, err := tenantid.Parse(csr.URIs[0].String())
	if err != nil {
		return "", status.Errorf(codes.InvalidArgument, "csr: %v", err)
	}
	if td != s.trustDomain {
		return "", status.Errorf(codes.PermissionDenied, "csr: URI SAN is in trust domain %q, not %q", td, s.trustDomain)
	}
	if named != tenant {
		return "", status.Errorf(codes.PermissionDenied, "csr: URI SAN names tenant %q, request is for tenant %q", named, tenant)
	}
	if cnTenant, err := tenantFromCN(csr.Subject.CommonName, s.prefix); err != nil || cnTenant != tenant {
		return "", status.Errorf(codes.PermissionDenied, "csr: common name %q does not name tenant %q", csr.Subject.CommonName, tenant)
	}
	maxLife := time.Duration(s.maxValidity) * 24 * time.Hour
	if lifetime < time.Hour || lifetime > maxLife {
		return "", status.Errorf(codes.InvalidArgument, "lifetime %s: must be between 1h and %d days", lifetime, s.maxValidity)
	}
	out, err := p.sign(ctx, st.c, s, tenant, csr, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr.Raw}), lifetime)
	if err != nil {
		return "", err
	}
	return out.chainPEM, nil
}

// TrustDomain returns the configured trust domain ("" before Configure).
func (p *Plugin) TrustDomain() string {
	if st := p.state.Load(); st != nil {
		return st.s.trustDomain
	}
	return ""
}

// ParseCSR decodes one PEM "CERTIFICATE REQUEST" (bounded) and checks its self-signature.
func ParseCSR(data []byte) (*x509.CertificateRequest, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("empty")
	}
	if len(data) > maxCSRBytes {
		return nil, fmt.Errorf("exceeds %d bytes", maxCSRBytes)
	}
	b, _ := pem.Decode(data)
	if b == nil || (b.Type != "CERTIFICATE REQUEST" && b.Type != "NEW CERTIFICATE REQUEST") {
		return nil, fmt.Errorf("no CERTIFICATE REQUEST PEM block")
	}
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("signature: %w", err)
	}
	return csr, nil
}

// tenantFromCN derives and validates the tenant ID from a common name.
func tenantFromCN(cn, prefix string) (string, error) {
	switch {
	case cn == "":
		return "", fmt.Errorf("is required")
	case len(cn) > maxCommonNameBytes:
		return "", fmt.Errorf("longer than %d bytes", maxCommonNameBytes)
	}
	tenant, ok := strings.CutPrefix(cn, prefix)
	if !ok {
		return "", fmt.Errorf("%q does not start with the tenant prefix %q", cn, prefix)
	}
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
		switch {
		case strings.TrimSpace(l) == "":
			return fmt.Errorf("[%d]: empty value", i)
		case len(l) > maxLocalityBytes:
			return fmt.Errorf("[%d]: longer than %d bytes", i, maxLocalityBytes)
		case !utf8.ValidString(l):
			return fmt.Errorf("[%d]: not valid UTF-8", i)
		case strings.ContainsFunc(l, func(r rune) bool { return !unicode.IsPrint(r) }):
			return fmt.Errorf("[%d]: non-printable characters", i)
		}
	}
	return nil
}

// validity turns the requested validity into a duration, calendar-aware, bounded by maxDays.
func validity(now time.Time, v *certv1.GetCertificateValidity, maxDays int) (time.Duration, error) {
	if v == nil {
		return 0, status.Error(codes.InvalidArgument, "validity is required")
	}
	n := v.GetValue()
	if n <= 0 || n > maxValidityValue {
		return 0, status.Errorf(codes.InvalidArgument, "validity value %d must be positive and sane", n)
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
		return 0, status.Errorf(codes.InvalidArgument, "validity type %s is not supported (want DAYS, MONTHS or YEARS)", v.GetType())
	}
	if end.After(now.AddDate(0, 0, maxDays)) {
		return 0, status.Errorf(codes.InvalidArgument, "requested validity (%d %s) exceeds the maximum of %d days",
			n, strings.TrimPrefix(v.GetType().String(), "VALIDITY_TYPE_"), maxDays)
	}
	return end.Sub(now), nil
}
