package identity

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/apeirora/apeiro-cmk/pkg/tenantid"
)

// CMK permissions a workspace role can grant. They are checked by the admission webhook (through the groups and
// extra the TokenReview answer carries) and by CMK through the identity plugin's groups.
const (
	PermTenantsRead       = "tenants.read"
	PermTenantsWrite      = "tenants.write"
	PermAccountsRead      = "accounts.read"
	PermAccountsWrite     = "accounts.write"
	PermKeysRead          = "keys.read"
	PermKeysWrite         = "keys.write"
	PermKeysUse           = "keys.use"
	PermNotificationsRead = "notifications.read"
	PermNotificationsWrit = "notifications.write"
	// PermAdmin is full control of a tenant, including creating Nested and Shadow tenants under it. A role with
	// it surfaces as the group "<groupPrefix><tenant>:admin" the admission tenant-permission check looks for.
	PermAdmin = "admin"
)

// Permissions lists every known permission.
var Permissions = []string{PermTenantsRead, PermTenantsWrite, PermAccountsRead, PermAccountsWrite, PermKeysRead,
	PermKeysWrite, PermKeysUse, PermNotificationsRead, PermNotificationsWrit, PermAdmin}

// DefaultRoles maps the Platform Mesh workspace roles to CMK permissions when the configuration names none.
func DefaultRoles() map[string][]string {
	read := []string{PermTenantsRead, PermAccountsRead, PermKeysRead, PermNotificationsRead}
	return map[string][]string{
		"Owner":  slices.Clone(Permissions),
		"Admin":  slices.Clone(Permissions),
		"Member": append(slices.Clone(read), PermKeysWrite, PermKeysUse, PermNotificationsWrit),
		"Viewer": read,
	}
}

// DefaultGroupPrefix prefixes the Kubernetes groups a role becomes ("apeiro-cmk:tenant:<tenant>:<role>"). The admission
// webhook's --tenant-admin-group-prefix must be the same string.
const DefaultGroupPrefix = "apeiro-cmk:tenant:"

// DefaultRolesClaim is the token claim carrying a user's workspace roles (Keycloak's group membership mapper).
const DefaultRolesClaim = "groups"

// Extra keys of a TokenReview answer.
const (
	ExtraPermissions = "cmk.apeiro.io/permissions"
	ExtraTenant      = "cmk.apeiro.io/tenant"
	ExtraSPIFFEID    = "cmk.apeiro.io/spiffe-id"
)

// RoleConfig maps workspace roles to permissions.
type RoleConfig struct {
	// Roles: workspace role name → CMK permissions (default DefaultRoles). Role names match case-insensitively.
	Roles map[string][]string `json:"roles,omitempty"`
	// RolesClaim is the claim holding role memberships (default "groups").
	RolesClaim string `json:"rolesClaim,omitempty"`
	// GroupPrefix prefixes the Kubernetes groups (default DefaultGroupPrefix).
	GroupPrefix string `json:"groupPrefix,omitempty"`
}

// RoleMap is a validated RoleConfig.
type RoleMap struct {
	byLower     map[string]string   // lower-case name → canonical name
	perms       map[string][]string // canonical name → sorted permissions
	claim       string
	groupPrefix string
}

// NewRoleMap validates c and applies defaults.
func NewRoleMap(c RoleConfig) (*RoleMap, error) {
	roles := c.Roles
	if len(roles) == 0 {
		roles = DefaultRoles()
	}
	m := &RoleMap{byLower: map[string]string{}, perms: map[string][]string{}, claim: c.RolesClaim, groupPrefix: c.GroupPrefix}
	if m.claim == "" {
		m.claim = DefaultRolesClaim
	}
	if m.groupPrefix == "" {
		m.groupPrefix = DefaultGroupPrefix
	}
	if strings.HasPrefix(m.groupPrefix, "system:") {
		return nil, fmt.Errorf("groupPrefix %q: the system: prefix is reserved by Kubernetes", m.groupPrefix)
	}
	for name, perms := range roles {
		if name == "" || strings.ContainsAny(name, ":/ \t") {
			return nil, fmt.Errorf("roles: invalid role name %q (no ':', '/' or spaces)", name)
		}
		l := strings.ToLower(name)
		if _, dup := m.byLower[l]; dup {
			return nil, fmt.Errorf("roles: %q is listed twice (names are case-insensitive)", name)
		}
		for _, p := range perms {
			if !slices.Contains(Permissions, p) {
				return nil, fmt.Errorf("roles[%s]: unknown permission %q (known: %s)", name, p, strings.Join(Permissions, ", "))
			}
		}
		m.byLower[l] = name
		ps := slices.Clone(perms)
		slices.Sort(ps)
		m.perms[name] = slices.Compact(ps)
	}
	return m, nil
}

// Claim is the roles claim name.
func (m *RoleMap) Claim() string { return m.claim }

// Role returns the canonical name of a role, if known.
func (m *RoleMap) Role(name string) (string, bool) {
	r, ok := m.byLower[strings.ToLower(name)]
	return r, ok
}

// Permissions of a role (canonical name).
func (m *RoleMap) Permissions(role string) []string { return m.perms[role] }

// Grant is one role in one tenant.
type Grant struct{ Tenant, Role string }

// ParseGrants turns role-claim values into grants. For a platform issuer (scope "") a value names its tenant:
// "<tenant>:<Role>", "/<tenant>/<Role>" or "/tenants/<tenant>/<Role>" (Keycloak full group paths). For a tenant
// issuer (scope = that tenant) a value is "<Role>" or "/<Role>" and always applies to the scope; values naming any
// other tenant are ignored, so a tenant's IdP can never grant rights elsewhere. Unknown roles and malformed values
// are ignored too: a group that is not a role is not an error.
func (m *RoleMap) ParseGrants(values []string, scope string) []Grant {
	seen := map[Grant]bool{}
	var out []Grant
	for _, v := range values {
		tenant, role := splitGrant(v)
		if scope != "" {
			if tenant != "" && tenant != scope {
				continue
			}
			tenant = scope
		}
		if tenant == "" || tenantid.ValidateTenant(tenant) != nil {
			continue
		}
		canon, ok := m.Role(role)
		if !ok {
			continue
		}
		g := Grant{Tenant: tenant, Role: canon}
		if !seen[g] {
			seen[g] = true
			out = append(out, g)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Tenant != out[j].Tenant {
			return out[i].Tenant < out[j].Tenant
		}
		return out[i].Role < out[j].Role
	})
	return out
}

func splitGrant(v string) (tenant, role string) {
	if strings.HasPrefix(v, "/") {
		segs := strings.Split(strings.TrimPrefix(v, "/"), "/")
		if len(segs) == 3 && segs[0] == "tenants" {
			segs = segs[1:]
		}
		switch len(segs) {
		case 1:
			return "", segs[0]
		case 2:
			return segs[0], segs[1]
		}
		return "", ""
	}
	if t, r, ok := strings.Cut(v, ":"); ok {
		return t, r
	}
	return "", v
}

// Groups are the Kubernetes groups of grants: "<prefix><tenant>:<role in lower case>" per grant, plus
// "<prefix><tenant>:admin" exactly when a role grants PermAdmin (the group the admission webhook requires for
// writes).
func (m *RoleMap) Groups(grants []Grant) []string {
	var out []string
	for _, g := range grants {
		// A role spelled "admin" without the admin permission must not produce the admin group by its name.
		if r := strings.ToLower(g.Role); r != PermAdmin {
			out = append(out, m.groupPrefix+g.Tenant+":"+r)
		}
		if slices.Contains(m.perms[g.Role], PermAdmin) {
			out = append(out, m.groupPrefix+g.Tenant+":admin")
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// TenantPermissions are "<tenant>:<permission>" entries of grants, sorted and unique.
func (m *RoleMap) TenantPermissions(grants []Grant) []string {
	var out []string
	for _, g := range grants {
		for _, p := range m.perms[g.Role] {
			out = append(out, g.Tenant+":"+p)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
