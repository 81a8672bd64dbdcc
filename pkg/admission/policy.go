package admission

import (
	"context"
	"fmt"
	"slices"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"

	"github.com/apeirora/apeiro-cmk/pkg/keychain"
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

// ErrKeyNotFound is returned by a KeyProber when the keystore answered that the key does not exist. It lives in
// pkg/keychain (shared with the Account reconciler, which must not import the webhook package).
var ErrKeyNotFound = keychain.ErrKeyNotFound

// KeyProber proves an Account's L1 key exists and answers (FR-3.3); see keychain.Prober.
type KeyProber = keychain.Prober

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
// Bypass groups (cluster and platform admins) or is one of the BypassUsers (named platform controllers such as the
// namespace controller and the garbage collector, which delete tenants' objects on their behalf).
type TenantGroups struct {
	Prefix      string
	Bypass      []string
	BypassUsers []string
}

// Default permission settings: the check is on, and only cluster/platform administrators and the two
// kube-controller-manager loops that delete objects for users bypass it. A whole service-account group such as
// system:serviceaccounts:kube-system is deliberately not in the list: it would admit every pod running there.
const DefaultTenantAdminGroupPrefix = "apeiro-cmk:tenant:"

var (
	DefaultBypassGroups = []string{"system:masters", "apeiro-cmk:platform-admins"}
	DefaultBypassUsers  = []string{
		// kube-controller-manager without --use-service-account-credentials runs every loop as this user.
		"system:kube-controller-manager",
		"system:serviceaccount:kube-system:namespace-controller",
		"system:serviceaccount:kube-system:generic-garbage-collector",
		// This process's own controllers (finalizers and status of our kinds) under deploy/base's service account.
		"system:serviceaccount:apeiro-cmk-system:apeiro-cmk-webhook",
	}
)

// Authorize implements Permissions.
func (p TenantGroups) Authorize(_ context.Context, user authenticationv1.UserInfo, tenant, kind string, action Action) error {
	if slices.Contains(p.BypassUsers, user.Username) {
		return nil
	}
	for _, g := range user.Groups {
		if slices.Contains(p.Bypass, g) || g == p.Prefix+tenant+":admin" {
			return nil
		}
	}
	return &PolicyError{Field: "metadata", Msg: fmt.Sprintf("user %q may not %s %s objects of tenant %q: requires group %q",
		user.Username, action, kind, tenant, p.Prefix+tenant+":admin")}
}
