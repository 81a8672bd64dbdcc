// Package thales is the Thales (Luna) HSM keystore, reached through PKCS#11: the KeystoreProvider and
// KeystoreInstanceKeyOperation plugins (profile name THALES, tagged hyok) and the in-process keychain.Wrapper.
// Key material never leaves the token: keys are generated inside it sensitive and non-extractable, and every
// cryptographic operation (the AES-GCM that wraps ServiceEncryptionKeys included) runs inside the token. Tests run
// against SoftHSM2, which speaks the same PKCS#11 interface. See docs/keystore-thales.md.
package thales

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/keystoreconfig"
)

// Config is the yamlConfiguration of both Thales plugins. With Configure("") the plugins load without opening
// anything: the module is opened on the first call that needs the token, so a profile naming THALES loads on a
// machine without an HSM.
//
//	module: /usr/lib/libCryptoki2_64.so      # PKCS#11 module (else APEIRO_PKCS11_MODULE); ${VAR:-default} expanded
//	tokens:                                  # tokens the plugin may use; the first is the default
//	  - label: apeiro                         # token label (or labelRef: a reference to it)
//	    pin: {source: file, file: {path: /etc/apeiro/thales/pin}}   # never inline (source embedded is refused)
//	maxSessions: 8                           # per token (bounded pool)
//	budget: 10s                              # per call when the caller set no deadline
//	supportedregions: ...                    # injected by CMK (management)
type Config struct {
	Module           string                    `json:"module,omitempty"`
	Tokens           []TokenConfig             `json:"tokens,omitempty"`
	MaxSessions      int                       `json:"maxSessions,omitempty"`
	Budget           string                    `json:"budget,omitempty"`
	Region           string                    `json:"region,omitempty"`
	SupportedRegions *keystoreconfig.SourceRef `json:"supportedregions,omitempty"`

	budget   time.Duration
	warnings keystoreconfig.Warnings
}

// TokenConfig names one token and where its user PIN is read from.
type TokenConfig struct {
	Label    string                    `json:"label,omitempty"`
	LabelRef *keystoreconfig.SourceRef `json:"labelRef,omitempty"`
	PIN      *keystoreconfig.SourceRef `json:"pin,omitempty"`
}

// Defaults and bounds.
const (
	defaultMaxSessions = 8
	maxMaxSessions     = 256
	defaultBudget      = 10 * time.Second
	// DefaultRegion is reported when neither the configuration nor CMK names one: an HSM sits where it sits.
	DefaultRegion = "hsm"
	// maxLabelBytes is CK_TOKEN_INFO's label field (32) for tokens; object labels are bounded at 128.
	maxTokenLabelBytes  = 32
	maxObjectLabelBytes = 128
)

// ErrInlinePIN marks a refused inline PIN.
var ErrInlinePIN = errors.New("the PIN must come from a reference (source file or env), never inline in the configuration")

var tokenLabelRE = regexp.MustCompile(`^[\x20-\x7e]{1,32}$`)

// ParseConfig parses and validates the YAML; errors name the field and never contain a PIN.
func ParseConfig(data string) (*Config, error) {
	const prefix = "invalid thales keystore configuration"
	if len(data) > keystoreconfig.MaxConfigBytes {
		return nil, fmt.Errorf("%s: %d bytes, more than %d", prefix, len(data), keystoreconfig.MaxConfigBytes)
	}
	if strings.TrimSpace(data) != "" {
		var raw map[string]any
		if err := yaml.Unmarshal([]byte(data), &raw); err == nil {
			if p := inlinePIN(raw); p != "" {
				return nil, fmt.Errorf("%s: %s: %w", prefix, p, ErrInlinePIN)
			}
		}
	}
	var c Config
	w, err := keystoreconfig.Decode(data, &c)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", prefix, err)
	}
	c.warnings = w
	c.Module = expandEnv(c.Module)
	for i := range c.Tokens {
		c.Tokens[i].Label = expandEnv(c.Tokens[i].Label)
	}
	if c.Module != "" && !filepath.IsAbs(c.Module) {
		return nil, fmt.Errorf("%s: module %q must be an absolute path", prefix, truncate(c.Module))
	}
	seen := map[string]bool{}
	for i := range c.Tokens {
		t := &c.Tokens[i]
		if (t.Label == "") == (t.LabelRef == nil) {
			return nil, fmt.Errorf("%s: tokens[%d]: exactly one of label and labelRef is required", prefix, i)
		}
		if t.Label != "" && !tokenLabelRE.MatchString(t.Label) {
			return nil, fmt.Errorf("%s: tokens[%d].label must be 1..%d printable ASCII characters", prefix, i, maxTokenLabelBytes)
		}
		if t.Label != "" {
			if seen[t.Label] {
				return nil, fmt.Errorf("%s: tokens[%d].label %q is listed twice", prefix, i, t.Label)
			}
			seen[t.Label] = true
		}
		if t.PIN == nil {
			return nil, fmt.Errorf("%s: tokens[%d].pin is required (a file or env reference)", prefix, i)
		}
		if err := checkRef(t.PIN); err != nil {
			return nil, fmt.Errorf("%s: tokens[%d].pin: %w", prefix, i, err)
		}
	}
	if c.MaxSessions < 0 || c.MaxSessions > maxMaxSessions {
		return nil, fmt.Errorf("%s: maxSessions must be 1..%d", prefix, maxMaxSessions)
	}
	if c.Budget != "" {
		d, err := time.ParseDuration(c.Budget)
		if err != nil || d < 100*time.Millisecond || d > 5*time.Minute {
			return nil, fmt.Errorf("%s: budget %q must be a duration within 100ms..5m", prefix, truncate(c.Budget))
		}
		c.budget = d
	} else {
		c.budget = defaultBudget
	}
	if c.SupportedRegions != nil {
		if _, err := keystoreconfig.ParseRegions(c.SupportedRegions); err != nil {
			return nil, fmt.Errorf("%s: supportedregions: %w", prefix, err)
		}
	}
	return &c, nil
}

// expandEnv expands $VAR, ${VAR} and ${VAR:-default} (default when VAR is unset or empty), so one profile serves
// several machines; module and token labels are not secrets.
func expandEnv(s string) string {
	return os.Expand(s, func(name string) string {
		if n, def, ok := strings.Cut(name, ":-"); ok {
			if v := os.Getenv(n); v != "" {
				return v
			}
			return def
		}
		return os.Getenv(name)
	})
}

// checkRef allows only file and env references for secrets.
func checkRef(r *keystoreconfig.SourceRef) error {
	switch strings.ToLower(strings.TrimSpace(r.Source)) {
	case keystoreconfig.SourceFile:
		if strings.TrimSpace(r.File.Path) == "" {
			return errors.New("source file needs file.path")
		}
		return nil
	case keystoreconfig.SourceEnv:
		if strings.TrimSpace(r.Env) == "" && strings.TrimSpace(r.Value) == "" {
			return errors.New("source env needs env (the variable name)")
		}
		return nil
	case "", keystoreconfig.SourceEmbedded:
		return ErrInlinePIN
	}
	return fmt.Errorf("unknown source %q (file, env)", truncate(r.Source))
}

// inlinePIN finds a PIN written as a plain value ("pin: 1234", "userPin: ...") anywhere in the YAML.
func inlinePIN(v any) string {
	var walk func(v any, path string) string
	walk = func(v any, path string) string {
		switch t := v.(type) {
		case map[string]any:
			for k, x := range t {
				p := k
				if path != "" {
					p = path + "." + k
				}
				n := strings.ToLower(strings.NewReplacer("_", "", "-", "").Replace(k))
				if n == "pin" || n == "userpin" || n == "sopin" || n == "password" {
					if _, isMap := x.(map[string]any); !isMap && x != nil {
						return p
					}
				}
				if s := walk(x, p); s != "" {
					return s
				}
			}
		case []any:
			for i, x := range t {
				if s := walk(x, fmt.Sprintf("%s[%d]", path, i)); s != "" {
					return s
				}
			}
		}
		return ""
	}
	return walk(v, "")
}

// module returns the configured module path, else APEIRO_PKCS11_MODULE.
func (c *Config) module() string {
	if c.Module != "" {
		return c.Module
	}
	return os.Getenv("APEIRO_PKCS11_MODULE")
}

func (c *Config) maxSessions() int {
	if c.MaxSessions == 0 {
		return defaultMaxSessions
	}
	return c.MaxSessions
}

// tokenLabel resolves the label of token i.
func (t *TokenConfig) tokenLabel() (string, error) {
	if t.Label != "" {
		return t.Label, nil
	}
	s, err := t.LabelRef.LoadString()
	if err != nil {
		return "", fmt.Errorf("labelRef: %w", err)
	}
	if !tokenLabelRE.MatchString(s) {
		return "", errors.New("labelRef: the referenced label must be 1..32 printable ASCII characters")
	}
	return s, nil
}

// region is what keys report as their region.
func (c *Config) region() string {
	if c.Region != "" {
		return c.Region
	}
	if c.SupportedRegions != nil {
		if rs, err := keystoreconfig.ParseRegions(c.SupportedRegions); err == nil && len(rs) > 0 {
			return rs[0].TechnicalName
		}
	}
	return DefaultRegion
}

func (c *Config) supportedRegions() ([]keystoreconfig.Region, error) {
	if c.SupportedRegions != nil {
		return keystoreconfig.ParseRegions(c.SupportedRegions)
	}
	r := c.region()
	return []keystoreconfig.Region{{Name: r, TechnicalName: r}}, nil
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
