// Package tenantid is the one place that says how a tenant is named inside an X.509 or SPIFFE identity, so the
// certificate issuer (which writes it), the identity layer (which reads workload SPIFFE IDs) and the mTLS
// verifier (which enforces it) cannot disagree.
//
// Scheme: spiffe://<trust-domain>/tenant/<tenantID>[/<kind>/<name>...]
//
//   - tenantID is a Tenant object name (a DNS-1123 subdomain, so it is a valid URI path segment as it is);
//   - the rest names what inside the tenant holds the identity, e.g. component/crypto-manager for a CMK
//     component's client certificate, or ns/<namespace>/sa/<serviceaccount> for a workload registered in SPIRE.
//
// An ID whose path does not start with /tenant/<valid tenant>/ belongs to no tenant.
package tenantid

import (
	"fmt"
	"net/url"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Format builds the SPIFFE ID of rest (path segments, may be empty) inside tenant in trustDomain.
func Format(trustDomain, tenant string, rest ...string) (*url.URL, error) {
	if err := ValidateTenant(tenant); err != nil {
		return nil, err
	}
	if trustDomain == "" || strings.ContainsAny(trustDomain, "/:@?#") {
		return nil, fmt.Errorf("invalid trust domain %q", trustDomain)
	}
	segs := []string{"tenant", tenant}
	for _, r := range rest {
		if r == "" || r == "." || r == ".." || strings.ContainsAny(r, "/?#%") {
			return nil, fmt.Errorf("invalid SPIFFE ID path segment %q", r)
		}
		segs = append(segs, r)
	}
	return &url.URL{Scheme: "spiffe", Host: trustDomain, Path: "/" + strings.Join(segs, "/")}, nil
}

// Parse returns the trust domain, tenant and remaining path segments of a SPIFFE ID in this scheme.
func Parse(id string) (trustDomain, tenant string, rest []string, err error) {
	u, err := url.Parse(id)
	if err != nil {
		return "", "", nil, fmt.Errorf("invalid SPIFFE ID: %w", err)
	}
	if u.Scheme != "spiffe" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return "", "", nil, fmt.Errorf("invalid SPIFFE ID %q: want spiffe://<trust-domain>/tenant/<tenant>/...", id)
	}
	segs := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
	if len(segs) < 2 || segs[0] != "tenant" {
		return "", "", nil, fmt.Errorf("SPIFFE ID %q names no tenant: its path must start with /tenant/<tenant>", id)
	}
	if err := ValidateTenant(segs[1]); err != nil {
		return "", "", nil, fmt.Errorf("SPIFFE ID %q: %w", id, err)
	}
	for _, s := range segs[2:] {
		if s == "" || s == "." || s == ".." {
			return "", "", nil, fmt.Errorf("SPIFFE ID %q has an empty or relative path segment", id)
		}
	}
	return u.Host, segs[1], segs[2:], nil
}

// ValidateTenant checks that tenant is a valid Tenant name (DNS-1123 subdomain).
func ValidateTenant(tenant string) error {
	if errs := validation.IsDNS1123Subdomain(tenant); len(errs) > 0 {
		return fmt.Errorf("invalid tenant ID %q: %s", tenant, strings.Join(errs, "; "))
	}
	return nil
}
