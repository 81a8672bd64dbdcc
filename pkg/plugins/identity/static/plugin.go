// Package static is an IdentityManagementService plugin backed by a static
// directory of users and groups given in the plugin YAML.
//
// It is the default identity plugin of the Apeiro profile (builtin name
// APEIRO_IDENTITY) and is also served as an external plugin binary by
// cmd/plugins/identity-static. It is meant for small, fixed directories
// (bootstrap administrators, technical users, development and test
// landscapes); a production IdP is reached through a different plugin.
//
// Semantics CMK relies on (docs/plugins.md):
//   - a missing user or group is gRPC NotFound (CMK then shows "unknown user"
//     or marks the group as not existing);
//   - an empty user or group identifier is InvalidArgument;
//   - Configure("") is valid and yields an empty directory;
//   - Configure may run concurrently with lookups: the parsed directory is
//     swapped atomically, a lookup sees either the old or the new one.
//
// Lookup keys: GetGroup receives a group *name* (CMK resolves IAM group names)
// and matches the name first, then the ID; GetUsersForGroup receives a group
// ID and matches the ID first, then the name. Users are found by ID only.
//
// Tenant scoping: when tenantKey is configured, every request must carry
// AuthContext.data[tenantKey] (InvalidArgument otherwise) and sees only the
// directory configured for that tenant; an unknown tenant sees an empty
// directory, so lookups are NotFound and lists are empty — the answer does not
// reveal whether another tenant has such a user.
package static

import (
	"context"
	"sync/atomic"

	"github.com/openkcm/plugin-sdk/pkg/catalog"
	idmv1 "github.com/openkcm/plugin-sdk/proto/plugin/identity_management/v1"
	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/internal/pluginlog"
)

const (
	// BuiltinName is the name under which the builtin is registered.
	BuiltinName = "APEIRO_IDENTITY"
	// PluginType is the plugin-sdk type (and handshake cookie).
	PluginType = idmv1.Type

	buildInfo = `{"plugin":"apeiro-identity-static","type":"IdentityManagementService"}`
)

// Plugin implements IdentityManagementService and the config service.
type Plugin struct {
	idmv1.UnimplementedIdentityManagementServiceServer
	configv1.UnimplementedConfigServer

	state atomic.Pointer[state]
	pluginlog.Holder
}

var (
	_ idmv1.IdentityManagementServiceServer = (*Plugin)(nil)
	_ configv1.ConfigServer                 = (*Plugin)(nil)
)

// New returns an unconfigured plugin; until Configure succeeds it serves an
// empty directory.
func New() *Plugin {
	p := &Plugin{}
	p.state.Store(emptyState())
	return p
}

// NewBuiltIn returns the plugin as a plugin-sdk builtin named APEIRO_IDENTITY.
func NewBuiltIn() catalog.BuiltInPlugin {
	return NewBuiltInFrom(New())
}

// NewBuiltInFrom wraps an existing Plugin as a builtin (tests use it to keep a
// handle on the implementation).
func NewBuiltInFrom(p *Plugin) catalog.BuiltInPlugin {
	return catalog.MakeBuiltIn(BuiltinName,
		idmv1.IdentityManagementServicePluginServer(p),
		configv1.ConfigServiceServer(p))
}

// Configure parses the YAML and atomically replaces the directory. On error
// the previous directory stays in place.
func (p *Plugin) Configure(_ context.Context, req *configv1.ConfigureRequest) (*configv1.ConfigureResponse, error) {
	cfg, err := ParseConfig(req.GetYamlConfiguration())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "identity static: invalid configuration: %v", err)
	}
	st := newState(cfg)
	p.state.Store(st)
	p.Log().Info("identity directory configured", "tenantKey", cfg.TenantKey, "directories", len(st.dirs))
	bi := buildInfo
	return &configv1.ConfigureResponse{BuildInfo: &bi}, nil
}

// GetUser returns the user with the given ID.
func (p *Plugin) GetUser(_ context.Context, req *idmv1.GetUserRequest) (*idmv1.GetUserResponse, error) {
	if req.GetUserId() == "" {
		return nil, status.Error(codes.InvalidArgument, "user_id is required")
	}
	dir, err := p.directory(req.GetAuthContext())
	if err != nil {
		return nil, err
	}
	u, ok := dir.usersByID[req.GetUserId()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "user %q not found", req.GetUserId())
	}
	return &idmv1.GetUserResponse{User: u.proto()}, nil
}

// GetGroup returns the group with the given name (or, failing that, ID).
func (p *Plugin) GetGroup(_ context.Context, req *idmv1.GetGroupRequest) (*idmv1.GetGroupResponse, error) {
	if req.GetGroupName() == "" {
		return nil, status.Error(codes.InvalidArgument, "group_name is required")
	}
	dir, err := p.directory(req.GetAuthContext())
	if err != nil {
		return nil, err
	}
	g, ok := dir.groupByName(req.GetGroupName())
	if !ok {
		return nil, status.Errorf(codes.NotFound, "group %q does not exist", req.GetGroupName())
	}
	return &idmv1.GetGroupResponse{Group: g.proto()}, nil
}

// GetAllGroups lists every group of the (tenant's) directory in config order.
func (p *Plugin) GetAllGroups(_ context.Context, req *idmv1.GetAllGroupsRequest) (*idmv1.GetAllGroupsResponse, error) {
	dir, err := p.directory(req.GetAuthContext())
	if err != nil {
		return nil, err
	}
	out := make([]*idmv1.Group, 0, len(dir.groups))
	for _, g := range dir.groups {
		out = append(out, g.proto())
	}
	return &idmv1.GetAllGroupsResponse{Groups: out}, nil
}

// GetUsersForGroup lists the members of a group; NotFound if the group does not exist.
func (p *Plugin) GetUsersForGroup(_ context.Context, req *idmv1.GetUsersForGroupRequest) (*idmv1.GetUsersForGroupResponse, error) {
	if req.GetGroupId() == "" {
		return nil, status.Error(codes.InvalidArgument, "group_id is required")
	}
	dir, err := p.directory(req.GetAuthContext())
	if err != nil {
		return nil, err
	}
	g, ok := dir.groupByID(req.GetGroupId())
	if !ok {
		return nil, status.Errorf(codes.NotFound, "group %q does not exist", req.GetGroupId())
	}
	members := dir.members[g.id]
	out := make([]*idmv1.User, 0, len(members))
	for _, u := range members {
		out = append(out, u.proto())
	}
	return &idmv1.GetUsersForGroupResponse{Users: out}, nil
}

// GetGroupsForUser lists the groups of a user; NotFound if the user does not exist.
func (p *Plugin) GetGroupsForUser(_ context.Context, req *idmv1.GetGroupsForUserRequest) (*idmv1.GetGroupsForUserResponse, error) {
	if req.GetUserId() == "" {
		return nil, status.Error(codes.InvalidArgument, "user_id is required")
	}
	dir, err := p.directory(req.GetAuthContext())
	if err != nil {
		return nil, err
	}
	u, ok := dir.usersByID[req.GetUserId()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "user %q not found", req.GetUserId())
	}
	out := make([]*idmv1.Group, 0, len(u.groups))
	for _, g := range u.groups {
		out = append(out, g.proto())
	}
	return &idmv1.GetGroupsForUserResponse{Groups: out}, nil
}

// directory selects the directory a request may see.
func (p *Plugin) directory(ac *idmv1.AuthContext) (*directory, error) {
	st := p.state.Load()
	if st.tenantKey == "" {
		return st.dirs[""], nil
	}
	tenant := ac.GetData()[st.tenantKey]
	if tenant == "" {
		return nil, status.Errorf(codes.InvalidArgument, "auth_context.data[%q] is required to select the tenant directory", st.tenantKey)
	}
	if dir, ok := st.dirs[tenant]; ok {
		return dir, nil
	}
	return emptyDirectory, nil
}

// state is an immutable, indexed snapshot of a configuration.
type state struct {
	tenantKey string
	dirs      map[string]*directory // "" is the unscoped directory
}

type user struct {
	id, name, email string
	groups          []*group
}

type group struct {
	id, name string
}

func (u *user) proto() *idmv1.User {
	return &idmv1.User{Id: u.id, Name: u.name, Email: u.email}
}

func (g *group) proto() *idmv1.Group { return &idmv1.Group{Id: g.id, Name: g.name} }

type directory struct {
	groups     []*group
	usersByID  map[string]*user
	groupsByID map[string]*group
	groupsByNm map[string]*group
	members    map[string][]*user // group ID → users in config order
}

var emptyDirectory = buildDirectory(Directory{})

func emptyState() *state {
	return &state{dirs: map[string]*directory{"": emptyDirectory}}
}

func newState(cfg *Config) *state {
	st := &state{tenantKey: cfg.TenantKey, dirs: map[string]*directory{}}
	if cfg.TenantKey == "" {
		st.dirs[""] = buildDirectory(Directory{Users: cfg.Users, Groups: cfg.Groups})
		return st
	}
	for tenant, d := range cfg.Tenants {
		st.dirs[tenant] = buildDirectory(d)
	}
	return st
}

// buildDirectory indexes an already validated Directory.
func buildDirectory(d Directory) *directory {
	dir := &directory{
		usersByID:  make(map[string]*user, len(d.Users)),
		groupsByID: make(map[string]*group, len(d.Groups)),
		groupsByNm: make(map[string]*group, len(d.Groups)),
		members:    make(map[string][]*user, len(d.Groups)),
	}
	for _, gc := range d.Groups {
		g := &group{id: gc.ID, name: gc.displayName()}
		dir.groups = append(dir.groups, g)
		dir.groupsByID[g.id] = g
		dir.groupsByNm[g.name] = g
	}
	for _, uc := range d.Users {
		u := &user{id: uc.ID, name: uc.Name, email: uc.Email}
		for _, gid := range uc.Groups {
			g := dir.groupsByID[gid]
			u.groups = append(u.groups, g)
			dir.members[gid] = append(dir.members[gid], u)
		}
		dir.usersByID[u.id] = u
	}
	return dir
}

func (d *directory) groupByName(s string) (*group, bool) {
	if g, ok := d.groupsByNm[s]; ok {
		return g, true
	}
	g, ok := d.groupsByID[s]
	return g, ok
}

func (d *directory) groupByID(s string) (*group, bool) {
	if g, ok := d.groupsByID[s]; ok {
		return g, true
	}
	g, ok := d.groupsByNm[s]
	return g, ok
}
