package local

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"sigs.k8s.io/yaml"
)

// Config is the yamlConfiguration of both local plugins. Every field is
// optional: Configure("") gives an in-memory keystore with a per-process
// secret.
//
//	dir: ${KS_DIR:-/var/lib/keys}       # key directory; $VAR, ${VAR:-default} expanded; empty = memory
//	secret: {source: env, env: LOCAL_KEYSTORE_SECRET}  # access-key/KEK secret (>= 16 chars)
//	regions: [eu-central-1, us-east-1]  # allowed regions, first = default
//	defaultDeletionWindowDays: 7        # DeleteKey without window (0..30)
//	supportedregions: {source: embedded, value: '{"regions":[...]}'}  # injected by CMK (management)
type Config struct {
	Dir                       string     `json:"dir,omitempty"`
	Secret                    *SourceRef `json:"secret,omitempty"`
	Regions                   []string   `json:"regions,omitempty"`
	DefaultDeletionWindowDays *int32     `json:"defaultDeletionWindowDays,omitempty"`
	SupportedRegions          *SourceRef `json:"supportedregions,omitempty"`
}

var regionRE = regexp.MustCompile(`^[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})$`)

const defaultRegion = "local"

// ParseConfig parses and validates the YAML; errors say what is wrong.
func ParseConfig(data string) (*Config, error) {
	var c Config
	if err := yaml.UnmarshalStrict([]byte(data), &c); err != nil {
		return nil, fmt.Errorf("invalid local keystore configuration: %w", err)
	}
	c.Dir = expandEnv(c.Dir)
	for _, r := range c.Regions {
		if !regionRE.MatchString(r) {
			return nil, fmt.Errorf("invalid local keystore configuration: region %q must match %s", r, regionRE)
		}
	}
	if w := c.DefaultDeletionWindowDays; w != nil && (*w < 0 || *w > maxDeletionWindowDays) {
		return nil, fmt.Errorf("invalid local keystore configuration: defaultDeletionWindowDays must be 0..%d", maxDeletionWindowDays)
	}
	if c.SupportedRegions != nil {
		if _, err := parseSupportedRegions(c.SupportedRegions); err != nil {
			return nil, fmt.Errorf("invalid local keystore configuration: supportedregions: %w", err)
		}
	}
	return &c, nil
}

// expandEnv expands $VAR and ${VAR}, plus ${VAR:-default} when VAR is
// unset or empty, so a profile can name a directory with a fallback.
func expandEnv(s string) string {
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

func (c *Config) defaultRegion() string {
	if len(c.Regions) > 0 {
		return c.Regions[0]
	}
	return defaultRegion
}

// regionAllowed: without a configured list any well-formed region is allowed.
func (c *Config) regionAllowed(r string) bool {
	if len(c.Regions) == 0 {
		return regionRE.MatchString(r)
	}
	for _, a := range c.Regions {
		if a == r {
			return true
		}
	}
	return false
}

func (c *Config) deletionWindow() int32 {
	if c.DefaultDeletionWindowDays != nil {
		return *c.DefaultDeletionWindowDays
	}
	return defaultDeletionWindowDays
}

// supportedRegions for CreateKeystore: CMK's injected list wins, else regions.
func (c *Config) supportedRegions() ([]Region, error) {
	if c.SupportedRegions != nil {
		return parseSupportedRegions(c.SupportedRegions)
	}
	regions := c.Regions
	if len(regions) == 0 {
		regions = []string{defaultRegion}
	}
	out := make([]Region, 0, len(regions))
	for _, r := range regions {
		out = append(out, Region{Name: r, TechnicalName: r})
	}
	return out, nil
}

const secretFile = "keystore.secret"

// resolveSecret returns the 32-byte root secret: from `secret`, else from
// <dir>/keystore.secret (created atomically on first use), else fallback.
func (c *Config) resolveSecret(fallback []byte) ([]byte, error) {
	if c.Secret != nil {
		s, err := c.Secret.Load()
		if err != nil {
			return nil, fmt.Errorf("secret: %w", err)
		}
		if len(s) < 16 {
			return nil, errors.New("secret: must be at least 16 characters")
		}
		sum := sha256.Sum256([]byte(s))
		return sum[:], nil
	}
	if c.Dir == "" {
		return fallback, nil
	}
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating key directory: %w", err)
	}
	path := filepath.Join(c.Dir, secretFile)
	if b, err := os.ReadFile(path); err == nil {
		if len(b) != 32 {
			return nil, fmt.Errorf("%s: corrupt (want 32 bytes)", path)
		}
		return b, nil
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	// Write a temp file and hard-link it into place: the link fails if another
	// process (the sibling plugin) won the race, and then we read its secret.
	tmp, err := writeTemp(c.Dir, secret)
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("creating %s: %w", path, err)
	}
	b, err := os.ReadFile(path)
	if err != nil || len(b) != 32 {
		return nil, fmt.Errorf("reading %s: %v", path, err)
	}
	return b, nil
}
