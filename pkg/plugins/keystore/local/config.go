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

	"golang.org/x/crypto/argon2"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/keystoreconfig"
)

// Config is the yamlConfiguration of both local plugins. Every field is
// optional: Configure("") gives an in-memory keystore with a per-process
// secret.
//
//	dir: ${KS_DIR:-/var/lib/keys}       # key directory; $VAR, ${VAR:-default} expanded; empty = memory
//	secret: {source: env, env: LOCAL_KEYSTORE_SECRET}  # passphrase (>= 16 chars, argon2id); never inside dir
//	regions: [eu-central-1, us-east-1]  # allowed regions, first = default
//	defaultDeletionWindowDays: 7        # DeleteKey without window (0..30)
//	supportedregions: {source: embedded, env: "", file: {...}, value: '{"regions":[...]}'}  # injected by CMK
type Config struct {
	Dir                       string     `json:"dir,omitempty"`
	Secret                    *SourceRef `json:"secret,omitempty"`
	Regions                   []string   `json:"regions,omitempty"`
	DefaultDeletionWindowDays *int32     `json:"defaultDeletionWindowDays,omitempty"`
	SupportedRegions          *SourceRef `json:"supportedregions,omitempty"`

	// warnings are keys the parser ignored (names only), logged at Configure.
	warnings keystoreconfig.Warnings
}

var regionRE = regexp.MustCompile(`^[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})$`)

const defaultRegion = "local"

// ParseConfig parses and validates the YAML; errors say what is wrong.
// Declared keys are strict; keys CMK may add are tolerated (keystoreconfig).
func ParseConfig(data string) (*Config, error) {
	var c Config
	w, err := keystoreconfig.Decode(data, &c)
	if err != nil {
		return nil, fmt.Errorf("invalid local keystore configuration: %w", err)
	}
	c.warnings = w
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

// Where the sealing secret lives. The secret seals every key at rest, so it
// must not sit in the directory of the sealed records: a copy or backup of
// that directory alone must not be enough to read the keys.
//
//   - Production: `secret:` naming a separately mounted Secret file or an
//     environment variable. A file inside `dir` is refused.
//   - Development default (no `secret:`): a random 32-byte file next to the
//     directory, <dir>.secret, created 0600 on first use.
//   - Directories created before this rule keep working with their
//     <dir>/keystore.secret (a warning is logged at every Configure).
const legacySecretFile = "keystore.secret"

// kdfMarker records in a key directory that a `secret:` passphrase is
// stretched with argon2id. Directories with keys but without it were
// created when the passphrase was only hashed; they keep that derivation
// (with a warning) so no key becomes unreadable.
const kdfMarker = "keystore.kdf"

// argon2id parameters for a `secret:` passphrase (RFC 9106 / OWASP minimum:
// 19 MiB, 2 passes, 1 lane). The salt is fixed and versioned: both plugins
// and every restart must derive the same root secret without shared state.
const (
	kdfTime    = 2
	kdfMemory  = 19 * 1024
	kdfThreads = 1
	kdfSalt    = "apeiro-local-keystore/secret/argon2id/v1"
)

// secretInfo says where the root secret came from, for the Configure log.
type secretInfo struct {
	source    string // "secret", "dev-file", "legacy-file", "process"
	path      string // the file, for dev-file and legacy-file
	legacyKDF bool
}

// resolveSecret returns the 32-byte root secret (see legacySecretFile for
// where it may live).
func (c *Config) resolveSecret(fallback []byte) ([]byte, secretInfo, error) {
	if c.Secret != nil {
		if c.Dir != "" && strings.EqualFold(c.Secret.Source, keystoreconfig.SourceFile) && pathWithin(c.Secret.File.Path, c.Dir) {
			return nil, secretInfo{}, fmt.Errorf("secret: file %s is inside the key directory; mount the secret separately", c.Secret.File.Path)
		}
		s, err := c.Secret.LoadString()
		if err != nil {
			return nil, secretInfo{}, fmt.Errorf("secret: %w", err)
		}
		if len(s) < 16 {
			return nil, secretInfo{}, errors.New("secret: must be at least 16 characters")
		}
		legacy, err := c.legacyKDF()
		if err != nil {
			return nil, secretInfo{}, err
		}
		if legacy {
			sum := sha256.Sum256([]byte(s))
			return sum[:], secretInfo{source: "secret", legacyKDF: true}, nil
		}
		return argon2.IDKey([]byte(s), []byte(kdfSalt), kdfTime, kdfMemory, kdfThreads, 32), secretInfo{source: "secret"}, nil
	}
	if c.Dir == "" {
		return fallback, secretInfo{source: "process"}, nil
	}
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return nil, secretInfo{}, fmt.Errorf("creating key directory: %w", err)
	}
	legacy := filepath.Join(c.Dir, legacySecretFile)
	if b, err := os.ReadFile(legacy); err == nil {
		if len(b) != 32 {
			return nil, secretInfo{}, fmt.Errorf("%s: corrupt (want 32 bytes)", legacy)
		}
		return b, secretInfo{source: "legacy-file", path: legacy}, nil
	}
	path := filepath.Clean(c.Dir) + ".secret"
	b, err := readOrCreateSecret(path)
	if err != nil {
		return nil, secretInfo{}, err
	}
	return b, secretInfo{source: "dev-file", path: path}, nil
}

// legacyKDF reports whether dir holds keys sealed under a hashed (not
// stretched) passphrase, and otherwise marks dir as argon2id.
func (c *Config) legacyKDF() (bool, error) {
	if c.Dir == "" {
		return false, nil
	}
	marker := filepath.Join(c.Dir, kdfMarker)
	if _, err := os.Stat(marker); err == nil {
		return false, nil
	}
	if _, err := os.Stat(filepath.Join(c.Dir, "instances")); err == nil {
		return true, nil
	}
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return false, fmt.Errorf("creating key directory: %w", err)
	}
	if err := os.WriteFile(marker, []byte("argon2id-v1\n"), 0o600); err != nil {
		return false, fmt.Errorf("writing %s: %w", marker, err)
	}
	return false, nil
}

// pathWithin reports whether path is dir or below it (lexically, after
// making both absolute).
func pathWithin(path, dir string) bool {
	p, err1 := filepath.Abs(path)
	d, err2 := filepath.Abs(dir)
	if err1 != nil || err2 != nil {
		return false
	}
	rel, err := filepath.Rel(d, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// readOrCreateSecret reads a 32-byte secret file or creates it atomically:
// a temp file is hard-linked into place, so when the sibling plugin wins
// the race its secret is read instead.
func readOrCreateSecret(path string) ([]byte, error) {
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
	tmp, err := writeTemp(filepath.Dir(path), secret)
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", path, err)
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
