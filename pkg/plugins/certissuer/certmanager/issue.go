package certmanager

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/apeirora/apeiro-cmk/pkg/tenantid"
)

const (
	// LabelManagedBy marks every CertificateRequest this plugin creates, so leftovers can be found and swept.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	managedByValue = "apeiro-cmk-certissuer"
	// LabelTenant records the tenant a request is for (operators can see who asked; never used for authorization).
	LabelTenant = "cmk.apeiro.io/tenant"

	maxCSRBytes     = 64 << 10
	maxChainBytes   = 1 << 20
	deleteTimeout   = 10 * time.Second
	firstPoll       = 20 * time.Millisecond
	maxPoll         = 500 * time.Millisecond
	sweepMinimumAge = 5 * time.Minute
)

// issued is a verified result.
type issued struct {
	chainPEM string
	leaf     *x509.Certificate
	name     string // CertificateRequest name (deleted by the time the caller sees this)
}

// sign submits csrPEM for tenant as a CertificateRequest, waits for approval and issuance within the configured bound
// and always deletes the request again. Every failure is a gRPC status.
func (p *Plugin) sign(ctx context.Context, c Client, s *settings, tenant string, csr *x509.CertificateRequest, csrPEM []byte, duration time.Duration) (*issued, error) {
	ref := cmmeta.IssuerReference{Name: s.issuer.Name, Kind: s.issuer.Kind, Group: s.issuer.Group}
	where := fmt.Sprintf("%s %q", s.issuer.Kind, s.issuer.Name)
	if s.issuer.Kind == "Issuer" {
		where += " in namespace " + s.namespace
	}

	// An issuer that does not exist would leave the request Pending until the timeout; say so at once instead.
	ist, err := c.IssuerStatus(ctx, s.namespace, ref)
	switch {
	case apierrors.IsNotFound(err):
		return nil, status.Errorf(codes.FailedPrecondition, "certmanager: %s does not exist", where)
	case err != nil:
		return nil, kubeStatus(err, "look up "+where)
	}
	for _, cond := range ist.Conditions {
		if cond.Type == cmapi.IssuerConditionReady && cond.Status == cmmeta.ConditionFalse {
			return nil, status.Errorf(codes.FailedPrecondition, "certmanager: %s is not ready: %s: %s", where, cond.Reason, cond.Message)
		}
	}

	usages := []cmapi.KeyUsage{cmapi.UsageDigitalSignature}
	if _, isRSA := csr.PublicKey.(*rsa.PublicKey); isRSA {
		usages = append(usages, cmapi.UsageKeyEncipherment)
	}
	usages = append(usages, cmapi.UsageClientAuth)
	cr := &cmapi.CertificateRequest{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:    s.namespace,
			GenerateName: generateName(tenant),
			Labels:       map[string]string{LabelManagedBy: managedByValue, LabelTenant: tenant},
		},
		Spec: cmapi.CertificateRequestSpec{
			Request:   csrPEM,
			Duration:  &metav1.Duration{Duration: duration},
			IssuerRef: ref,
			IsCA:      false,
			// The CSR carries no key-usage extensions, so cert-manager takes these as they are (with extensions
			// present they would have to match the CSR's exactly).
			Usages: usages,
		},
	}
	created, err := c.CreateCertificateRequest(ctx, cr)
	if err != nil {
		return nil, kubeStatus(err, "create CertificateRequest in namespace "+s.namespace)
	}
	name := created.Name
	defer p.deleteRequest(c, s.namespace, name)

	bound := s.timeout
	waitCtx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	final, err := waitIssued(waitCtx, c, s.namespace, name)
	if err != nil {
		if ctx.Err() != nil { // the caller gave up, not our bound
			return nil, status.FromContextError(ctx.Err()).Err()
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, status.Errorf(codes.DeadlineExceeded, "certmanager: CertificateRequest %s/%s not issued within %s: %s",
				s.namespace, name, bound, describe(final))
		}
		return nil, err
	}
	chain, leaf, err := verifyIssued(final, csr.PublicKey, s.trustDomain, tenant, csr.Subject.CommonName)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "certmanager: %s returned a certificate that does not match the request: %v", where, err)
	}
	return &issued{chainPEM: chain, leaf: leaf, name: name}, nil
}

// generateName keeps the generated object name within 63 characters and readable.
func generateName(tenant string) string {
	t := tenant
	if len(t) > 40 {
		t = t[:40]
	}
	return strings.TrimRight("cmk-"+t, ".-") + "-"
}

// waitIssued polls until the request is issued, denied, invalid or failed, or ctx ends. On ctx end it returns the last
// observed object (for the error message) and ctx's error.
func waitIssued(ctx context.Context, c Client, ns, name string) (*cmapi.CertificateRequest, error) {
	delay := firstPoll
	var last *cmapi.CertificateRequest
	for {
		cr, err := c.GetCertificateRequest(ctx, ns, name)
		switch {
		case err == nil:
			last = cr
			if done, err := outcome(cr); done || err != nil {
				return cr, err
			}
		case ctx.Err() != nil:
			return last, ctx.Err()
		case apierrors.IsNotFound(err):
			return last, status.Errorf(codes.Aborted, "certmanager: CertificateRequest %s/%s was deleted before it was issued", ns, name)
		default:
			// A transient API error: keep polling until the bound; report it if it persists.
			last = nil
		}
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(delay*2, maxPoll)
	}
}

// outcome classifies a request: issued (true, nil), terminal failure (false, status) or still pending (false, nil).
func outcome(cr *cmapi.CertificateRequest) (bool, error) {
	ref := cr.Namespace + "/" + cr.Name
	for _, cond := range cr.Status.Conditions {
		if cond.Status != cmmeta.ConditionTrue {
			continue
		}
		switch cond.Type {
		case cmapi.CertificateRequestConditionDenied:
			return false, status.Errorf(codes.PermissionDenied, "certmanager: CertificateRequest %s was denied: %s: %s", ref, cond.Reason, cond.Message)
		case cmapi.CertificateRequestConditionInvalidRequest:
			return false, status.Errorf(codes.InvalidArgument, "certmanager: CertificateRequest %s is invalid: %s: %s", ref, cond.Reason, cond.Message)
		}
	}
	for _, cond := range cr.Status.Conditions {
		if cond.Type != cmapi.CertificateRequestConditionReady {
			continue
		}
		switch {
		case cond.Status == cmmeta.ConditionTrue && len(cr.Status.Certificate) > 0:
			return true, nil
		case cond.Status == cmmeta.ConditionFalse && cond.Reason == cmapi.CertificateRequestReasonFailed:
			return false, status.Errorf(codes.FailedPrecondition, "certmanager: issuing CertificateRequest %s failed: %s", ref, cond.Message)
		}
	}
	return false, nil
}

// describe says where a request got stuck, for timeout errors.
func describe(cr *cmapi.CertificateRequest) string {
	if cr == nil {
		return "the request could not be read back"
	}
	var approved bool
	var ready string
	for _, c := range cr.Status.Conditions {
		switch c.Type {
		case cmapi.CertificateRequestConditionApproved:
			approved = c.Status == cmmeta.ConditionTrue
		case cmapi.CertificateRequestConditionReady:
			ready = fmt.Sprintf("Ready=%s (%s: %s)", c.Status, c.Reason, c.Message)
		}
	}
	switch {
	case !approved:
		return "it was never approved (is an approver running for this issuer?)"
	case ready == "":
		return "approved, but no issuer picked it up (is the issuer's controller running?)"
	default:
		return "approved, " + ready
	}
}

// deleteRequest removes a request whatever happened to the caller's context.
func (p *Plugin) deleteRequest(c Client, ns, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), deleteTimeout)
	defer cancel()
	if err := c.DeleteCertificateRequest(ctx, ns, name); err != nil && !apierrors.IsNotFound(err) {
		// The next Configure sweeps it (LabelManagedBy); a request holds no private key.
		p.Log().Warn("could not delete CertificateRequest", "namespace", ns, "name", name, "error", err.Error())
	}
}

// sweep deletes this plugin's requests older than sweepMinimumAge (left by a crash between create and delete).
func (p *Plugin) sweep(c Client, s *settings) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	items, err := c.ListCertificateRequests(ctx, s.namespace, LabelManagedBy+"="+managedByValue)
	if err != nil {
		p.Log().Debug("leftover sweep skipped", "error", err.Error())
		return
	}
	cutoff := p.now().Add(-max(sweepMinimumAge, 2*s.timeout))
	for _, cr := range items {
		if cr.CreationTimestamp.Time.Before(cutoff) {
			p.deleteRequest(c, cr.Namespace, cr.Name)
		}
	}
}

// verifyIssued checks the issued certificate is what was asked for: the request's key, CN, exactly the one tenant
// in its URI SANs, clientAuth, not a CA. It returns the chain to hand out (leaf first, then status.ca if missing).
func verifyIssued(cr *cmapi.CertificateRequest, pub crypto.PublicKey, trustDomain, tenant, cn string) (string, *x509.Certificate, error) {
	if len(cr.Status.Certificate) > maxChainBytes {
		return "", nil, fmt.Errorf("certificate larger than %d bytes", maxChainBytes)
	}
	chain, err := parseCerts(cr.Status.Certificate)
	if err != nil {
		return "", nil, err
	}
	leaf := chain[0]
	type equaler interface{ Equal(crypto.PublicKey) bool }
	if e, ok := leaf.PublicKey.(equaler); !ok || !e.Equal(pub) {
		return "", nil, errors.New("the certificate is not for the request's key")
	}
	if leaf.Subject.CommonName != cn {
		return "", nil, fmt.Errorf("common name %q, want %q", leaf.Subject.CommonName, cn)
	}
	got, err := TenantOf(leaf, trustDomain)
	if err != nil {
		return "", nil, err
	}
	if got != tenant {
		return "", nil, fmt.Errorf("certificate names tenant %q, want %q", got, tenant)
	}
	if leaf.IsCA || !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		return "", nil, errors.New("not a clientAuth end-entity certificate")
	}
	var b bytes.Buffer
	for _, c := range chain {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	if len(cr.Status.CA) > 0 && len(cr.Status.CA) <= maxChainBytes {
		if cas, err := parseCerts(cr.Status.CA); err == nil && !chain[len(chain)-1].Equal(cas[0]) {
			for _, c := range cas {
				_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
			}
		}
	}
	return b.String(), leaf, nil
}

// TenantOf returns the tenant named by cert's URI SANs in trustDomain (pkg/tenantid scheme). A certificate that
// names no tenant, names two, or uses another trust domain has no tenant. The CN is never consulted.
func TenantOf(cert *x509.Certificate, trustDomain string) (string, error) {
	tenant := ""
	for _, u := range cert.URIs {
		if u.Scheme != "spiffe" {
			continue
		}
		td, t, _, err := tenantid.Parse(u.String())
		if err != nil {
			return "", fmt.Errorf("URI SAN: %w", err)
		}
		if td != trustDomain {
			return "", fmt.Errorf("URI SAN %q is outside trust domain %q", u, trustDomain)
		}
		if tenant != "" && t != tenant {
			return "", fmt.Errorf("certificate names two tenants (%q and %q)", tenant, t)
		}
		tenant = t
	}
	if tenant == "" {
		return "", errors.New("certificate carries no tenant URI SAN")
	}
	return tenant, nil
}

func parseCerts(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(out), err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM certificate")
	}
	return out, nil
}

// kubeStatus maps an API error to a gRPC status.
func kubeStatus(err error, what string) error {
	code := codes.Unavailable
	switch {
	case apierrors.IsForbidden(err), apierrors.IsUnauthorized(err):
		code = codes.PermissionDenied
	case apierrors.IsNotFound(err):
		code = codes.FailedPrecondition // e.g. the namespace does not exist
	case apierrors.IsInvalid(err), apierrors.IsBadRequest(err):
		code = codes.InvalidArgument
	case apierrors.IsTooManyRequests(err), apierrors.IsServerTimeout(err), apierrors.IsTimeout(err):
		code = codes.Unavailable
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	}
	return status.Errorf(code, "certmanager: %s: %v", what, err)
}

// keyStrength refuses keys weaker than the configured floor.
func keyStrength(pub crypto.PublicKey, minRSA int) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if b := k.N.BitLen(); b < minRSA {
			return fmt.Errorf("RSA key of %d bits is too weak (at least %d required)", b, minRSA)
		}
	case *ecdsa.PublicKey:
		if k.Curve.Params().BitSize < 256 {
			return fmt.Errorf("ECDSA curve %s is too weak", k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
	default:
		return fmt.Errorf("key type %T not accepted", pub)
	}
	return nil
}
