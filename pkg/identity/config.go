package identity

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// Config is the identity sidecar's YAML (the webhook server's --identity-config). Unknown fields are rejected.
//
//	platform:                            # the platform IdP (Keycloak realm), discovered lazily
//	  - url: https://keycloak.example.org/realms/platform-mesh
//	    audiences: [cmk]
//	usernameClaim: preferred_username    # default sub
//	tenantIssuers: true                  # also trust each Tenant's spec.oidcProvider for its own tenant
//	roles: {Viewer: [keys.read, ...]}    # same schema and defaults as the identity plugin's roles
//	rolesClaim: groups
//	spiffe:
//	  workloadAPIAddr: unix:///run/spire/agent.sock
//	  trustDomains: [apeiro.example]
//	  audiences: [cmk]
//	workloadKeys:
//	  bindAddress: ":9444"               # mTLS endpoint for workloads; empty: off
//	allowLoopback: false                 # tests and local development only
type Config struct {
	Platform           []IssuerConfig      `json:"platform,omitempty"`
	UsernameClaim      string              `json:"usernameClaim,omitempty"`
	UsernamePrefix     string              `json:"usernamePrefix,omitempty"`
	TenantIssuers      bool                `json:"tenantIssuers,omitempty"`
	Roles              map[string][]string `json:"roles,omitempty"`
	RolesClaim         string              `json:"rolesClaim,omitempty"`
	MinRefreshInterval string              `json:"minRefreshInterval,omitempty"`
	Leeway             string              `json:"leeway,omitempty"`
	SPIFFE             *SPIFFEConfig       `json:"spiffe,omitempty"`
	WorkloadKeys       *WorkloadKeysConfig `json:"workloadKeys,omitempty"`
	// AllowLoopback lets discovery and JWKS requests reach an IdP on 127.0.0.1 / ::1. Tests and local development
	// only (the end-to-end suite runs its IdP on loopback): it is the one exception to the outbound address rules
	// and admits loopback, nothing else. The IdP's CA comes from the system roots (SSL_CERT_FILE / SSL_CERT_DIR).
	AllowLoopback bool `json:"allowLoopback,omitempty"`
}

// WorkloadKeysConfig configures the workload key endpoint.
type WorkloadKeysConfig struct {
	BindAddress string `json:"bindAddress"`
}

// LoadConfig reads and validates a Config file.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("identity config: %w", err)
	}
	return ParseConfig(b)
}

// ParseConfig decodes and validates a Config.
func ParseConfig(b []byte) (*Config, error) {
	var c Config
	if err := yaml.UnmarshalStrict(b, &c); err != nil {
		return nil, fmt.Errorf("identity config: %w", err)
	}
	var errs []error
	for i, p := range c.Platform {
		if !strings.HasPrefix(p.URL, "https://") {
			errs = append(errs, fmt.Errorf("platform[%d].url %q: https required", i, p.URL))
		}
		if len(p.Audiences) == 0 {
			errs = append(errs, fmt.Errorf("platform[%d].audiences: at least one audience is required", i))
		}
		if p.Tenant != "" {
			errs = append(errs, fmt.Errorf("platform[%d].tenant: platform issuers are not tenant-scoped", i))
		}
	}
	for _, d := range []struct{ name, v string }{{"minRefreshInterval", c.MinRefreshInterval}, {"leeway", c.Leeway}} {
		if d.v == "" {
			continue
		}
		if v, err := time.ParseDuration(d.v); err != nil || v < 0 || v > time.Hour {
			errs = append(errs, fmt.Errorf("%s %q: want a duration up to 1h", d.name, d.v))
		}
	}
	if c.SPIFFE != nil && c.SPIFFE.WorkloadAPIAddr == "" && len(c.SPIFFE.BundleFiles) == 0 {
		errs = append(errs, errors.New("spiffe: set workloadAPIAddr or bundleFiles"))
	}
	if c.WorkloadKeys != nil && c.WorkloadKeys.BindAddress != "" && c.SPIFFE == nil {
		errs = append(errs, errors.New("workloadKeys needs spiffe (workloads authenticate with SVIDs)"))
	}
	if _, err := NewRoleMap(RoleConfig{Roles: c.Roles, RolesClaim: c.RolesClaim}); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("identity config: %w", err)
	}
	return &c, nil
}

// Build opens what the configuration names: the role map (groupPrefix is the admission webhook's
// --tenant-admin-group-prefix, so both sides always agree), the SPIFFE source (within spiffeTimeout) and the
// Authenticator. client must come from netguard.NewClient. The caller closes the returned SPIFFEVerifier.
func (c *Config) Build(ctx context.Context, client *http.Client, groupPrefix string, spiffeTimeout time.Duration) (*Authenticator, *SPIFFEVerifier, error) {
	roles, err := NewRoleMap(RoleConfig{Roles: c.Roles, RolesClaim: c.RolesClaim, GroupPrefix: groupPrefix})
	if err != nil {
		return nil, nil, err
	}
	var sv *SPIFFEVerifier
	if c.SPIFFE != nil {
		if sv, err = OpenSPIFFE(ctx, *c.SPIFFE, spiffeTimeout); err != nil {
			return nil, nil, err
		}
	}
	o := Options{Platform: c.Platform, Roles: roles, SPIFFE: sv, Client: client, UsernameClaim: c.UsernameClaim, UsernamePrefix: c.UsernamePrefix}
	o.MinRefreshInterval, _ = time.ParseDuration(c.MinRefreshInterval)
	o.Leeway, _ = time.ParseDuration(c.Leeway)
	a, err := New(o)
	if err != nil {
		_ = sv.Close()
		return nil, nil, err
	}
	return a, sv, nil
}
