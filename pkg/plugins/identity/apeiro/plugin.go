// Package apeiro is the Apeiro IdentityManagementService plugin: CMK's users and groups come from the Platform
// Mesh directory (Keycloak's Admin REST API), and Platform Mesh workspace roles (Owner, Admin, Member, Viewer, or
// whatever the YAML names) surface as groups carrying CMK permissions.
//
// Semantics (the identity contract suite, pkg/plugins/identity/contracttest, checks them in both load modes):
//   - tenant routing: with tenantKey set, AuthContext.data[tenantKey] names the tenant and selects its realm
//     (directory.realm, "{tenant}" by default); a missing or invalid tenant is InvalidArgument; a tenant without
//     a realm sees an empty directory;
//   - GetUser / GetGroup of something missing → NotFound, as are GetUsersForGroup / GetGroupsForUser of a missing
//     group / user;
//   - groups are the realm's groups that are workspace roles (all groups with allGroups: true); a group's Name is
//     the role name, so CMK's IAM group names are the role names;
//   - every directory call has its own timeout (directory.callTimeout, 5 s); answers are cached for cacheTTL (5 min),
//     NotFound for 30 s; directory outages are Unavailable, refused credentials FailedPrecondition;
//   - Configure makes no network call and swaps the configuration atomically.
package apeiro

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/openkcm/plugin-sdk/pkg/catalog"
	idmv1 "github.com/openkcm/plugin-sdk/proto/plugin/identity_management/v1"
	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/internal/pluginlog"
)

const (
	// BuiltinName is the profile name of the plugin.
	BuiltinName = "APEIRO_IDENTITY"
	buildInfo   = `{"plugin":"apeiro-identity","type":"IdentityManagementService"}`
)

// Plugin implements IdentityManagementService and the config service.
type Plugin struct {
	idmv1.UnimplementedIdentityManagementServiceServer
	configv1.UnimplementedConfigServer
	pluginlog.Holder

	state atomic.Pointer[state]
	// newDirectory builds the backend client (tests inject fakes).
	newDirectory func(*settings) directory
	now          func() time.Time
}

type state struct {
	s     *settings
	dir   directory // nil: empty directory
	cache *ttlCache
}

var (
	_ idmv1.IdentityManagementServiceServer = (*Plugin)(nil)
	_ configv1.ConfigServer                 = (*Plugin)(nil)
)

// New returns an unconfigured plugin serving an empty directory.
func New() *Plugin {
	p := &Plugin{newDirectory: func(s *settings) directory { return newKeycloak(s) }, now: time.Now}
	s, _ := parseConfig("")
	p.state.Store(&state{s: s, cache: newTTLCache(p.now)})
	return p
}

// NewBuiltIn returns the plugin as a builtin named APEIRO_IDENTITY.
func NewBuiltIn() catalog.BuiltInPlugin {
	p := New()
	return catalog.MakeBuiltIn(BuiltinName, idmv1.IdentityManagementServicePluginServer(p), configv1.ConfigServiceServer(p))
}

// Configure validates the YAML (every problem at once) and swaps the configuration; the cache starts empty.
func (p *Plugin) Configure(_ context.Context, req *configv1.ConfigureRequest) (*configv1.ConfigureResponse, error) {
	s, err := parseConfig(req.GetYamlConfiguration())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "identity apeiro: invalid configuration: %v", err)
	}
	st := &state{s: s, cache: newTTLCache(p.now)}
	if s.base != nil {
		st.dir = p.newDirectory(s)
	}
	p.state.Store(st)
	dirURL := ""
	if s.base != nil {
		dirURL = s.base.String()
	}
	p.Log().Info("identity directory configured", "directory", dirURL, "realm", s.realm, "tenantKey", s.tenantKey, "cacheTTL", s.cacheTTL.String())
	bi := buildInfo
	return &configv1.ConfigureResponse{BuildInfo: &bi}, nil
}

// scope resolves the request's realm.
func (p *Plugin) scope(ac *idmv1.AuthContext) (*state, string, error) {
	st := p.state.Load()
	tenant := ""
	if st.s.tenantKey != "" {
		tenant = ac.GetData()[st.s.tenantKey]
		if tenant == "" {
			return nil, "", status.Errorf(codes.InvalidArgument, "auth_context.data[%q] is required to select the tenant", st.s.tenantKey)
		}
	}
	realm, err := st.s.realmFor(tenant)
	if err != nil {
		return nil, "", status.Errorf(codes.InvalidArgument, "auth_context.data[%q]: %v", st.s.tenantKey, err)
	}
	return st, realm, nil
}

func isNotFound(err error) bool { return errors.Is(err, errNotFound) }

// callCtx bounds one directory call.
func (st *state) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, st.s.callTimeout)
}

// toStatus maps a directory error to the gRPC status CMK expects.
func toStatus(what string, err error) error {
	switch {
	case isNotFound(err):
		return status.Errorf(codes.NotFound, "%s not found", what)
	case errors.Is(err, errCredentials):
		return status.Errorf(codes.FailedPrecondition, "identity apeiro: %s: %v", what, err)
	case errors.Is(err, context.DeadlineExceeded):
		return status.Errorf(codes.DeadlineExceeded, "identity apeiro: %s: the directory did not answer in time", what)
	case errors.Is(err, context.Canceled):
		return status.Errorf(codes.Canceled, "identity apeiro: %s: canceled", what)
	}
	return status.Errorf(codes.Unavailable, "identity apeiro: %s: %v", what, err)
}

func (st *state) user(ctx context.Context, realm, id string) (*kcUser, error) {
	if st.dir == nil {
		return nil, errNotFound
	}
	return cached(st.cache, st.s.cacheTTL, "u\x00"+realm+"\x00"+id, func() (*kcUser, error) {
		c, cancel := st.callCtx(ctx)
		defer cancel()
		return st.dir.User(c, realm, id)
	})
}

// groups returns the realm's visible groups (roles only, unless allGroups); an unknown realm has none.
func (st *state) groups(ctx context.Context, realm string) ([]kcGroup, error) {
	if st.dir == nil {
		return nil, nil
	}
	gs, err := cached(st.cache, st.s.cacheTTL, "g\x00"+realm, func() ([]kcGroup, error) {
		c, cancel := st.callCtx(ctx)
		defer cancel()
		return st.dir.Groups(c, realm)
	})
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return st.visible(gs), nil
}

func (st *state) visible(gs []kcGroup) []kcGroup {
	if st.s.allGroups {
		return gs
	}
	out := make([]kcGroup, 0, len(gs))
	for _, g := range gs {
		if role, ok := st.s.roles.Role(g.Name); ok {
			g.Name = role
			out = append(out, g)
		}
	}
	return out
}

func userProto(u *kcUser) *idmv1.User {
	return &idmv1.User{Id: u.ID, Name: u.displayName(), Email: u.Email}
}

func groupProto(g kcGroup) *idmv1.Group { return &idmv1.Group{Id: g.ID, Name: g.Name} }

// GetUser returns a user by directory ID.
func (p *Plugin) GetUser(ctx context.Context, req *idmv1.GetUserRequest) (*idmv1.GetUserResponse, error) {
	if req.GetUserId() == "" {
		return nil, status.Error(codes.InvalidArgument, "user_id is required")
	}
	st, realm, err := p.scope(req.GetAuthContext())
	if err != nil {
		return nil, err
	}
	u, err := st.user(ctx, realm, req.GetUserId())
	if err != nil {
		return nil, toStatus(fmt.Sprintf("user %q", req.GetUserId()), err)
	}
	return &idmv1.GetUserResponse{User: userProto(u)}, nil
}

// GetGroup returns a group by name (a role name; case-insensitive for roles), falling back to its ID.
func (p *Plugin) GetGroup(ctx context.Context, req *idmv1.GetGroupRequest) (*idmv1.GetGroupResponse, error) {
	name := req.GetGroupName()
	if name == "" {
		return nil, status.Error(codes.InvalidArgument, "group_name is required")
	}
	st, realm, err := p.scope(req.GetAuthContext())
	if err != nil {
		return nil, err
	}
	gs, err := st.groups(ctx, realm)
	if err != nil {
		return nil, toStatus(fmt.Sprintf("group %q", name), err)
	}
	if g, ok := findGroup(gs, name); ok {
		return &idmv1.GetGroupResponse{Group: groupProto(g)}, nil
	}
	return nil, status.Errorf(codes.NotFound, "group %q does not exist", name)
}

func findGroup(gs []kcGroup, key string) (kcGroup, bool) {
	for _, g := range gs {
		if strings.EqualFold(g.Name, key) {
			return g, true
		}
	}
	for _, g := range gs {
		if g.ID == key {
			return g, true
		}
	}
	return kcGroup{}, false
}

// GetAllGroups lists the visible groups of the tenant's realm.
func (p *Plugin) GetAllGroups(ctx context.Context, req *idmv1.GetAllGroupsRequest) (*idmv1.GetAllGroupsResponse, error) {
	st, realm, err := p.scope(req.GetAuthContext())
	if err != nil {
		return nil, err
	}
	gs, err := st.groups(ctx, realm)
	if err != nil {
		return nil, toStatus("groups", err)
	}
	out := make([]*idmv1.Group, 0, len(gs))
	for _, g := range gs {
		out = append(out, groupProto(g))
	}
	return &idmv1.GetAllGroupsResponse{Groups: out}, nil
}

// GetUsersForGroup lists a group's members; the group is named by ID (or name). NotFound for a group that does not
// exist or is not visible.
func (p *Plugin) GetUsersForGroup(ctx context.Context, req *idmv1.GetUsersForGroupRequest) (*idmv1.GetUsersForGroupResponse, error) {
	key := req.GetGroupId()
	if key == "" {
		return nil, status.Error(codes.InvalidArgument, "group_id is required")
	}
	st, realm, err := p.scope(req.GetAuthContext())
	if err != nil {
		return nil, err
	}
	gs, err := st.groups(ctx, realm)
	if err != nil {
		return nil, toStatus(fmt.Sprintf("group %q", key), err)
	}
	var g kcGroup
	found := false
	for _, c := range gs {
		if c.ID == key {
			g, found = c, true
			break
		}
	}
	if !found {
		if g, found = findGroup(gs, key); !found {
			return nil, status.Errorf(codes.NotFound, "group %q does not exist", key)
		}
	}
	members, err := cached(st.cache, st.s.cacheTTL, "m\x00"+realm+"\x00"+g.ID, func() ([]kcUser, error) {
		c, cancel := st.callCtx(ctx)
		defer cancel()
		return st.dir.GroupMembers(c, realm, g.ID)
	})
	if err != nil {
		return nil, toStatus(fmt.Sprintf("members of group %q", key), err)
	}
	out := make([]*idmv1.User, 0, len(members))
	for i := range members {
		out = append(out, userProto(&members[i]))
	}
	return &idmv1.GetUsersForGroupResponse{Users: out}, nil
}

// GetGroupsForUser lists a user's visible groups; NotFound for a user that does not exist.
func (p *Plugin) GetGroupsForUser(ctx context.Context, req *idmv1.GetGroupsForUserRequest) (*idmv1.GetGroupsForUserResponse, error) {
	id := req.GetUserId()
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "user_id is required")
	}
	st, realm, err := p.scope(req.GetAuthContext())
	if err != nil {
		return nil, err
	}
	if st.dir == nil {
		return nil, status.Errorf(codes.NotFound, "user %q not found", id)
	}
	ugs, err := cached(st.cache, st.s.cacheTTL, "ug\x00"+realm+"\x00"+id, func() ([]kcGroup, error) {
		c, cancel := st.callCtx(ctx)
		defer cancel()
		return st.dir.UserGroups(c, realm, id)
	})
	if err != nil {
		return nil, toStatus(fmt.Sprintf("user %q", id), err)
	}
	vis := st.visible(ugs)
	out := make([]*idmv1.Group, 0, len(vis))
	seen := map[string]bool{}
	for _, g := range vis {
		if !seen[g.ID] {
			seen[g.ID] = true
			out = append(out, groupProto(g))
		}
	}
	slices.SortFunc(out, func(a, b *idmv1.Group) int { return strings.Compare(a.GetName(), b.GetName()) })
	return &idmv1.GetGroupsForUserResponse{Groups: out}, nil
}
