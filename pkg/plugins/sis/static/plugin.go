// Package static is a SystemInformationService plugin answering from a static
// resource graph given in the plugin YAML.
//
// It is the default resource-graph plugin of the Apeiro profile (builtin name
// APEIRO_RESOURCE_GRAPH) and is also served as an external plugin binary by
// cmd/plugins/sis-static. The webhook asks it for regions
// (Get(id=<region>, type="region")) to validate a Tenant's region and OIDC
// audiences; CMK asks it for systems (Get(id=system.Identifier, type=system.Type)).
//
// Get returns the resource's configured metadata plus derived keys (see
// KeyParentType, KeyParentID, KeyTenant, KeyRegion); configured metadata wins
// over a derived key of the same name. Region audiences are returned
// normalised ("a,b", no blanks).
//
// Errors: InvalidArgument when id or type is shorter than 3 characters (the
// protovalidate rule of GetRequest, checked here too because a builtin is
// called without the SDK's validation interceptor); NotFound for an unknown
// resource. Configure("") is valid and yields an empty graph. Configure swaps
// the precomputed answers atomically, so it is safe next to Get.
package static

import (
	"context"
	"strings"
	"sync/atomic"

	"buf.build/go/protovalidate"
	"github.com/openkcm/plugin-sdk/pkg/catalog"
	sisv1 "github.com/openkcm/plugin-sdk/proto/plugin/systeminformation/v1"
	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/internal/pluginlog"
)

const (
	// BuiltinName is the name under which the builtin is registered.
	BuiltinName = "APEIRO_RESOURCE_GRAPH"
	// PluginType is the plugin-sdk type (and handshake cookie).
	PluginType = sisv1.Type

	// The system types of the Platform Mesh. CMK refreshes a system with
	// Get(id=<system identifier>, type=<system type>); the kcp-backed
	// resource-graph plugin (pkg/plugins/sis/resourcegraph) answers the same
	// types with the same IDs, so a profile can switch between the two:
	//
	//	region     region name (eu-central)
	//	tenant     tenant workspace path (root:acme)
	//	workspace  workspace path (root:acme:team)
	//	account    <workspace path>/<namespace>/<name> of an Account
	//
	// Other types are answered as configured (a warning is logged), so a
	// deployment can describe systems the mesh does not know.
	TypeRegion    = "region"
	TypeTenant    = "tenant"
	TypeWorkspace = "workspace"
	TypeAccount   = "account"

	// KeyWorkspace, KeyNamespace and KeyName are derived for an account from
	// its ID (<workspace path>/<namespace>/<name>), as the resource-graph
	// plugin reports them.
	KeyWorkspace = "workspace"
	KeyNamespace = "namespace"
	KeyName      = "name"

	// KeyAudiences is the region metadata key holding comma-separated OIDC audiences.
	KeyAudiences = "audiences"
	// KeyParentType and KeyParentID name the direct parent, if any.
	KeyParentType = "parentType"
	KeyParentID   = "parentId"
	// KeyTenant is the ID of the nearest ancestor-or-self of type tenant (or
	// the nearest configured "tenant" metadata value on the way up).
	KeyTenant = "tenant"
	// KeyRegion is the ID of the nearest ancestor-or-self of type region (or
	// the nearest configured "region" metadata value on the way up).
	KeyRegion = "region"

	buildInfo = `{"plugin":"apeiro-sis-static","type":"SystemInformationService"}`
)

// Plugin implements SystemInformationService and the config service.
type Plugin struct {
	sisv1.UnimplementedSystemInformationServiceServer
	configv1.UnimplementedConfigServer

	answers atomic.Pointer[map[Ref]map[string]string]
	pluginlog.Holder
}

var (
	_ sisv1.SystemInformationServiceServer = (*Plugin)(nil)
	_ configv1.ConfigServer                = (*Plugin)(nil)
)

// New returns a plugin with an empty graph.
func New() *Plugin {
	p := &Plugin{}
	empty := map[Ref]map[string]string{}
	p.answers.Store(&empty)
	return p
}

// NewBuiltIn returns the plugin as a plugin-sdk builtin named APEIRO_RESOURCE_GRAPH.
func NewBuiltIn() catalog.BuiltInPlugin { return NewBuiltInFrom(New()) }

// NewBuiltInFrom wraps an existing Plugin as a builtin.
func NewBuiltInFrom(p *Plugin) catalog.BuiltInPlugin {
	return catalog.MakeBuiltIn(BuiltinName,
		sisv1.SystemInformationServicePluginServer(p),
		configv1.ConfigServiceServer(p))
}

// Configure parses the YAML and atomically replaces the graph. On error the
// previous graph stays in place.
func (p *Plugin) Configure(_ context.Context, req *configv1.ConfigureRequest) (*configv1.ConfigureResponse, error) {
	cfg, err := ParseConfig(req.GetYamlConfiguration())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "sis static: invalid configuration: %v", err)
	}
	answers := buildAnswers(cfg)
	for _, r := range cfg.Resources {
		if !IsPlatformMeshType(r.Type) {
			p.Log().Warn("resource type is not a Platform Mesh system type; answered as configured",
				"type", r.Type, "known", strings.Join(PlatformMeshTypes(), ","))
		}
	}
	p.answers.Store(&answers)
	p.Log().Info("resource graph configured", "resources", len(answers))
	bi := buildInfo
	return &configv1.ConfigureResponse{BuildInfo: &bi}, nil
}

// Get returns the metadata of one resource.
func (p *Plugin) Get(_ context.Context, req *sisv1.GetRequest) (*sisv1.GetResponse, error) {
	if err := protovalidate.Validate(req); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "sis static: invalid request: %v", err)
	}
	md, ok := (*p.answers.Load())[Ref{Type: req.GetType(), ID: req.GetId()}]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "resource %s/%s not found", req.GetType(), req.GetId())
	}
	out := make(map[string]string, len(md))
	for k, v := range md {
		out[k] = v
	}
	return &sisv1.GetResponse{Metadata: out}, nil
}

// buildAnswers precomputes every Get response of a validated configuration.
func buildAnswers(cfg *Config) map[Ref]map[string]string {
	byRef := make(map[Ref]*ResourceConfig, len(cfg.Resources))
	for i := range cfg.Resources {
		r := &cfg.Resources[i]
		byRef[Ref{Type: r.Type, ID: r.ID}] = r
	}
	out := make(map[Ref]map[string]string, len(byRef))
	for ref, r := range byRef {
		md := make(map[string]string, len(r.Metadata)+4)
		if r.Parent != nil {
			md[KeyParentType] = r.Parent.Type
			md[KeyParentID] = r.Parent.ID
		}
		if v, ok := nearest(byRef, r, TypeTenant, KeyTenant); ok {
			md[KeyTenant] = v
		}
		if v, ok := nearest(byRef, r, TypeRegion, KeyRegion); ok {
			md[KeyRegion] = v
		}
		if r.Type == TypeAccount {
			if ws, rest, ok := strings.Cut(r.ID, "/"); ok {
				if ns, name, ok := strings.Cut(rest, "/"); ok && ws != "" && ns != "" && name != "" {
					md[KeyWorkspace], md[KeyNamespace], md[KeyName] = ws, ns, name
				}
			}
		}
		// Configured metadata wins over derived keys.
		for k, v := range r.Metadata {
			md[k] = v
		}
		if r.Type == TypeRegion {
			if aud, ok := md[KeyAudiences]; ok {
				list, _ := SplitAudiences(aud) // validated in ParseConfig
				md[KeyAudiences] = strings.Join(list, ",")
			}
		}
		out[ref] = md
	}
	return out
}

// nearest walks from r up its parent chain and returns the ID of the first
// resource of type typ, or the first explicit metadata value for key,
// whichever comes first. The graph is acyclic (validated).
func nearest(byRef map[Ref]*ResourceConfig, r *ResourceConfig, typ, key string) (string, bool) {
	for cur := r; cur != nil; {
		if cur.Type == typ {
			return cur.ID, true
		}
		if v, ok := cur.Metadata[key]; ok && v != "" {
			return v, true
		}
		if cur.Parent == nil {
			return "", false
		}
		cur = byRef[*cur.Parent]
	}
	return "", false
}

// PlatformMeshTypes lists the system types of the Platform Mesh.
func PlatformMeshTypes() []string {
	return []string{TypeRegion, TypeTenant, TypeWorkspace, TypeAccount}
}

// IsPlatformMeshType reports whether t is one of PlatformMeshTypes.
func IsPlatformMeshType(t string) bool {
	switch t {
	case TypeRegion, TypeTenant, TypeWorkspace, TypeAccount:
		return true
	}
	return false
}
