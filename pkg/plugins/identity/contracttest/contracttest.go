// Package contracttest is the reusable contract suite for
// IdentityManagementService plugins. Run loads any implementation through the
// real plugin-sdk catalog — as an in-process builtin and as an external
// go-plugin process — configures it from YAML and checks every RPC with the
// semantics CMK relies on (docs/plugins.md):
//
//   - GetUser / GetGroup of something that does not exist → gRPC NotFound
//     (CMK shows "unknown user" / marks the group as not existing);
//   - the fixture user, group and memberships come back from all five RPCs,
//     with the AuthContext CMK forwards;
//   - optionally, a second AuthContext (another tenant) must not see them;
//   - empty identifiers are refused (InvalidArgument or NotFound);
//   - Configure may run concurrently with RPCs (runtime reconfiguration
//     through the Config service while lookups are in flight);
//   - Configure("") for optional configuration, invalid YAML rejected at load
//     with a clear error, go-plugin health SERVING, clean shutdown.
//
// Usage, next to an implementation:
//
//	func TestMain(m *testing.M) { plugintest.Main(m) }
//	func TestContract(t *testing.T) {
//		contracttest.Run(t, contracttest.Config{
//			BuiltIn:       static.NewBuiltIn,
//			BinaryPackage: "github.com/apeirora/apeiro-cmk/cmd/plugins/identity-static",
//			YAML:          "...", Fixtures: contracttest.Fixtures{...},
//		})
//	}
package contracttest

import (
	"context"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/openkcm/plugin-sdk/pkg/catalog"
	idmv1 "github.com/openkcm/plugin-sdk/proto/plugin/identity_management/v1"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/host"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/plugintest"
)

// DefaultName is the profile name used when Config.Name is empty.
const DefaultName = "APEIRO_IDENTITY"

// Config describes the implementation under test.
type Config struct {
	// Name is the profile (and builtin) name; default APEIRO_IDENTITY.
	Name string
	// BuiltIn returns a fresh builtin registered under Name. Nil skips builtin mode.
	BuiltIn func() catalog.BuiltInPlugin
	// BinaryPackage is the main package of the external plugin; Args its argv.
	// Empty skips external mode.
	BinaryPackage string
	Args          []string

	// YAML configures the plugin so that Fixtures hold.
	YAML string
	// ConfigOptional: Configure("") must succeed (the host sends "" when a
	// profile entry has no yamlConfiguration); otherwise it must fail.
	ConfigOptional bool
	// InvalidYAML must be rejected by Configure (default: broken YAML);
	// InvalidYAMLMessage, if set, must appear in the load error.
	InvalidYAML        string
	InvalidYAMLMessage string

	Fixtures Fixtures
}

// Fixtures are facts about the directory YAML describes.
type Fixtures struct {
	// AuthContext is sent with every request (CMK forwards configured JWT
	// claims such as issuer, client_id, app_tid).
	AuthContext map[string]string
	// OtherAuthContext, if set, is another tenant's context: the fixture user
	// and group must be NotFound there.
	OtherAuthContext map[string]string

	// User exists; Name and Email are compared when non-empty.
	User User
	// Group exists and has User as a member. GetGroup is called with its Name.
	Group Group
	// UserGroups is the exact set of group IDs of User (nil: must contain Group.ID).
	UserGroups []string
	// GroupMembers is the exact set of user IDs in Group (nil: must contain User.ID).
	GroupMembers []string
	// AllGroups is the exact set of group IDs of GetAllGroups (nil: must contain Group.ID).
	AllGroups []string

	// MissingUserID / MissingGroupName do not exist (defaults provided).
	MissingUserID    string
	MissingGroupName string
	// StrictListNotFound: GetUsersForGroup / GetGroupsForUser of a missing
	// group / user must be NotFound. Otherwise an empty list is accepted too
	// (CMK only relies on NotFound from GetUser and GetGroup).
	StrictListNotFound bool
}

// User is an expected user.
type User struct{ ID, Name, Email string }

// Group is an expected group.
type Group struct{ ID, Name string }

func (c *Config) defaults() {
	if c.Name == "" {
		c.Name = DefaultName
	}
	if c.InvalidYAML == "" {
		c.InvalidYAML = "{{{ this is: [not yaml"
	}
	if c.Fixtures.MissingUserID == "" {
		c.Fixtures.MissingUserID = "contract-no-such-user-7f3a"
	}
	if c.Fixtures.MissingGroupName == "" {
		c.Fixtures.MissingGroupName = "contract-no-such-group-7f3a"
	}
}

func (c *Config) spec(yaml string) plugintest.Spec {
	return plugintest.Spec{
		Type: host.TypeIdentity, Name: c.Name, YAML: yaml,
		BuiltIn: c.BuiltIn, Package: c.BinaryPackage, Args: c.Args,
	}
}

// Run runs the suite in every load mode the Config supports.
func Run(t *testing.T, c Config) {
	t.Helper()
	c.defaults()
	if c.Fixtures.User.ID == "" || c.Fixtures.Group.ID == "" || c.Fixtures.Group.Name == "" {
		t.Fatal("contracttest: Fixtures.User.ID, Fixtures.Group.ID and Fixtures.Group.Name are required")
	}
	for _, mode := range c.spec("").Modes() {
		t.Run(string(mode), func(t *testing.T) {
			l := plugintest.Load(t, c.spec(c.YAML), mode)
			idm, err := l.Identity()
			if err != nil {
				t.Fatal(err)
			}
			t.Run("GetUser", func(t *testing.T) { checkGetUser(t, &c, idm) })
			t.Run("GetGroup", func(t *testing.T) { checkGetGroup(t, &c, idm) })
			t.Run("GetAllGroups", func(t *testing.T) { checkGetAllGroups(t, &c, idm) })
			t.Run("GetUsersForGroup", func(t *testing.T) { checkGetUsersForGroup(t, &c, idm) })
			t.Run("GetGroupsForUser", func(t *testing.T) { checkGetGroupsForUser(t, &c, idm) })
			if c.Fixtures.OtherAuthContext != nil {
				t.Run("tenant-isolation", func(t *testing.T) { checkIsolation(t, &c, idm) })
			}
			t.Run("reconfigure-under-load", func(t *testing.T) { checkReconfigure(t, &c, l, idm) })
			checkConfigLifecycle(t, &c, mode)
			t.Run("health", func(t *testing.T) { plugintest.CheckHealth(t, l) })
			t.Run("shutdown", func(t *testing.T) { plugintest.CheckShutdown(t, l) })
		})
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

func (c *Config) ac() *idmv1.AuthContext { return authContext(c.Fixtures.AuthContext) }

func authContext(m map[string]string) *idmv1.AuthContext {
	if m == nil {
		return nil
	}
	return &idmv1.AuthContext{Data: m}
}

func wantCode(t *testing.T, what string, err error, codes ...codes.Code) {
	t.Helper()
	if !slices.Contains(codes, status.Code(err)) {
		t.Fatalf("%s: got %v, want code %v", what, err, codes)
	}
}

func checkGetUser(t *testing.T, c *Config, idm idmv1.IdentityManagementServiceClient) {
	f := c.Fixtures
	resp, err := idm.GetUser(ctx(t), &idmv1.GetUserRequest{UserId: f.User.ID, AuthContext: c.ac()})
	if err != nil {
		t.Fatalf("GetUser(%q): %v", f.User.ID, err)
	}
	u := resp.GetUser()
	if u.GetId() != f.User.ID || (f.User.Name != "" && u.GetName() != f.User.Name) || (f.User.Email != "" && u.GetEmail() != f.User.Email) {
		t.Fatalf("GetUser(%q) = %v, want %+v", f.User.ID, u, f.User)
	}
	_, err = idm.GetUser(ctx(t), &idmv1.GetUserRequest{UserId: f.MissingUserID, AuthContext: c.ac()})
	wantCode(t, "GetUser of a missing user", err, codes.NotFound)
	_, err = idm.GetUser(ctx(t), &idmv1.GetUserRequest{UserId: "", AuthContext: c.ac()})
	wantCode(t, "GetUser with an empty id", err, codes.InvalidArgument, codes.NotFound)
}

func checkGetGroup(t *testing.T, c *Config, idm idmv1.IdentityManagementServiceClient) {
	f := c.Fixtures
	resp, err := idm.GetGroup(ctx(t), &idmv1.GetGroupRequest{GroupName: f.Group.Name, AuthContext: c.ac()})
	if err != nil {
		t.Fatalf("GetGroup(%q): %v", f.Group.Name, err)
	}
	if g := resp.GetGroup(); g.GetId() != f.Group.ID || g.GetName() != f.Group.Name {
		t.Fatalf("GetGroup(%q) = %v, want %+v", f.Group.Name, g, f.Group)
	}
	_, err = idm.GetGroup(ctx(t), &idmv1.GetGroupRequest{GroupName: f.MissingGroupName, AuthContext: c.ac()})
	wantCode(t, "GetGroup of a missing group", err, codes.NotFound)
	_, err = idm.GetGroup(ctx(t), &idmv1.GetGroupRequest{GroupName: "", AuthContext: c.ac()})
	wantCode(t, "GetGroup with an empty name", err, codes.InvalidArgument, codes.NotFound)
}

func checkGetAllGroups(t *testing.T, c *Config, idm idmv1.IdentityManagementServiceClient) {
	resp, err := idm.GetAllGroups(ctx(t), &idmv1.GetAllGroupsRequest{AuthContext: c.ac()})
	if err != nil {
		t.Fatalf("GetAllGroups: %v", err)
	}
	ids := groupIDs(resp.GetGroups())
	checkSet(t, "GetAllGroups", ids, c.Fixtures.AllGroups, c.Fixtures.Group.ID)
	for _, g := range resp.GetGroups() {
		if g.GetId() == c.Fixtures.Group.ID && g.GetName() != c.Fixtures.Group.Name {
			t.Fatalf("GetAllGroups: group %q has name %q, want %q", g.GetId(), g.GetName(), c.Fixtures.Group.Name)
		}
	}
}

func checkGetUsersForGroup(t *testing.T, c *Config, idm idmv1.IdentityManagementServiceClient) {
	f := c.Fixtures
	resp, err := idm.GetUsersForGroup(ctx(t), &idmv1.GetUsersForGroupRequest{GroupId: f.Group.ID, AuthContext: c.ac()})
	if err != nil {
		t.Fatalf("GetUsersForGroup(%q): %v", f.Group.ID, err)
	}
	ids := make([]string, 0, len(resp.GetUsers()))
	for _, u := range resp.GetUsers() {
		ids = append(ids, u.GetId())
	}
	checkSet(t, "GetUsersForGroup", ids, f.GroupMembers, f.User.ID)

	resp, err = idm.GetUsersForGroup(ctx(t), &idmv1.GetUsersForGroupRequest{GroupId: f.MissingGroupName, AuthContext: c.ac()})
	checkMissingList(t, c, "GetUsersForGroup of a missing group", err, len(resp.GetUsers()))
}

func checkGetGroupsForUser(t *testing.T, c *Config, idm idmv1.IdentityManagementServiceClient) {
	f := c.Fixtures
	resp, err := idm.GetGroupsForUser(ctx(t), &idmv1.GetGroupsForUserRequest{UserId: f.User.ID, AuthContext: c.ac()})
	if err != nil {
		t.Fatalf("GetGroupsForUser(%q): %v", f.User.ID, err)
	}
	checkSet(t, "GetGroupsForUser", groupIDs(resp.GetGroups()), f.UserGroups, f.Group.ID)

	resp, err = idm.GetGroupsForUser(ctx(t), &idmv1.GetGroupsForUserRequest{UserId: f.MissingUserID, AuthContext: c.ac()})
	checkMissingList(t, c, "GetGroupsForUser of a missing user", err, len(resp.GetGroups()))
}

func checkMissingList(t *testing.T, c *Config, what string, err error, n int) {
	t.Helper()
	switch {
	case status.Code(err) == codes.NotFound:
	case err == nil && !c.Fixtures.StrictListNotFound && n == 0:
	case err == nil && c.Fixtures.StrictListNotFound:
		t.Fatalf("%s: got success, want NotFound", what)
	default:
		t.Fatalf("%s: got %v with %d entries, want NotFound (or an empty list)", what, err, n)
	}
}

func checkIsolation(t *testing.T, c *Config, idm idmv1.IdentityManagementServiceClient) {
	f := c.Fixtures
	other := authContext(f.OtherAuthContext)
	_, err := idm.GetUser(ctx(t), &idmv1.GetUserRequest{UserId: f.User.ID, AuthContext: other})
	wantCode(t, "GetUser from another tenant", err, codes.NotFound)
	resp, err := idm.GetGroup(ctx(t), &idmv1.GetGroupRequest{GroupName: f.Group.Name, AuthContext: other})
	if err == nil {
		// A group of the same name may exist in the other tenant; it must not be ours.
		if resp.GetGroup().GetId() == f.Group.ID {
			t.Fatalf("GetGroup from another tenant returned our group %v", resp.GetGroup())
		}
	} else {
		wantCode(t, "GetGroup from another tenant", err, codes.NotFound)
	}
	all, err := idm.GetAllGroups(ctx(t), &idmv1.GetAllGroupsRequest{AuthContext: other})
	if err != nil {
		t.Fatalf("GetAllGroups from another tenant: %v", err)
	}
	if slices.Contains(groupIDs(all.GetGroups()), f.Group.ID) {
		t.Fatalf("GetAllGroups from another tenant lists our group %q", f.Group.ID)
	}
}

// checkReconfigure re-sends the same configuration through the Config service
// while lookups run: every lookup must keep succeeding (the proto requires
// Configure to be safe concurrently with other RPCs).
func checkReconfigure(t *testing.T, c *Config, l *plugintest.Loaded, idm idmv1.IdentityManagementServiceClient) {
	plugintest.CheckReconfigureUnderLoad(t, l, func(ctx context.Context) error {
		_, err := idm.GetUser(ctx, &idmv1.GetUserRequest{UserId: c.Fixtures.User.ID, AuthContext: c.ac()})
		return err
	})
}

func checkConfigLifecycle(t *testing.T, c *Config, mode plugintest.Mode) {
	plugintest.CheckConfigLifecycle(t, plugintest.ConfigCheck{Spec: c.spec, Optional: c.ConfigOptional,
		InvalidYAML: c.InvalidYAML, InvalidYAMLMessage: c.InvalidYAMLMessage}, mode)
}

func groupIDs(gs []*idmv1.Group) []string {
	out := make([]string, 0, len(gs))
	for _, g := range gs {
		out = append(out, g.GetId())
	}
	return out
}

// checkSet compares got with the exact set want, or (want == nil) checks
// that got contains mustContain. Duplicates in got are an error either way.
func checkSet(t *testing.T, what string, got, want []string, mustContain string) {
	t.Helper()
	sorted := slices.Clone(got)
	slices.Sort(sorted)
	if len(slices.Compact(slices.Clone(sorted))) != len(sorted) {
		t.Fatalf("%s: duplicate entries in %v", what, got)
	}
	if want == nil {
		if !slices.Contains(got, mustContain) {
			t.Fatalf("%s = %v, want it to contain %q", what, got, mustContain)
		}
		return
	}
	w := slices.Clone(want)
	slices.Sort(w)
	if !slices.Equal(sorted, w) {
		t.Fatalf("%s = %v, want %v", what, got, want)
	}
}
