package identity

import (
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/apeirora/apeiro-cmk/pkg/mtls"
)

// ComponentVerifier verifies a client certificate issued by the CMK certificate issuer (internal CA or cert-manager,
// docs/certificates.md) and names its tenant from the URI SAN; *mtls.Verifier implements it. It is the one call the
// workload key endpoint makes for such certificates.
type ComponentVerifier interface {
	Identify(chain []*x509.Certificate) (mtls.Identity, error)
}

var _ ComponentVerifier = (*mtls.Verifier)(nil)

// verifyClientCertificate accepts an X.509-SVID or, when Components is set, a CMK component certificate. Both name
// their workload with a SPIFFE ID in the tenant scheme, so the rest of the handler (spec.workloadIdentities listing,
// tenant of the key) treats them alike: a component certificate of tenant A never unlocks a key of tenant B, and its
// Subject CN plays no part.
func (h *WorkloadKeyHandler) verifyClientCertificate(chain []*x509.Certificate) (*Workload, error) {
	svidErr := errors.New("no SPIFFE trust bundle configured")
	if h.SPIFFE != nil {
		wl, err := h.SPIFFE.VerifyX509SVID(chain)
		if err == nil || h.Components == nil {
			return wl, err
		}
		svidErr = err
	}
	if h.Components == nil {
		return nil, svidErr
	}
	id, err := h.Components.Identify(chain)
	if err != nil {
		return nil, fmt.Errorf("client certificate is neither an X.509-SVID (%v) nor a CMK component certificate (%w)", svidErr, err)
	}
	sid, err := spiffeid.FromString(id.SPIFFEID)
	if err != nil {
		// The issuer's scheme is a SPIFFE ID by construction; an ID go-spiffe refuses is refused here too, so both
		// sides of the workloadIdentities comparison parse identically.
		return nil, fmt.Errorf("component certificate SPIFFE ID %q: %w", id.SPIFFEID, err)
	}
	return &Workload{ID: sid, Tenant: id.Tenant, Path: id.Rest}, nil
}
