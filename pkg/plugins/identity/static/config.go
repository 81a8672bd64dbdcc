package static

import (
	"fmt"
	"strings"

	"sigs.k8s.io/yaml"
)

// Config is the YAML accepted by Configure. Unknown fields are rejected.
//
// Without tenantKey the top-level users/groups form the one directory every
// request sees. With tenantKey set, requests are scoped: the value of
// AuthContext.data[tenantKey] selects a directory from tenants, and the
// top-level users/groups must be empty (so no entry can leak across tenants
// by accident).
//
//	tenantKey: app_tid            # optional
//	users:
//	  - {id: u-1, name: Alice, email: alice@example.org, groups: [g-admins]}
//	groups:
//	  - {id: g-admins, name: KeyAdmins}
//	tenants:                      # only with tenantKey
//	  tenant-a:
//	    users: [...]
//	    groups: [...]
type Config struct {
	TenantKey string               `json:"tenantKey,omitempty"`
	Users     []UserConfig         `json:"users,omitempty"`
	Groups    []GroupConfig        `json:"groups,omitempty"`
	Tenants   map[string]Directory `json:"tenants,omitempty"`
}

// Directory is one tenant's users and groups.
type Directory struct {
	Users  []UserConfig  `json:"users,omitempty"`
	Groups []GroupConfig `json:"groups,omitempty"`
}

// UserConfig describes one user. Groups lists group IDs.
type UserConfig struct {
	ID     string   `json:"id"`
	Name   string   `json:"name,omitempty"`
	Email  string   `json:"email,omitempty"`
	Groups []string `json:"groups,omitempty"`
}

// GroupConfig describes one group.
type GroupConfig struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
}

// ParseConfig decodes and validates the plugin YAML. An empty document is a
// valid, empty directory.
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
	if c.TenantKey == "" {
		if len(c.Tenants) > 0 {
			return fmt.Errorf("tenants requires tenantKey to be set")
		}
		if err := (&Directory{Users: c.Users, Groups: c.Groups}).validate(); err != nil {
			return err
		}
		return nil
	}
	if len(c.Users) > 0 || len(c.Groups) > 0 {
		return fmt.Errorf("with tenantKey set, users and groups must be listed under tenants.<tenant>")
	}
	for tenant, dir := range c.Tenants {
		if strings.TrimSpace(tenant) == "" {
			return fmt.Errorf("tenants: empty tenant name")
		}
		if err := dir.validate(); err != nil {
			return fmt.Errorf("tenants[%s]: %w", tenant, err)
		}
	}
	return nil
}

func (d *Directory) validate() error {
	groupIDs := make(map[string]struct{}, len(d.Groups))
	groupNames := make(map[string]struct{}, len(d.Groups))
	for i, g := range d.Groups {
		if strings.TrimSpace(g.ID) == "" {
			return fmt.Errorf("groups[%d]: id is required", i)
		}
		if _, dup := groupIDs[g.ID]; dup {
			return fmt.Errorf("groups[%d]: duplicate group id %q", i, g.ID)
		}
		groupIDs[g.ID] = struct{}{}
		// GetGroup looks groups up by name, so names must be unambiguous.
		name := g.displayName()
		if _, dup := groupNames[name]; dup {
			return fmt.Errorf("groups[%d]: duplicate group name %q", i, name)
		}
		groupNames[name] = struct{}{}
	}
	userIDs := make(map[string]struct{}, len(d.Users))
	for i, u := range d.Users {
		if strings.TrimSpace(u.ID) == "" {
			return fmt.Errorf("users[%d]: id is required", i)
		}
		if _, dup := userIDs[u.ID]; dup {
			return fmt.Errorf("users[%d]: duplicate user id %q", i, u.ID)
		}
		userIDs[u.ID] = struct{}{}
		if u.Email != "" && !plausibleEmail(u.Email) {
			return fmt.Errorf("users[%d] (%s): invalid email %q", i, u.ID, u.Email)
		}
		seen := make(map[string]struct{}, len(u.Groups))
		for _, gid := range u.Groups {
			if _, ok := groupIDs[gid]; !ok {
				return fmt.Errorf("users[%d] (%s): unknown group id %q", i, u.ID, gid)
			}
			if _, dup := seen[gid]; dup {
				return fmt.Errorf("users[%d] (%s): group %q listed twice", i, u.ID, gid)
			}
			seen[gid] = struct{}{}
		}
	}
	return nil
}

// displayName defaults a group's name to its ID so every group has a name to
// be found by.
func (g GroupConfig) displayName() string {
	if g.Name != "" {
		return g.Name
	}
	return g.ID
}

func plausibleEmail(s string) bool {
	at := strings.LastIndexByte(s, '@')
	return at > 0 && at < len(s)-1 && !strings.ContainsAny(s, " \t\r\n<>")
}
