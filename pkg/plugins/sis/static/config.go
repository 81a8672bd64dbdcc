package static

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"sigs.k8s.io/yaml"
)

// MinIdentifierLength mirrors the protovalidate rule on GetRequest.id/type
// (string.min_len = 3): shorter identifiers can never be requested, so they
// are rejected in the configuration too.
const MinIdentifierLength = 3

// Config is the YAML accepted by Configure. Unknown fields are rejected.
//
//	resources:
//	  - type: region
//	    id: eu-central
//	    metadata: {audiences: "cmk,apeiro-webhook", displayName: "EU Central"}
//	  - type: tenant
//	    id: tenant-a
//	    parent: {type: region, id: eu-central}
//	  - type: system
//	    id: sys-123
//	    parent: {type: tenant, id: tenant-a}
//	    metadata: {name: billing}
type Config struct {
	Resources []ResourceConfig `json:"resources,omitempty"`
}

// ResourceConfig is one node of the resource graph.
type ResourceConfig struct {
	Type     string            `json:"type"`
	ID       string            `json:"id"`
	Metadata map[string]string `json:"metadata,omitempty"`
	Parent   *Ref              `json:"parent,omitempty"`
}

// Ref names another resource by type and ID.
type Ref struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

func (r Ref) String() string { return r.Type + "/" + r.ID }

// ParseConfig decodes and validates the plugin YAML. An empty document is a
// valid, empty graph.
func ParseConfig(raw string) (*Config, error) {
	cfg := &Config{}
	if strings.TrimSpace(raw) != "" {
		if err := yaml.UnmarshalStrict([]byte(raw), cfg); err != nil {
			return nil, fmt.Errorf("decode YAML: %w", err)
		}
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

func (c *Config) validate() error {
	byRef := make(map[Ref]*ResourceConfig, len(c.Resources))
	for i := range c.Resources {
		r := &c.Resources[i]
		ref := Ref{Type: r.Type, ID: r.ID}
		if err := validIdentifier("type", r.Type); err != nil {
			return fmt.Errorf("resources[%d]: %w", i, err)
		}
		if err := validIdentifier("id", r.ID); err != nil {
			return fmt.Errorf("resources[%d]: %w", i, err)
		}
		if _, dup := byRef[ref]; dup {
			return fmt.Errorf("resources[%d]: duplicate resource %s", i, ref)
		}
		byRef[ref] = r
		for k := range r.Metadata {
			if strings.TrimSpace(k) == "" {
				return fmt.Errorf("resources[%d] (%s): empty metadata key", i, ref)
			}
		}
		if r.Type == TypeRegion {
			if aud, ok := r.Metadata[KeyAudiences]; ok {
				if _, err := SplitAudiences(aud); err != nil {
					return fmt.Errorf("resources[%d] (%s): metadata.%s: %w", i, ref, KeyAudiences, err)
				}
			}
		}
	}
	for i := range c.Resources {
		r := &c.Resources[i]
		if r.Parent == nil {
			continue
		}
		if _, ok := byRef[*r.Parent]; !ok {
			return fmt.Errorf("resources[%d] (%s/%s): parent %s does not exist", i, r.Type, r.ID, r.Parent)
		}
	}
	// Cycle check: walk each chain; a chain longer than the graph is a cycle.
	for i := range c.Resources {
		r := &c.Resources[i]
		start := Ref{Type: r.Type, ID: r.ID}
		seen := map[Ref]bool{start: true}
		for cur := r; cur.Parent != nil; {
			if seen[*cur.Parent] {
				return fmt.Errorf("resources[%d] (%s): parent chain forms a cycle through %s", i, start, cur.Parent)
			}
			seen[*cur.Parent] = true
			cur = byRef[*cur.Parent]
		}
	}
	return nil
}

func validIdentifier(field, v string) error {
	if utf8.RuneCountInString(v) < MinIdentifierLength { // protovalidate counts characters
		return fmt.Errorf("%s %q must be at least %d characters", field, v, MinIdentifierLength)
	}
	if strings.TrimSpace(v) != v {
		return fmt.Errorf("%s %q has leading or trailing whitespace", field, v)
	}
	return nil
}

// SplitAudiences parses the comma-separated audiences value of a region.
// Blanks around entries are trimmed; empty entries and duplicates are errors
// so a typo cannot silently widen or narrow the audience set.
func SplitAudiences(v string) ([]string, error) {
	if strings.TrimSpace(v) == "" {
		return nil, nil
	}
	parts := strings.Split(v, ",")
	out := make([]string, 0, len(parts))
	seen := make(map[string]bool, len(parts))
	for _, p := range parts {
		p = strings.TrimSpace(p)
		if p == "" {
			return nil, fmt.Errorf("empty audience in %q", v)
		}
		if seen[p] {
			return nil, fmt.Errorf("duplicate audience %q", p)
		}
		seen[p] = true
		out = append(out, p)
	}
	return out, nil
}
