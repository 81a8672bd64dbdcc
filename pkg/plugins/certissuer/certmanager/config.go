package certmanager

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/apeirora/apeiro-cmk/pkg/tenantid"
)

const (
	defaultTimeout         = 30 * time.Second
	maxTimeout             = 10 * time.Minute
	defaultMaxValidityDays = 90
	maxAllowedValidityDays = 825
	defaultComponent       = "cmk-tenant"
	defaultMinRSABits      = 2048
	maxConfigBytes         = 64 << 10
)

// Config is the YAML accepted by Configure. Unknown fields are rejected.
//
//	kubeconfig: /etc/apeiro/kubeconfig   # optional; in-cluster service account when empty
//	namespace: cmk-certificates          # where CertificateRequests are created (required)
//	issuerRef:                           # the Issuer or ClusterIssuer that signs (required)
//	  name: apeiro-tenant-ca
//	  kind: ClusterIssuer                # Issuer (default) or ClusterIssuer
//	  group: cert-manager.io             # default cert-manager.io
//	trustDomain: apeiro.example          # SPIFFE trust domain of the tenant URI SAN (required)
//	component: cmk-tenant                # component segment of the URI SAN (default cmk-tenant)
//	tenantCNPrefix: "cmk-"               # CN = prefix + tenantID; CNs without it are refused
//	maxValidityDays: 90                  # longest validity granted (≤ 825)
//	minRSABits: 2048                     # weakest RSA key signed (2048..8192; CMK sends 3072)
//	timeout: 30s                         # bound on approval + issuance per request (≤ 10m)
type Config struct {
	Kubeconfig      string    `json:"kubeconfig,omitempty"`
	Namespace       string    `json:"namespace,omitempty"`
	IssuerRef       IssuerRef `json:"issuerRef,omitempty"`
	TrustDomain     string    `json:"trustDomain,omitempty"`
	Component       string    `json:"component,omitempty"`
	TenantCNPrefix  string    `json:"tenantCNPrefix,omitempty"`
	MaxValidityDays int       `json:"maxValidityDays,omitempty"`
	MinRSABits      int       `json:"minRSABits,omitempty"`
	Timeout         string    `json:"timeout,omitempty"`
}

// IssuerRef names the cert-manager issuer.
type IssuerRef struct {
	Name  string `json:"name,omitempty"`
	Kind  string `json:"kind,omitempty"`
	Group string `json:"group,omitempty"`
}

// settings is a validated Config.
type settings struct {
	kubeconfig  string
	namespace   string
	issuer      IssuerRef
	trustDomain string
	component   string
	prefix      string
	maxValidity int // days
	minRSABits  int
	timeout     time.Duration
}

var (
	prefixRE      = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{0,23}$`)
	trustDomainRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$`)
	// ErrNoConfig is returned for an empty configuration: without a namespace and an issuer nothing can be signed.
	ErrNoConfig = errors.New("configuration required: namespace, issuerRef.name and trustDomain must be set")
)

// parseConfig decodes and validates YAML; it never touches the network.
func parseConfig(raw string) (*settings, error) {
	if len(raw) > maxConfigBytes {
		return nil, fmt.Errorf("configuration exceeds %d bytes", maxConfigBytes)
	}
	if strings.TrimSpace(raw) == "" {
		return nil, ErrNoConfig
	}
	cfg := &Config{}
	if err := yaml.UnmarshalStrict([]byte(raw), cfg); err != nil {
		return nil, fmt.Errorf("decode YAML: %w", err)
	}
	s := &settings{
		kubeconfig:  cfg.Kubeconfig,
		namespace:   cfg.Namespace,
		issuer:      cfg.IssuerRef,
		trustDomain: cfg.TrustDomain,
		component:   cfg.Component,
		prefix:      cfg.TenantCNPrefix,
		maxValidity: cfg.MaxValidityDays,
		minRSABits:  cfg.MinRSABits,
		timeout:     defaultTimeout,
	}
	if s.namespace == "" || s.issuer.Name == "" || s.trustDomain == "" {
		return nil, ErrNoConfig
	}
	if err := tenantid.ValidateTenant(s.namespace); err != nil || len(s.namespace) > 63 || strings.Contains(s.namespace, ".") {
		return nil, fmt.Errorf("namespace %q is not a valid namespace name", s.namespace)
	}
	if err := tenantid.ValidateTenant(s.issuer.Name); err != nil {
		return nil, fmt.Errorf("issuerRef.name %q is not a valid object name", s.issuer.Name)
	}
	switch s.issuer.Kind {
	case "":
		s.issuer.Kind = "Issuer"
	case "Issuer", "ClusterIssuer":
	default:
		return nil, fmt.Errorf("issuerRef.kind %q: want Issuer or ClusterIssuer", s.issuer.Kind)
	}
	switch s.issuer.Group {
	case "":
		s.issuer.Group = "cert-manager.io"
	case "cert-manager.io":
	default:
		// External issuers (other groups) work with cert-manager too, but then "Issuer not found" cannot be checked
		// up front; accept only the built-in group until someone needs more.
		return nil, fmt.Errorf("issuerRef.group %q: only cert-manager.io is supported", s.issuer.Group)
	}
	if !trustDomainRE.MatchString(s.trustDomain) {
		return nil, fmt.Errorf("trustDomain %q: lower-case letters, digits, '.' and '-' only", s.trustDomain)
	}
	if s.component == "" {
		s.component = defaultComponent
	}
	if err := tenantid.ValidateTenant(s.component); err != nil {
		return nil, fmt.Errorf("component %q: lower-case DNS label characters only", s.component)
	}
	if s.prefix != "" && !prefixRE.MatchString(s.prefix) {
		return nil, fmt.Errorf("tenantCNPrefix %q: at most 24 characters from [a-z0-9.-], starting alphanumeric", s.prefix)
	}
	if s.maxValidity == 0 {
		s.maxValidity = defaultMaxValidityDays
	}
	if s.maxValidity < 1 || s.maxValidity > maxAllowedValidityDays {
		return nil, fmt.Errorf("maxValidityDays must be between 1 and %d", maxAllowedValidityDays)
	}
	if s.minRSABits == 0 {
		s.minRSABits = defaultMinRSABits
	}
	if s.minRSABits < 2048 || s.minRSABits > 8192 {
		return nil, fmt.Errorf("minRSABits must be between 2048 and 8192")
	}
	if cfg.Timeout != "" {
		d, err := time.ParseDuration(cfg.Timeout)
		if err != nil {
			return nil, fmt.Errorf("timeout: %w", err)
		}
		if d < time.Second || d > maxTimeout {
			return nil, fmt.Errorf("timeout %s: must be between 1s and %s", d, maxTimeout)
		}
		s.timeout = d
	}
	return s, nil
}
