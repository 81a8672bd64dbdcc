package static

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	idmv1 "github.com/openkcm/plugin-sdk/proto/plugin/identity_management/v1"
	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const directoryYAML = `
users:
  - {id: u-alice, name: Alice, email: alice@example.org, groups: [g-admins, g-auditors]}
  - {id: u-bob, name: Bob, email: bob@example.org, groups: [g-auditors]}
  - {id: u-carol, name: Carol}
groups:
  - {id: g-admins, name: KeyAdmins}
  - {id: g-auditors, name: Auditors}
  - {id: g-empty}
`

const tenantYAML = `
tenantKey: app_tid
tenants:
  tenant-a:
    users: [{id: u-1, name: A1, groups: [g-1]}]
    groups: [{id: g-1, name: Admins}]
  tenant-b:
    users: [{id: u-2, name: B2}]
    groups: [{id: g-2, name: Admins}]
`

func configured(t *testing.T, yaml string) *Plugin {
	t.Helper()
	p := New()
	if _, err := p.Configure(context.Background(), &configv1.ConfigureRequest{YamlConfiguration: yaml}); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	return p
}

func code(err error) codes.Code { return status.Code(err) }

func TestConfigureEmptyIsValid(t *testing.T) {
	p := New()
	resp, err := p.Configure(context.Background(), &configv1.ConfigureRequest{})
	if err != nil {
		t.Fatalf("Configure(\"\"): %v", err)
	}
	if resp.GetBuildInfo() == "" {
		t.Error("expected build info")
	}
	all, err := p.GetAllGroups(context.Background(), &idmv1.GetAllGroupsRequest{})
	if err != nil || len(all.GetGroups()) != 0 {
		t.Fatalf("GetAllGroups on empty directory = %v, %v", all, err)
	}
	_, err = p.GetUser(context.Background(), &idmv1.GetUserRequest{UserId: "x"})
	if code(err) != codes.NotFound {
		t.Fatalf("GetUser on empty directory: %v", err)
	}
}

func TestConfigureRejects(t *testing.T) {
	tests := map[string]struct{ yaml, want string }{
		"not yaml":          {"users: [", "decode YAML"},
		"unknown field":     {"userz: []", "unknown field"},
		"unknown nested":    {"users: [{id: a, mail: x}]", "unknown field"},
		"scalar doc":        {"hello", "decode YAML"},
		"missing user id":   {"users: [{name: x}]", "id is required"},
		"duplicate user":    {"users: [{id: a}, {id: a}]", "duplicate user id"},
		"missing group id":  {"groups: [{name: x}]", "id is required"},
		"duplicate group":   {"groups: [{id: a}, {id: a}]", "duplicate group id"},
		"duplicate name":    {"groups: [{id: a, name: n}, {id: b, name: n}]", "duplicate group name"},
		"unknown group ref": {"users: [{id: a, groups: [nope]}]", "unknown group id"},
		"twice in group":    {"groups: [{id: g}]\nusers: [{id: a, groups: [g, g]}]", "listed twice"},
		"bad email":         {"users: [{id: a, email: not-an-email}]", "invalid email"},
		"tenants w/o key":   {"tenants: {t: {}}", "requires tenantKey"},
		"top-level w/ key":  {"tenantKey: t\nusers: [{id: a}]", "under tenants"},
		"bad tenant dir":    {"tenantKey: t\ntenants: {t1: {users: [{id: a}, {id: a}]}}", "tenants[t1]"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p := configured(t, directoryYAML)
			_, err := p.Configure(context.Background(), &configv1.ConfigureRequest{YamlConfiguration: tc.yaml})
			if code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Configure error = %v, want InvalidArgument containing %q", err, tc.want)
			}
			// A rejected configuration keeps the previous directory.
			if _, err := p.GetUser(context.Background(), &idmv1.GetUserRequest{UserId: "u-alice"}); err != nil {
				t.Fatalf("previous directory lost: %v", err)
			}
		})
	}
}

func TestGetUser(t *testing.T) {
	p := configured(t, directoryYAML)
	ctx := context.Background()
	got, err := p.GetUser(ctx, &idmv1.GetUserRequest{UserId: "u-alice"})
	if err != nil {
		t.Fatal(err)
	}
	if u := got.GetUser(); u.GetId() != "u-alice" || u.GetName() != "Alice" || u.GetEmail() != "alice@example.org" {
		t.Fatalf("GetUser = %v", u)
	}
	for id, want := range map[string]codes.Code{"": codes.InvalidArgument, "u-nobody": codes.NotFound, "alice@example.org": codes.NotFound} {
		if _, err := p.GetUser(ctx, &idmv1.GetUserRequest{UserId: id}); code(err) != want {
			t.Errorf("GetUser(%q) = %v, want %v", id, err, want)
		}
	}
}

func TestGetGroup(t *testing.T) {
	p := configured(t, directoryYAML)
	ctx := context.Background()
	tests := []struct {
		in, wantID, wantName string
		want                 codes.Code
	}{
		{"KeyAdmins", "g-admins", "KeyAdmins", codes.OK},
		{"g-auditors", "g-auditors", "Auditors", codes.OK}, // ID fallback
		{"g-empty", "g-empty", "g-empty", codes.OK},        // name defaults to ID
		{"keyadmins", "", "", codes.NotFound},              // case-sensitive
		{"missing", "", "", codes.NotFound},
		{"", "", "", codes.InvalidArgument},
	}
	for _, tc := range tests {
		got, err := p.GetGroup(ctx, &idmv1.GetGroupRequest{GroupName: tc.in})
		if code(err) != tc.want {
			t.Errorf("GetGroup(%q) err = %v, want %v", tc.in, err, tc.want)
			continue
		}
		if tc.want == codes.OK && (got.GetGroup().GetId() != tc.wantID || got.GetGroup().GetName() != tc.wantName) {
			t.Errorf("GetGroup(%q) = %v", tc.in, got.GetGroup())
		}
	}
}

func TestGetAllGroupsOrder(t *testing.T) {
	p := configured(t, directoryYAML)
	got, err := p.GetAllGroups(context.Background(), &idmv1.GetAllGroupsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if ids := groupIDs(got.GetGroups()); ids != "g-admins,g-auditors,g-empty" {
		t.Fatalf("GetAllGroups = %s", ids)
	}
}

func TestGetUsersForGroup(t *testing.T) {
	p := configured(t, directoryYAML)
	ctx := context.Background()
	tests := []struct {
		in, want string
		code     codes.Code
	}{
		{"g-auditors", "u-alice,u-bob", codes.OK},
		{"KeyAdmins", "u-alice", codes.OK}, // name fallback
		{"g-empty", "", codes.OK},
		{"g-missing", "", codes.NotFound},
		{"", "", codes.InvalidArgument},
	}
	for _, tc := range tests {
		got, err := p.GetUsersForGroup(ctx, &idmv1.GetUsersForGroupRequest{GroupId: tc.in})
		if code(err) != tc.code {
			t.Errorf("GetUsersForGroup(%q) err = %v, want %v", tc.in, err, tc.code)
			continue
		}
		if ids := userIDs(got.GetUsers()); ids != tc.want {
			t.Errorf("GetUsersForGroup(%q) = %s, want %s", tc.in, ids, tc.want)
		}
	}
}

func TestGetGroupsForUser(t *testing.T) {
	p := configured(t, directoryYAML)
	ctx := context.Background()
	tests := []struct {
		in, want string
		code     codes.Code
	}{
		{"u-alice", "g-admins,g-auditors", codes.OK},
		{"u-carol", "", codes.OK},
		{"u-missing", "", codes.NotFound},
		{"", "", codes.InvalidArgument},
	}
	for _, tc := range tests {
		got, err := p.GetGroupsForUser(ctx, &idmv1.GetGroupsForUserRequest{UserId: tc.in})
		if code(err) != tc.code {
			t.Errorf("GetGroupsForUser(%q) err = %v, want %v", tc.in, err, tc.code)
			continue
		}
		if ids := groupIDs(got.GetGroups()); ids != tc.want {
			t.Errorf("GetGroupsForUser(%q) = %s, want %s", tc.in, ids, tc.want)
		}
	}
}

func TestTenantScoping(t *testing.T) {
	p := configured(t, tenantYAML)
	ctx := context.Background()
	ac := func(tenant string) *idmv1.AuthContext {
		return &idmv1.AuthContext{Data: map[string]string{"app_tid": tenant, "issuer": "https://idp"}}
	}

	if _, err := p.GetUser(ctx, &idmv1.GetUserRequest{UserId: "u-1", AuthContext: ac("tenant-a")}); err != nil {
		t.Fatalf("own tenant: %v", err)
	}
	// Another tenant's user is invisible.
	if _, err := p.GetUser(ctx, &idmv1.GetUserRequest{UserId: "u-1", AuthContext: ac("tenant-b")}); code(err) != codes.NotFound {
		t.Fatalf("cross tenant GetUser = %v, want NotFound", err)
	}
	// Same group name in two tenants resolves per tenant.
	g, err := p.GetGroup(ctx, &idmv1.GetGroupRequest{GroupName: "Admins", AuthContext: ac("tenant-b")})
	if err != nil || g.GetGroup().GetId() != "g-2" {
		t.Fatalf("tenant-b GetGroup(Admins) = %v, %v", g, err)
	}
	// Unknown tenant: empty directory.
	all, err := p.GetAllGroups(ctx, &idmv1.GetAllGroupsRequest{AuthContext: ac("tenant-zzz")})
	if err != nil || len(all.GetGroups()) != 0 {
		t.Fatalf("unknown tenant GetAllGroups = %v, %v", all, err)
	}
	if _, err := p.GetUsersForGroup(ctx, &idmv1.GetUsersForGroupRequest{GroupId: "g-1", AuthContext: ac("tenant-zzz")}); code(err) != codes.NotFound {
		t.Fatalf("unknown tenant GetUsersForGroup = %v", err)
	}
	// Missing tenant key.
	if _, err := p.GetAllGroups(ctx, &idmv1.GetAllGroupsRequest{}); code(err) != codes.InvalidArgument {
		t.Fatalf("no auth context = %v, want InvalidArgument", err)
	}
	if _, err := p.GetGroupsForUser(ctx, &idmv1.GetGroupsForUserRequest{UserId: "u-1", AuthContext: &idmv1.AuthContext{}}); code(err) != codes.InvalidArgument {
		t.Fatalf("empty auth context = %v, want InvalidArgument", err)
	}
}

// TestConcurrentConfigure runs lookups while the directory is replaced; run
// with -race. Every lookup must see one complete directory.
func TestConcurrentConfigure(t *testing.T) {
	p := configured(t, directoryYAML)
	alt := strings.ReplaceAll(directoryYAML, "Alice", "Alicia")
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 200 {
				y := directoryYAML
				if (i+j)%2 == 0 {
					y = alt
				}
				if _, err := p.Configure(ctx, &configv1.ConfigureRequest{YamlConfiguration: y}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				u, err := p.GetUser(ctx, &idmv1.GetUserRequest{UserId: "u-alice"})
				if err != nil {
					t.Error(err)
					return
				}
				if n := u.GetUser().GetName(); n != "Alice" && n != "Alicia" {
					t.Errorf("torn read: %q", n)
				}
				gs, err := p.GetGroupsForUser(ctx, &idmv1.GetGroupsForUserRequest{UserId: "u-alice"})
				if err != nil || len(gs.GetGroups()) != 2 {
					t.Errorf("GetGroupsForUser = %v, %v", gs, err)
				}
			}
		}()
	}
	wg.Wait()
}

func groupIDs(gs []*idmv1.Group) string {
	ids := make([]string, 0, len(gs))
	for _, g := range gs {
		ids = append(ids, g.GetId())
	}
	return strings.Join(ids, ",")
}

func userIDs(us []*idmv1.User) string {
	ids := make([]string, 0, len(us))
	for _, u := range us {
		ids = append(ids, u.GetId())
	}
	return strings.Join(ids, ",")
}

func ExampleParseConfig() {
	cfg, err := ParseConfig("users: [{id: u-1, groups: [g-1]}]\ngroups: [{id: g-1, name: Admins}]")
	fmt.Println(len(cfg.Users), len(cfg.Groups), err)
	// Output: 1 1 <nil>
}
