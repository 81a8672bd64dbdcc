// Package openbao is the OpenBao transit keystore (BYOK, FR-3.2): both CMK keystore services under one profile
// name ("OPENBAO") plus the in-process keychain.Wrapper, speaking OpenBao's HTTP API through
// github.com/openbao/openbao/api/v2. Every tenant owns one transit mount, <mountPrefix>/<tenant>; a key is named
// inside that mount only, so no tenant can address another tenant's key. The plugin holds no long-lived token: it
// logs in with Kubernetes, AppRole or cert auth and renews / re-acquires its token itself. See
// docs/keystore-openbao.md.
package openbao

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/keystoreconfig"
)

// Config is the yamlConfiguration of both plugins. Every field is optional at load time: the server is contacted
// on the first call, so a profile naming OPENBAO loads on a machine without any server.
//
//	address: https://openbao.openbao.svc:8200   # else BAO_ADDR, else VAULT_ADDR
//	caCertFile: /etc/openbao/ca.crt             # server CA (PEM); TLS >= 1.2 always
//	mountPrefix: transit                        # tenant mounts are <mountPrefix>/<tenant>
//	region: eu-central-1                        # locality reported for keys (default "openbao")
//	auth:
//	  method: kubernetes | approle | cert
//	  mount: kubernetes                         # auth mount (default: the method name)
//	  role: apeiro-cmk                          # kubernetes role / cert role name
//	  tokenFile: /var/run/secrets/tokens/openbao  # kubernetes: projected service-account token
//	  roleId: <role id> | roleIdFile: <path>    # approle (the role id is an identifier, not a secret)
//	  secretIdFile: /var/run/secrets/approle/secret-id   # approle: the secret id, from a file / mounted Secret
//	  certFile / keyFile: client certificate and key (cert auth; the certificate-issuer plugin can issue it)
//	callTimeout: 10s                            # per HTTP request
//	budget: 30s                                 # per RPC when the caller set no deadline
//	defaultDeletionWindowDays: 7                # DeleteKey without a window
//	supportedregions: {...}                     # injected by CMK (management)
type Config struct {
	Address                   string                    `json:"address,omitempty"`
	CACertFile                string                    `json:"caCertFile,omitempty"`
	MountPrefix               string                    `json:"mountPrefix,omitempty"`
	Region                    string                    `json:"region,omitempty"`
	Auth                      *AuthConfig               `json:"auth,omitempty"`
	CallTimeout               string                    `json:"callTimeout,omitempty"`
	Budget                    string                    `json:"budget,omitempty"`
	DefaultDeletionWindowDays *int32                    `json:"defaultDeletionWindowDays,omitempty"`
	SupportedRegions          *keystoreconfig.SourceRef `json:"supportedregions,omitempty"`

	callTimeout, budget time.Duration
	warnings            keystoreconfig.Warnings
}

// AuthConfig selects how the plugin obtains its (short-lived) token.
type AuthConfig struct {
	Method       string `json:"method,omitempty"`
	Mount        string `json:"mount,omitempty"`
	Role         string `json:"role,omitempty"`
	TokenFile    string `json:"tokenFile,omitempty"`
	RoleID       string `json:"roleId,omitempty"`
	RoleIDFile   string `json:"roleIdFile,omitempty"`
	SecretIDFile string `json:"secretIdFile,omitempty"`
	CertFile     string `json:"certFile,omitempty"`
	KeyFile      string `json:"keyFile,omitempty"`
}

// Auth methods.
const (
	AuthKubernetes = "kubernetes"
	AuthAppRole    = "approle"
	AuthCert       = "cert"
)

// Defaults and bounds.
const (
	DefaultMountPrefix        = "transit"
	DefaultRegion             = "openbao"
	DefaultKubernetesToken    = "/var/run/secrets/kubernetes.io/serviceaccount/token"
	defaultCallTimeout        = 10 * time.Second
	defaultBudget             = 30 * time.Second
	defaultDeletionWindowDays = 7
	maxDeletionWindowDays     = 365
)

var (
	mountRE  = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}(/[a-z0-9][a-z0-9_-]{0,62}){0,3}$`)
	tenantRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	keyRE    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)
	roleRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$`)
)

// ErrLongLivedToken marks a configuration that carries a token: the plugin only logs in.
var ErrLongLivedToken = errors.New("a token in the configuration is refused: the openbao keystore logs in with kubernetes, approle or cert auth and holds only short-lived tokens")

// ParseConfig decodes and validates a yamlConfiguration (the shared tolerant parser: unknown keys are warnings,
// CMK's injected supportedregions is accepted).
func ParseConfig(yamlConfiguration string) (*Config, error) {
	c := &Config{}
	w, err := keystoreconfig.Decode(expandEnv(yamlConfiguration), c)
	if err != nil {
		return nil, fmt.Errorf("invalid openbao keystore configuration: %w", err)
	}
	for _, k := range w {
		if n := strings.ToLower(k); n == "token" || strings.HasSuffix(n, ".token") || n == "roottoken" || n == "bao_token" || n == "vault_token" {
			return nil, fmt.Errorf("invalid openbao keystore configuration: %q: %w", k, ErrLongLivedToken)
		}
	}
	c.warnings = w
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("invalid openbao keystore configuration: %w", err)
	}
	return c, nil
}

func (c *Config) validate() error {
	if c.Address != "" {
		u, err := url.Parse(c.Address)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			return fmt.Errorf("address %q must be http(s)://host[:port] without path, query or credentials", trunc(c.Address))
		}
	}
	if c.MountPrefix == "" {
		c.MountPrefix = DefaultMountPrefix
	}
	c.MountPrefix = strings.Trim(c.MountPrefix, "/")
	if !mountRE.MatchString(c.MountPrefix) {
		return fmt.Errorf("mountPrefix %q must be lower-case path segments [a-z0-9_-]", trunc(c.MountPrefix))
	}
	if c.Region == "" {
		c.Region = DefaultRegion
	}
	var err error
	if c.callTimeout, err = dur("callTimeout", c.CallTimeout, defaultCallTimeout, 100*time.Millisecond, 5*time.Minute); err != nil {
		return err
	}
	if c.budget, err = dur("budget", c.Budget, defaultBudget, 100*time.Millisecond, 10*time.Minute); err != nil {
		return err
	}
	if d := c.DefaultDeletionWindowDays; d != nil && (*d < 0 || *d > maxDeletionWindowDays) {
		return fmt.Errorf("defaultDeletionWindowDays must be 0..%d", maxDeletionWindowDays)
	}
	if a := c.Auth; a != nil {
		switch a.Method {
		case AuthKubernetes:
			if a.Role == "" {
				return errors.New("auth.role is required for kubernetes auth")
			}
			if a.TokenFile == "" {
				a.TokenFile = DefaultKubernetesToken
			}
		case AuthAppRole:
			if (a.RoleID == "") == (a.RoleIDFile == "") {
				return errors.New("approle auth needs exactly one of auth.roleId and auth.roleIdFile")
			}
			if a.SecretIDFile == "" {
				return errors.New("auth.secretIdFile is required for approle auth (the secret id is never inline)")
			}
		case AuthCert:
			if a.CertFile == "" || a.KeyFile == "" {
				return errors.New("auth.certFile and auth.keyFile are required for cert auth")
			}
		case "":
			return errors.New("auth.method is required (kubernetes, approle or cert)")
		default:
			return fmt.Errorf("auth.method %q is not kubernetes, approle or cert", trunc(a.Method))
		}
		if a.Mount == "" {
			a.Mount = a.Method
		}
		a.Mount = strings.Trim(a.Mount, "/")
		if !mountRE.MatchString(a.Mount) {
			return fmt.Errorf("auth.mount %q must be lower-case path segments", trunc(a.Mount))
		}
		if a.Role != "" && !roleRE.MatchString(a.Role) {
			return fmt.Errorf("auth.role %q is not a role name", trunc(a.Role))
		}
	}
	if c.SupportedRegions != nil {
		if _, err := keystoreconfig.ParseRegions(c.SupportedRegions); err != nil {
			return fmt.Errorf("supportedregions: %w", err)
		}
	}
	return nil
}

func dur(field, s string, def, lo, hi time.Duration) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < lo || d > hi {
		return 0, fmt.Errorf("%s %q must be a duration in %s..%s", field, trunc(s), lo, hi)
	}
	return d, nil
}

// expandEnv expands $VAR, ${VAR} and ${VAR:-default} (default when VAR is unset or empty), so one profile serves
// every deployment: the address and auth settings come from the pod's environment.
func expandEnv(s string) string {
	if len(s) > keystoreconfig.MaxConfigBytes {
		return s
	}
	return os.Expand(s, func(name string) string {
		if i := strings.Index(name, ":-"); i >= 0 {
			if v := os.Getenv(name[:i]); v != "" {
				return v
			}
			return name[i+2:]
		}
		return os.Getenv(name)
	})
}

// address is the configured server, else the environment (BAO_ADDR, VAULT_ADDR).
func (c *Config) address() string {
	for _, a := range []string{c.Address, os.Getenv("BAO_ADDR"), os.Getenv("VAULT_ADDR")} {
		if a != "" {
			return a
		}
	}
	return ""
}

// MountFor is the transit mount of tenant.
func (c *Config) MountFor(tenant string) string { return c.MountPrefix + "/" + tenant }

func (c *Config) deletionWindow() int32 {
	if c.DefaultDeletionWindowDays != nil {
		return *c.DefaultDeletionWindowDays
	}
	return defaultDeletionWindowDays
}

func trunc(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
