package admission

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"

	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
)

// The interfaces below are the checks that plugins answer in production. Each has an in-process default so the
// whole admission flow works before (and without) any plugin.

// RegionPolicy says whether a region and a set of token audiences are valid in the current Platform Mesh
// configuration (FR-4.2). Production: the SIS plugin (ApeiroResourceGraphPlugin). Default: StaticRegionPolicy.
type RegionPolicy interface {
	// CheckRegion returns a *PolicyError when the region is unknown or an audience is not allowed in it.
	CheckRegion(ctx context.Context, region string, audiences []string) error
}

// PolicyError is a definitive "no" from a policy (as opposed to a failure to ask).
type PolicyError struct {
	Field string
	Msg   string
}

func (e *PolicyError) Error() string { return e.Msg }

// StaticRegionPolicy allows a fixed set of regions, each with an optional audience allow-list. A nil or empty map
// allows every region and audience: the platform has not restricted them.
type StaticRegionPolicy struct {
	// Regions maps a region to its allowed audiences; a nil slice allows any audience in that region.
	Regions map[string][]string
}

// CheckRegion implements RegionPolicy.
func (p StaticRegionPolicy) CheckRegion(_ context.Context, region string, audiences []string) error {
	if len(p.Regions) == 0 {
		return nil
	}
	allowedAud, ok := p.Regions[region]
	if !ok {
		known := make([]string, 0, len(p.Regions))
		for r := range p.Regions {
			known = append(known, r)
		}
		slices.Sort(known)
		return &PolicyError{Field: "spec.region", Msg: fmt.Sprintf("region %q is not a Platform Mesh region (known: %s)", region, strings.Join(known, ", "))}
	}
	if allowedAud == nil {
		return nil
	}
	for _, a := range audiences {
		if !slices.Contains(allowedAud, a) {
			return &PolicyError{Field: "spec.oidcProvider.audiences", Msg: fmt.Sprintf("audience %q is not allowed in region %q", a, region)}
		}
	}
	return nil
}

// ErrKeyNotFound is returned by a KeyProber when the keystore answered that the key does not exist.
var ErrKeyNotFound = errors.New("key not found in the keystore provider")

// KeyProber proves an Account's L1 key exists and answers (FR-3.3). Production: the keystore operations plugin of
// the Account's keystore. Implementations must honour ctx's deadline.
type KeyProber interface {
	// ProbeKey returns nil when the key answered, an error wrapping ErrKeyNotFound when the keystore says it does not
	// exist, and any other error when the keystore could not be asked (unreachable, unauthenticated, timeout).
	ProbeKey(ctx context.Context, acct *cmkv1.Account) error
}

// Action is what a caller wants to do with a tenant's object.
type Action string

const (
	ActionWrite  Action = "write"
	ActionDelete Action = "delete"
)

// Permissions decides whether a caller may act on a tenant's objects beyond what Kubernetes RBAC allows
// (FR-1.3 workspace roles). Production: the identity plugin's role mapping.
type Permissions interface {
	Authorize(ctx context.Context, user authenticationv1.UserInfo, tenant string, kind string, action Action) error
}

// RBACDelegated leaves authorization to Kubernetes RBAC, which already allowed the request before admission.
type RBACDelegated struct{}

// Authorize implements Permissions.
func (RBACDelegated) Authorize(context.Context, authenticationv1.UserInfo, string, string, Action) error {
	return nil
}

// TenantGroups requires the caller to be a member of the group "<Prefix><tenant>:admin" (for writes and deletes),
// the shape in which Platform Mesh workspace roles appear as Kubernetes groups, unless the caller is in one of the
// Bypass groups (cluster admins, the platform's controllers).
type TenantGroups struct {
	Prefix string
	Bypass []string
}

// Authorize implements Permissions.
func (p TenantGroups) Authorize(_ context.Context, user authenticationv1.UserInfo, tenant, kind string, action Action) error {
	for _, g := range user.Groups {
		if slices.Contains(p.Bypass, g) || g == p.Prefix+tenant+":admin" {
			return nil
		}
	}
	return &PolicyError{Field: "metadata", Msg: fmt.Sprintf("user %q may not %s %s objects of tenant %q: requires group %q",
		user.Username, action, kind, tenant, p.Prefix+tenant+":admin")}
}
