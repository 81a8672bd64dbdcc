package apeiro

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/apeirora/apeiro-cmk/pkg/identity"
	"github.com/apeirora/apeiro-cmk/pkg/netguard"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/keystoreconfig"
	"github.com/apeirora/apeiro-cmk/pkg/tenantid"
)

// Defaults.
const (
	DefaultCacheTTL     = 5 * time.Minute
	DefaultCallTimeout  = 5 * time.Second
	negativeCacheTTL    = 30 * time.Second
	maxConfigBytes      = 256 << 10
	tenantPlaceholder   = "{tenant}"
	defaultAdminRealm   = "master"
	defaultRealmPattern = tenantPlaceholder
)

// Config is the plugin YAML. Unknown fields are rejected. Configure makes no network call: the directory is
// reached on the first lookup, so a profile loads while the IdP is down.
//
//	tenantKey: app_tid                 # AuthContext key naming the tenant; empty: one realm for every request
//	directory:
//	  url: https://keycloak.example.org   # Keycloak base URL (public https name; netguard rules apply)
//	  realm: "{tenant}"                   # realm per tenant ({tenant} is replaced), or a fixed realm name
//	  adminRealm: master                  # realm of the service account (token endpoint)
//	  clientID: cmk-directory
//	  clientSecret: {source: env, env: KEYCLOAK_CLIENT_SECRET}
//	  caFile: /etc/apeiro/keycloak-ca.pem # optional extra trust
//	  callTimeout: 5s
//	cacheTTL: 5m
//	roles:                                # workspace role → CMK permissions (default: identity.DefaultRoles)
//	  Viewer: [tenants.read, accounts.read, keys.read, notifications.read]
type Config struct {
	TenantKey string              `json:"tenantKey,omitempty"`
	Directory *DirectoryConfig    `json:"directory,omitempty"`
	CacheTTL  string              `json:"cacheTTL,omitempty"`
	Roles     map[string][]string `json:"roles,omitempty"`
	// AllGroups lists every group of the realm from GetAllGroups instead of only the groups that are roles.
	AllGroups bool `json:"allGroups,omitempty"`
}

// DirectoryConfig locates the Keycloak Admin REST API.
type DirectoryConfig struct {
	URL          string                    `json:"url"`
	Realm        string                    `json:"realm,omitempty"`
	AdminRealm   string                    `json:"adminRealm,omitempty"`
	TokenURL     string                    `json:"tokenURL,omitempty"`
	ClientID     string                    `json:"clientID"`
	ClientSecret *keystoreconfig.SourceRef `json:"clientSecret"`
	CAFile       string                    `json:"caFile,omitempty"`
	CallTimeout  string                    `json:"callTimeout,omitempty"`
	// AllowLoopback lets the directory live on 127.0.0.1 / ::1. Tests and local development only: it is the one
	// exception to the outbound address rules and admits loopback, nothing else.
	AllowLoopback bool `json:"allowLoopback,omitempty"`
}

// settings is a validated Config.
type settings struct {
	tenantKey    string
	realm        string // pattern
	base         *url.URL
	tokenURL     string
	clientID     string
	clientSecret string
	callTimeout  time.Duration
	cacheTTL     time.Duration
	roles        *identity.RoleMap
	allGroups    bool
	clientOpts   netguard.ClientOptions
}

func parseConfig(raw string) (*settings, error) {
	if len(raw) > maxConfigBytes {
		return nil, fmt.Errorf("configuration is larger than %d bytes", maxConfigBytes)
	}
	var c Config
	if strings.TrimSpace(raw) != "" {
		if err := yaml.UnmarshalStrict([]byte(raw), &c); err != nil {
			return nil, fmt.Errorf("decode YAML: %w", err)
		}
	}
	var errs []error
	s := &settings{tenantKey: c.TenantKey, cacheTTL: DefaultCacheTTL, callTimeout: DefaultCallTimeout, allGroups: c.AllGroups}
	if c.CacheTTL != "" {
		d, err := time.ParseDuration(c.CacheTTL)
		if err != nil || d < 0 || d > time.Hour {
			errs = append(errs, fmt.Errorf("cacheTTL %q: want a duration between 0 and 1h", c.CacheTTL))
		}
		s.cacheTTL = d
	}
	roles, err := identity.NewRoleMap(identity.RoleConfig{Roles: c.Roles})
	if err != nil {
		errs = append(errs, err)
	}
	s.roles = roles
	if c.Directory == nil {
		// No directory: an empty one. The profile can be loaded before the platform IdP is wired in.
		return s, errors.Join(errs...)
	}
	d := c.Directory
	s.realm = d.Realm
	if s.realm == "" {
		s.realm = defaultRealmPattern
	}
	switch {
	case s.tenantKey == "" && strings.Contains(s.realm, tenantPlaceholder):
		errs = append(errs, fmt.Errorf("directory.realm %q uses %s but tenantKey is not set", s.realm, tenantPlaceholder))
	case strings.ContainsAny(strings.ReplaceAll(s.realm, tenantPlaceholder, ""), "/?#%{} "):
		errs = append(errs, fmt.Errorf("directory.realm %q contains characters not allowed in a realm name", s.realm))
	}
	u, err := url.Parse(d.URL)
	if d.URL == "" || err != nil || u.Scheme != "https" || u.Host == "" {
		errs = append(errs, fmt.Errorf("directory.url %q: want the https base URL of Keycloak", d.URL))
	} else {
		u.Path = strings.TrimSuffix(u.Path, "/")
		s.base = u
	}
	if d.ClientID == "" {
		errs = append(errs, errors.New("directory.clientID is required"))
	}
	s.clientID = d.ClientID
	if d.ClientSecret == nil {
		errs = append(errs, errors.New("directory.clientSecret is required (a SourceRef: embedded, env or file)"))
	} else if sec, err := d.ClientSecret.LoadString(); err != nil {
		errs = append(errs, fmt.Errorf("directory.clientSecret: %w", err))
	} else {
		s.clientSecret = strings.TrimSpace(sec)
	}
	if d.CallTimeout != "" {
		t, err := time.ParseDuration(d.CallTimeout)
		if err != nil || t <= 0 || t > time.Minute {
			errs = append(errs, fmt.Errorf("directory.callTimeout %q: want a duration up to 1m", d.CallTimeout))
		}
		s.callTimeout = t
	}
	admin := d.AdminRealm
	if admin == "" {
		admin = defaultAdminRealm
	}
	s.tokenURL = d.TokenURL
	if s.tokenURL == "" && s.base != nil {
		s.tokenURL = s.base.String() + "/realms/" + url.PathEscape(admin) + "/protocol/openid-connect/token"
	}
	s.clientOpts = netguard.ClientOptions{Timeout: s.callTimeout, AllowLoopback: d.AllowLoopback, MaxResponseBytes: 8 << 20}
	if d.CAFile != "" {
		pem, err := os.ReadFile(d.CAFile)
		pool, _ := x509.SystemCertPool()
		if pool == nil {
			pool = x509.NewCertPool()
		}
		if err != nil || !pool.AppendCertsFromPEM(pem) {
			errs = append(errs, fmt.Errorf("directory.caFile %q: no PEM certificates could be read", d.CAFile))
		}
		s.clientOpts.TLSConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return s, errors.Join(errs...)
}

// realmFor returns the realm of a tenant ("" tenant for unscoped configurations).
func (s *settings) realmFor(tenant string) (string, error) {
	if s.tenantKey == "" {
		return s.realm, nil
	}
	if err := tenantid.ValidateTenant(tenant); err != nil {
		return "", err
	}
	return strings.ReplaceAll(s.realm, tenantPlaceholder, tenant), nil
}
