package main

import (
	"context"
	"strings"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"

	"github.com/apeirora/apeiro-cmk/pkg/admission"
	"github.com/apeirora/apeiro-cmk/pkg/identity"
)

// TestRolesDriveAdmission: the groups the TokenReview answer carries for workspace roles are what the admission
// tenant-permission check decides on, with the default prefix on both sides.
func TestRolesDriveAdmission(t *testing.T) {
	if identity.DefaultGroupPrefix != admission.DefaultTenantAdminGroupPrefix {
		t.Fatalf("identity group prefix %q != admission prefix %q", identity.DefaultGroupPrefix, admission.DefaultTenantAdminGroupPrefix)
	}
	roles, err := identity.NewRoleMap(identity.RoleConfig{Roles: map[string][]string{
		"Admin":  {identity.PermAdmin, identity.PermKeysWrite},
		"Viewer": {identity.PermKeysRead},
		"admin2": {identity.PermKeysRead},
	}, GroupPrefix: admission.DefaultTenantAdminGroupPrefix})
	if err != nil {
		t.Fatal(err)
	}
	perms := admission.TenantGroups{Prefix: admission.DefaultTenantAdminGroupPrefix, Bypass: admission.DefaultBypassGroups, BypassUsers: admission.DefaultBypassUsers}
	user := func(values ...string) authenticationv1.UserInfo {
		return authenticationv1.UserInfo{Username: "platform:u", Groups: roles.Groups(roles.ParseGrants(values, ""))}
	}
	for _, tc := range []struct {
		name   string
		u      authenticationv1.UserInfo
		tenant string
		allow  bool
	}{
		{"Admin of acme writes in acme", user("acme:Admin"), "acme", true},
		{"Viewer of acme cannot write", user("acme:Viewer"), "acme", false},
		{"Admin of acme cannot write in globex", user("acme:Admin", "globex:Viewer"), "globex", false},
		{"a role named like admin without the permission", user("acme:admin2"), "acme", false},
		{"no roles", user(), "acme", false},
	} {
		err := perms.Authorize(context.Background(), tc.u, tc.tenant, "Account", admission.ActionWrite)
		if (err == nil) != tc.allow {
			t.Errorf("%s (groups %v): %v", tc.name, tc.u.Groups, err)
		}
		if err != nil && !strings.Contains(err.Error(), "requires group") {
			t.Errorf("%s: imprecise denial %q", tc.name, err)
		}
	}
}
