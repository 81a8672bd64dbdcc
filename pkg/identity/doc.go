// Package identity verifies who is calling: OIDC tokens of the platform IdP and of tenants' own IdPs (go-oidc with
// a rate-limited JWKS cache per issuer, an asymmetric-only algorithm allowlist, strict token shape checks), SPIFFE
// X.509- and JWT-SVIDs (go-spiffe, bundles from the Workload API or files), and maps Platform Mesh workspace roles to
// Kubernetes groups and CMK permissions. It serves the API server's TokenReview webhook (TokenReviewHandler) and
// the workload key endpoint (WorkloadKeyHandler). Outbound HTTP is always a netguard client. See docs/identity.md.
package identity
