package kcp

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/apeirora/apeiro-cmk/pkg/admission"
)

// MeshConfigKey is the ConfigMap data key holding the Platform Mesh configuration.
const MeshConfigKey = "config.yaml"

// Bounds of a mesh configuration: it is written by platform operators, but a huge or hostile document must not grow
// the webhook's memory or its denial messages without limit.
const (
	MaxMeshConfigBytes = 64 << 10
	MaxRegions         = 256
	MaxAudiences       = 64
)

// MeshConfig is the Platform Mesh configuration document (ConfigMap data key config.yaml):
//
//	regions:
//	  - name: eu-central
//	    audiences: [cmk, apeiro-webhook]   # omitted: any audience; []: no audience at all
//	  - name: us-east
//
// Unknown fields are rejected so that a typo ("audience:") cannot silently widen a region.
type MeshConfig struct {
	Regions []MeshRegion `json:"regions"`
}

// MeshRegion is one region and the token audiences allowed in it.
type MeshRegion struct {
	Name string `json:"name"`
	// Audiences allowed in the region; nil allows any audience.
	Audiences *[]string `json:"audiences,omitempty"`
}

var regionName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// ParseMeshConfig decodes and validates a mesh configuration document.
func ParseMeshConfig(raw string) (*MeshConfig, error) {
	if len(raw) > MaxMeshConfigBytes {
		return nil, fmt.Errorf("configuration is %d bytes, more than the %d allowed", len(raw), MaxMeshConfigBytes)
	}
	if strings.TrimSpace(raw) == "" {
		return nil, fmt.Errorf("data key %s is missing or empty", MeshConfigKey)
	}
	var c MeshConfig
	if err := yaml.UnmarshalStrict([]byte(raw), &c); err != nil {
		return nil, fmt.Errorf("decoding YAML: %w", err)
	}
	if len(c.Regions) == 0 {
		return nil, errors.New("regions: at least one region is required")
	}
	if len(c.Regions) > MaxRegions {
		return nil, fmt.Errorf("regions: %d regions, at most %d allowed", len(c.Regions), MaxRegions)
	}
	seen := map[string]bool{}
	for i, r := range c.Regions {
		if !regionName.MatchString(r.Name) {
			return nil, fmt.Errorf("regions[%d].name %q is not a DNS label", i, clip(r.Name))
		}
		if seen[r.Name] {
			return nil, fmt.Errorf("regions[%d].name %q is listed twice", i, r.Name)
		}
		seen[r.Name] = true
		if r.Audiences == nil {
			continue
		}
		if len(*r.Audiences) > MaxAudiences {
			return nil, fmt.Errorf("regions[%d].audiences: %d audiences, at most %d allowed", i, len(*r.Audiences), MaxAudiences)
		}
		auds := map[string]bool{}
		for j, a := range *r.Audiences {
			if a == "" || len(a) > 253 || strings.ContainsFunc(a, func(r rune) bool { return r < 0x21 || r > 0x7e }) {
				return nil, fmt.Errorf("regions[%d].audiences[%d] %q: an audience is 1-253 printable ASCII characters without spaces", i, j, clip(a))
			}
			if auds[a] {
				return nil, fmt.Errorf("regions[%d].audiences[%d] %q is listed twice", i, j, a)
			}
			auds[a] = true
		}
	}
	return &c, nil
}

// Region returns the named region.
func (c *MeshConfig) Region(name string) (MeshRegion, bool) {
	for _, r := range c.Regions {
		if r.Name == name {
			return r, true
		}
	}
	return MeshRegion{}, false
}

// RegionNames lists the regions, sorted.
func (c *MeshConfig) RegionNames() []string {
	out := make([]string, 0, len(c.Regions))
	for _, r := range c.Regions {
		out = append(out, r.Name)
	}
	slices.Sort(out)
	return out
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// ErrNoMeshConfig means no valid mesh configuration has been read from kcp since the start. The webhook answers such
// requests with an error (its failure policy decides) rather than guessing a policy.
var ErrNoMeshConfig = errors.New("no valid Platform Mesh configuration has been read from kcp yet")

// MeshPolicy implements admission.RegionPolicy from the live mesh configuration of a Graph. It never does I/O.
type MeshPolicy struct{ Graph *Graph }

var _ admission.RegionPolicy = MeshPolicy{}

// CheckRegion implements admission.RegionPolicy; denials list what the configuration allows.
func (p MeshPolicy) CheckRegion(_ context.Context, region string, audiences []string) error {
	cfg, _ := p.Graph.Mesh()
	if cfg == nil {
		return ErrNoMeshConfig
	}
	return cfg.Check(region, audiences)
}

// Check returns an *admission.PolicyError when region is not configured or an audience is not allowed in it.
func (c *MeshConfig) Check(region string, audiences []string) error {
	r, ok := c.Region(region)
	if !ok {
		return &admission.PolicyError{Field: "spec.region", Msg: fmt.Sprintf("region %q is not a Platform Mesh region (allowed: %s)",
			clip(region), strings.Join(c.RegionNames(), ", "))}
	}
	if r.Audiences == nil {
		return nil
	}
	for _, a := range audiences {
		if !slices.Contains(*r.Audiences, a) {
			allowed := "none"
			if len(*r.Audiences) > 0 {
				allowed = strings.Join(*r.Audiences, ", ")
			}
			return &admission.PolicyError{Field: "spec.oidcProvider.audiences", Msg: fmt.Sprintf("audience %q is not allowed in region %q (allowed: %s)",
				clip(a), region, allowed)}
		}
	}
	return nil
}

// meshState is the configuration in force and when kcp last confirmed it.
type meshState struct {
	cfg       *MeshConfig
	confirmed time.Time
	// lastErr is the error of the newest revision when it was malformed (the previous cfg stays in force).
	lastErr string
}
