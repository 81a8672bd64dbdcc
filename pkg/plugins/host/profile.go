package host

import (
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/openkcm/plugin-sdk/pkg/catalog"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/keystoreconfig"
)

// profileEntry is one element of `plugins:`. Its keys are those of
// catalog.PluginConfig as CMK reads them from config.yaml. Matching is
// case-insensitive (encoding/json), like CMK's mapstructure decoding, and
// unknown keys are rejected.
type profileEntry struct {
	Name              string            `json:"name"`
	Type              string            `json:"type"`
	Path              string            `json:"path,omitempty"`
	Args              []string          `json:"args,omitempty"`
	Env               map[string]string `json:"env,omitempty"`
	Checksum          string            `json:"checksum,omitempty"`
	Version           uint32            `json:"version,omitempty"`
	YamlConfiguration string            `json:"yamlConfiguration,omitempty"`
	LogLevel          string            `json:"logLevel,omitempty"`
	Disabled          bool              `json:"disabled,omitempty"`
	Tags              []string          `json:"tags,omitempty"`
}

type profileFile struct {
	Plugins []profileEntry `json:"plugins"`
}

type profileOptions struct {
	baseDir string
}

// ProfileOption tunes LoadProfile / ParseProfile.
type ProfileOption func(*profileOptions)

// WithBaseDir resolves relative `path:` entries against dir. Without it a
// relative path is kept as written and, as in CMK, resolved by the operating
// system against the working directory of the host process.
func WithBaseDir(dir string) ProfileOption {
	return func(o *profileOptions) { o.baseDir = dir }
}

// LoadProfile reads a profile file: YAML with a top-level `plugins:` list in
// CMK's format (keys name, type, path, args, env, checksum, version,
// yamlConfiguration, logLevel, disabled, tags).
func LoadProfile(path string, opts ...ProfileOption) ([]catalog.PluginConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading plugin profile: %w", err)
	}
	cfgs, err := ParseProfile(data, opts...)
	if err != nil {
		return nil, fmt.Errorf("plugin profile %s: %w", path, err)
	}
	return cfgs, nil
}

// ParseProfile parses profile YAML; see LoadProfile.
func ParseProfile(data []byte, opts ...ProfileOption) ([]catalog.PluginConfig, error) {
	var o profileOptions
	for _, opt := range opts {
		opt(&o)
	}
	var pf profileFile
	if err := yaml.UnmarshalStrict(data, &pf); err != nil {
		return nil, fmt.Errorf("invalid profile YAML: %w", err)
	}
	if len(pf.Plugins) == 0 {
		return nil, fmt.Errorf("profile has no `plugins:` entries")
	}

	seen := map[string]bool{}
	cfgs := make([]catalog.PluginConfig, 0, len(pf.Plugins))
	for i, e := range pf.Plugins {
		if err := e.validate(); err != nil {
			return nil, fmt.Errorf("plugins[%d]: %w", i, err)
		}
		key := e.Type + "/" + e.Name
		if seen[key] {
			return nil, fmt.Errorf("plugins[%d]: duplicate plugin %q of type %s", i, e.Name, e.Type)
		}
		seen[key] = true

		path := e.Path
		if path != "" && o.baseDir != "" && !filepath.IsAbs(path) {
			path = filepath.Join(o.baseDir, path)
		}
		cfgs = append(cfgs, catalog.PluginConfig{
			Name:              e.Name,
			Type:              e.Type,
			Path:              path,
			Args:              e.Args,
			Env:               e.Env,
			Checksum:          e.Checksum,
			Version:           e.Version,
			YamlConfiguration: e.YamlConfiguration,
			LogLevel:          e.LogLevel,
			Disabled:          e.Disabled,
			Tags:              e.Tags,
		})
	}
	return cfgs, nil
}

var logLevels = map[string]bool{"": true, "trace": true, "debug": true, "info": true, "warn": true, "error": true, "off": true}

func (e profileEntry) validate() error {
	if strings.TrimSpace(e.Name) == "" {
		return fmt.Errorf("missing name")
	}
	if err := validateEntry(catalog.PluginConfig{Name: e.Name, Type: e.Type}); err != nil {
		return err
	}
	if e.Checksum != "" {
		if b, err := hex.DecodeString(e.Checksum); err != nil || len(b) != 32 {
			return fmt.Errorf("plugin %q: checksum must be 64 hex characters (SHA-256)", e.Name)
		}
	}
	if !logLevels[strings.ToLower(e.LogLevel)] {
		return fmt.Errorf("plugin %q: unknown logLevel %q (trace, debug, info, warn, error, off)", e.Name, e.LogLevel)
	}
	if e.Path == "" && (len(e.Args) > 0 || e.Checksum != "") {
		return fmt.Errorf("plugin %q: args and checksum need a path (builtin plugins take neither)", e.Name)
	}
	if e.YamlConfiguration != "" {
		var v any
		if err := yaml.Unmarshal([]byte(e.YamlConfiguration), &v); err != nil {
			return fmt.Errorf("plugin %q: yamlConfiguration is not valid YAML: %w", e.Name, err)
		}
	}
	return nil
}

// SupportedRegionsKey is the top-level key CMK adds to every
// KeystoreProvider plugin's YAML.
const SupportedRegionsKey = keystoreconfig.SupportedRegionsKey

// InjectSupportedRegions returns yamlConfiguration with a top-level
// `supportedregions` set exactly as CMK's plugin_config_merge.go does it:
// decoded into a map and re-encoded with yaml.v3, the value a full
// common-sdk SourceRef (source, env, file{path, format, jsonPath}, value)
// holding {"regions":[...]}. The output is byte for byte what a stock CMK
// passes to Configure, so a plugin that loads here loads there.
func InjectSupportedRegions(yamlConfiguration string, regions []SupportedRegion) (string, error) {
	rs := make([]keystoreconfig.Region, 0, len(regions))
	for _, r := range regions {
		rs = append(rs, keystoreconfig.Region{Name: r.Name, TechnicalName: r.TechnicalName})
	}
	out, err := keystoreconfig.MergeSupportedRegions(yamlConfiguration, rs)
	if err != nil {
		return "", fmt.Errorf("adding %s: %w", SupportedRegionsKey, err)
	}
	return out, nil
}
