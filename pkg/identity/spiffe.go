package identity

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/apeirora/apeiro-cmk/pkg/tenantid"
)

// DefaultWorkloadAPITimeout bounds opening the Workload API bundle source: go-spiffe's sources block until the
// first update, and a missing registration only shows up as a deadline.
const DefaultWorkloadAPITimeout = 15 * time.Second

// SPIFFEConfig says where trust bundles come from and what a SVID must satisfy.
type SPIFFEConfig struct {
	// WorkloadAPIAddr (e.g. unix:///run/spire/agent.sock) streams bundles from a SPIRE agent; absolute socket path.
	WorkloadAPIAddr string `json:"workloadAPIAddr,omitempty"`
	// BundleFiles maps a trust domain to a SPIFFE bundle file (JWKS form), used when no Workload API is set.
	BundleFiles map[string]string `json:"bundleFiles,omitempty"`
	// TrustDomains accepted; empty means every trust domain a bundle is known for.
	TrustDomains []string `json:"trustDomains,omitempty"`
	// Audiences a JWT-SVID must name (one of). Required for JWT-SVIDs to be accepted at all.
	Audiences []string `json:"audiences,omitempty"`
}

// BundleSource is what SVID validation needs: X.509 and JWT bundles per trust domain. workloadapi.BundleSource and
// spiffebundle.Set implement it.
type BundleSource interface {
	x509bundle.Source
	jwtbundle.Source
}

// Workload is a verified SPIFFE identity mapped through the tenant scheme (pkg/tenantid).
type Workload struct {
	ID spiffeid.ID
	// Tenant is the tenant the ID belongs to ("" when the ID is not in the tenant scheme); Path the rest of the
	// path after /tenant/<tenant>, e.g. [ns default sa app].
	Tenant string
	Path   []string
}

// SPIFFEVerifier validates X.509-SVIDs and JWT-SVIDs.
type SPIFFEVerifier struct {
	bundles      BundleSource
	trustDomains []spiffeid.TrustDomain
	audiences    []string
	closer       io.Closer
}

// OpenSPIFFE builds a verifier from cfg, opening the Workload API source within timeout (0: the default).
func OpenSPIFFE(ctx context.Context, cfg SPIFFEConfig, timeout time.Duration) (*SPIFFEVerifier, error) {
	var (
		src    BundleSource
		closer io.Closer
	)
	switch {
	case cfg.WorkloadAPIAddr != "":
		if timeout <= 0 {
			timeout = DefaultWorkloadAPITimeout
		}
		octx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		bs, err := workloadapi.NewBundleSource(octx, workloadapi.WithClientOptions(workloadapi.WithAddr(cfg.WorkloadAPIAddr)))
		if err != nil {
			return nil, fmt.Errorf("opening the SPIFFE Workload API at %s within %s: %w", cfg.WorkloadAPIAddr, timeout, err)
		}
		src, closer = bs, bs
	case len(cfg.BundleFiles) > 0:
		set := spiffebundle.NewSet()
		for td, path := range cfg.BundleFiles {
			id, err := spiffeid.TrustDomainFromString(td)
			if err != nil {
				return nil, fmt.Errorf("bundleFiles: %w", err)
			}
			b, err := spiffebundle.Load(id, path)
			if err != nil {
				return nil, fmt.Errorf("bundleFiles[%s]: %w", td, err)
			}
			set.Add(b)
		}
		src = set
	default:
		return nil, errors.New("SPIFFE: set workloadAPIAddr or bundleFiles")
	}
	v, err := NewSPIFFEVerifier(src, cfg.TrustDomains, cfg.Audiences)
	if err != nil {
		if closer != nil {
			closer.Close()
		}
		return nil, err
	}
	v.closer = closer
	return v, nil
}

// NewSPIFFEVerifier validates against bundles; trustDomains restricts the accepted trust domains (empty: any with
// a bundle), audiences are required of JWT-SVIDs.
func NewSPIFFEVerifier(bundles BundleSource, trustDomains, audiences []string) (*SPIFFEVerifier, error) {
	v := &SPIFFEVerifier{bundles: bundles, audiences: audiences}
	for _, s := range trustDomains {
		td, err := spiffeid.TrustDomainFromString(s)
		if err != nil {
			return nil, fmt.Errorf("trust domain %q: %w", s, err)
		}
		v.trustDomains = append(v.trustDomains, td)
	}
	return v, nil
}

// Close releases the Workload API source.
func (v *SPIFFEVerifier) Close() error {
	if v == nil || v.closer == nil {
		return nil
	}
	return v.closer.Close()
}

// Bundles is the bundle source (for mTLS server configuration).
func (v *SPIFFEVerifier) Bundles() BundleSource { return v.bundles }

// ErrTrustDomain: the SVID's trust domain is not accepted.
var ErrTrustDomain = errors.New("trust domain not accepted")

func (v *SPIFFEVerifier) checkTrustDomain(id spiffeid.ID) error {
	if len(v.trustDomains) > 0 && !slices.Contains(v.trustDomains, id.TrustDomain()) {
		return fmt.Errorf("%w: %s", ErrTrustDomain, id.TrustDomain())
	}
	return nil
}

// VerifyX509SVID verifies a peer's certificate chain (leaf first) against the bundles.
func (v *SPIFFEVerifier) VerifyX509SVID(certs []*x509.Certificate) (*Workload, error) {
	if len(certs) == 0 {
		return nil, errors.New("no client certificate")
	}
	// Judge the claimed trust domain before chain building so an unaccepted domain fails for that reason.
	claimed, err := x509svid.IDFromCert(certs[0])
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if err := v.checkTrustDomain(claimed); err != nil {
		return nil, err
	}
	id, _, err := x509svid.Verify(certs, v.bundles)
	if err != nil {
		return nil, err
	}
	return toWorkload(id), nil
}

// VerifyJWTSVID verifies a JWT-SVID (already shape-checked when it came through Authenticate).
func (v *SPIFFEVerifier) VerifyJWTSVID(token string) (*Workload, error) {
	if len(v.audiences) == 0 {
		return nil, errors.New("JWT-SVIDs are not accepted: no SPIFFE audiences configured")
	}
	t, err := parseUnverified(token)
	if err != nil {
		return nil, err
	}
	var sub string
	if err := t.claim("sub", &sub); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	id, err := spiffeid.FromString(sub)
	if err != nil {
		return nil, fmt.Errorf("%w: subject is not a SPIFFE ID", ErrMalformed)
	}
	if err := v.checkTrustDomain(id); err != nil {
		return nil, err
	}
	svid, err := jwtsvid.ParseAndValidate(token, v.bundles, v.audiences)
	if err != nil {
		return nil, err
	}
	return toWorkload(svid.ID), nil
}

func toWorkload(id spiffeid.ID) *Workload {
	w := &Workload{ID: id}
	if _, tenant, rest, err := tenantid.Parse(id.String()); err == nil {
		w.Tenant, w.Path = tenant, rest
	}
	return w
}
