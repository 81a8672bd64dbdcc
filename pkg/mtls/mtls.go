// Package mtls is the verifier side of tenant client certificates: tls.Config helpers and an HTTP guard that enforce
// strict tenant isolation on mutual TLS. Our own servers use it (the workload key endpoint accepts component
// certificates through it: pkg/identity, --component-ca-file), and it is written to be offered as is to the CMK
// Registry (the server Crypto (Manager) and Crypto (Migrate) authenticate against).
//
// The rule: a peer's tenant is the one named by its certificate's URI SAN in the pkg/tenantid scheme
// (spiffe://<trust-domain>/tenant/<tenantID>/...), in the verifier's trust domain, on a chain to the current trust
// bundle, with the clientAuth EKU, valid now. Nothing else identifies a tenant — not the Subject CN, not O/OU, not
// DNS SANs — so a certificate for tenant A whose CN says "cmk-B" is still tenant A's, and is refused wherever tenant
// B is expected. A certificate naming no tenant, two different tenants, or another trust domain has no tenant and is
// refused.
//
// The trust bundle may hold several CAs at once (SetBundle), which is how a CA rollover works: publish old+new,
// switch the issuer to the new CA, wait until every certificate of the old CA has expired or been renewed, drop it.
// Changes take effect on the next handshake; no listener restarts.
package mtls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/apeirora/apeiro-cmk/pkg/tenantid"
)

const maxBundleBytes = 1 << 20

// Identity is a verified peer.
type Identity struct {
	// SPIFFEID is the tenant URI SAN, e.g. spiffe://apeiro.example/tenant/acme/component/crypto-manager.
	SPIFFEID string
	Tenant   string
	// Rest are the path segments after the tenant, e.g. [component crypto-manager].
	Rest []string
	// Certificate is the peer's leaf.
	Certificate *x509.Certificate
}

// Component returns the name after "component/" in the SPIFFE ID, or "".
func (id Identity) Component() string {
	for i := 0; i+1 < len(id.Rest); i++ {
		if id.Rest[i] == "component" {
			return id.Rest[i+1]
		}
	}
	return ""
}

// ErrTenantMismatch is wrapped by every refusal of a valid peer for the wrong tenant.
var ErrTenantMismatch = errors.New("peer certificate belongs to another tenant")

// Verifier holds a trust domain and a replaceable trust bundle.
type Verifier struct {
	trustDomain string
	roots       atomic.Pointer[x509.CertPool]
	now         func() time.Time
}

// NewVerifier returns a verifier for trustDomain trusting the CA certificates in bundlePEM.
func NewVerifier(trustDomain string, bundlePEM []byte) (*Verifier, error) {
	if err := validTrustDomain(trustDomain); err != nil {
		return nil, err
	}
	if _, err := tenantid.Format(trustDomain, "probe"); err != nil {
		return nil, fmt.Errorf("mtls: %w", err)
	}
	v := &Verifier{trustDomain: trustDomain, now: time.Now}
	if err := v.SetBundle(bundlePEM); err != nil {
		return nil, err
	}
	return v, nil
}

// validTrustDomain applies the SPIFFE trust domain grammar (lower-case letters, digits, '.', '-', '_'; at most 255
// characters). A trust domain outside it can never match a certificate, so a typo in the configuration would
// otherwise refuse every peer without saying why.
func validTrustDomain(td string) error {
	if td == "" || len(td) > 255 {
		return fmt.Errorf("mtls: trust domain %q must be 1 to 255 characters", td)
	}
	for _, r := range td {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
			return fmt.Errorf("mtls: trust domain %q may contain only lower-case letters, digits, '.', '-' and '_'", td)
		}
	}
	return nil
}

// SetBundle replaces the trusted CAs (all CERTIFICATE blocks of bundlePEM; during a rollover, old and new). An
// invalid bundle leaves the previous one in place.
func (v *Verifier) SetBundle(bundlePEM []byte) error {
	pool, n, err := ParseBundle(bundlePEM)
	if err != nil {
		return err
	}
	if n == 0 {
		return errors.New("mtls: trust bundle holds no CA certificate")
	}
	v.roots.Store(pool)
	return nil
}

// ParseBundle parses a PEM bundle (bounded), accepting only CA certificates.
func ParseBundle(bundlePEM []byte) (*x509.CertPool, int, error) {
	if len(bundlePEM) > maxBundleBytes {
		return nil, 0, fmt.Errorf("mtls: trust bundle exceeds %d bytes", maxBundleBytes)
	}
	pool := x509.NewCertPool()
	n := 0
	rest := bundlePEM
	for {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, 0, fmt.Errorf("mtls: trust bundle certificate %d: %w", n, err)
		}
		if !c.IsCA {
			return nil, 0, fmt.Errorf("mtls: trust bundle certificate %q is not a CA", c.Subject)
		}
		pool.AddCert(c)
		n++
	}
	return pool, n, nil
}

// Identify verifies a peer's chain (leaf first, as presented) for client authentication and returns its identity.
func (v *Verifier) Identify(chain []*x509.Certificate) (Identity, error) {
	if len(chain) == 0 {
		return Identity{}, errors.New("mtls: no client certificate")
	}
	leaf := chain[0]
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: v.roots.Load(), Intermediates: inter, CurrentTime: v.now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return Identity{}, fmt.Errorf("mtls: client certificate not trusted: %w", err)
	}
	var id Identity
	for _, u := range leaf.URIs {
		if u.Scheme != "spiffe" {
			continue
		}
		td, tenant, rest, err := tenantid.Parse(u.String())
		if err != nil {
			return Identity{}, fmt.Errorf("mtls: client certificate: %w", err)
		}
		if td != v.trustDomain {
			return Identity{}, fmt.Errorf("mtls: client certificate SPIFFE ID %q is outside trust domain %q", u, v.trustDomain)
		}
		if id.Tenant != "" && id.Tenant != tenant {
			return Identity{}, fmt.Errorf("mtls: client certificate names two tenants (%q and %q)", id.Tenant, tenant)
		}
		id = Identity{SPIFFEID: u.String(), Tenant: tenant, Rest: rest, Certificate: leaf}
	}
	if id.Tenant == "" {
		return Identity{}, errors.New("mtls: client certificate names no tenant (no spiffe://<trust-domain>/tenant/<tenant> URI SAN)")
	}
	return id, nil
}

// Authorize verifies chain and requires it to belong to tenant.
func (v *Verifier) Authorize(chain []*x509.Certificate, tenant string) (Identity, error) {
	id, err := v.Identify(chain)
	if err != nil {
		return Identity{}, err
	}
	if id.Tenant != tenant {
		return Identity{}, fmt.Errorf("mtls: %w: certificate of tenant %q presented for tenant %q", ErrTenantMismatch, id.Tenant, tenant)
	}
	return id, nil
}

// ServerOptions configures ServerConfig.
type ServerOptions struct {
	// GetCertificate supplies the server's own certificate (e.g. pkg/server's reloader). Required.
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// TenantForServerName, if set, names the tenant a connection is for from its SNI (one host name per tenant);
	// a client of another tenant fails the handshake. Leave nil when the tenant comes from the request
	// (RequireTenant).
	TenantForServerName func(serverName string) (string, error)
}

// ServerConfig returns a TLS ≥ 1.2 server config that requires a client certificate and verifies it with v on every
// handshake (so bundle changes apply at once).
func (v *Verifier) ServerConfig(o ServerOptions) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: o.GetCertificate,
		// The chain is verified in VerifyConnection against the current bundle; RequireAndVerifyClientCert would pin
		// ClientCAs at construction time.
		ClientAuth: tls.RequireAnyClientCert,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if o.TenantForServerName == nil {
				_, err := v.Identify(cs.PeerCertificates)
				return err
			}
			tenant, err := o.TenantForServerName(cs.ServerName)
			if err != nil {
				return fmt.Errorf("mtls: server name %q: %w", cs.ServerName, err)
			}
			_, err = v.Authorize(cs.PeerCertificates, tenant)
			return err
		},
	}
}

type ctxKey struct{}

// IdentityFrom returns the identity RequireTenant stored in the request context.
func IdentityFrom(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(ctxKey{}).(Identity)
	return id, ok
}

// RequireTenant guards next: the request's tenant (tenantOf, e.g. from the URL path) must be the tenant of the
// client certificate, else 403. A request without a verified client certificate gets 401. The identity is put into
// the request context (IdentityFrom).
func (v *Verifier) RequireTenant(next http.Handler, tenantOf func(*http.Request) (string, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
			http.Error(w, "client certificate required", http.StatusUnauthorized)
			return
		}
		tenant, err := tenantOf(r)
		if err != nil {
			http.Error(w, "no tenant in request: "+err.Error(), http.StatusBadRequest)
			return
		}
		id, err := v.Authorize(r.TLS.PeerCertificates, tenant)
		switch {
		case errors.Is(err, ErrTenantMismatch):
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		case err != nil:
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, id)))
	})
}

// ClientConfig returns a TLS ≥ 1.2 client config presenting the certificate from getCert (re-read per handshake, so
// renewals apply) and verifying the server against serverRoots for serverName.
func ClientConfig(getCert func(*tls.CertificateRequestInfo) (*tls.Certificate, error), serverRoots *x509.CertPool, serverName string) *tls.Config {
	return &tls.Config{
		MinVersion:           tls.VersionTLS12,
		GetClientCertificate: getCert,
		RootCAs:              serverRoots,
		ServerName:           serverName,
	}
}
