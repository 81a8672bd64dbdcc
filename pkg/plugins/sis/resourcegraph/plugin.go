// Package resourcegraph is the ApeiroResourceGraphPlugin: a SystemInformationService plugin answering from a live
// view of the Platform Mesh in kcp (pkg/kcp): its workspace tree, the tenants derived from it, the Accounts in it
// and the regions of the mesh configuration.
//
// Get(id, type) never calls kcp: it answers from the watched in-memory graph. Only right after Configure, while the
// first list has not completed, does a Get wait, for at most the configured syncTimeout (default 5 s), and then
// answers Unavailable. Types and metadata keys (docs/kcp.md):
//
//	type       id                                   metadata
//	region     region name (eu-central)             region, audiences ("a,b"; absent: any audience; "": none)
//	tenant     tenant ID (acme.eu for root:acme:eu) tenant, tenantType (Root|Nested|Shadow), parent, shadowOf, workspace, cluster
//	workspace  workspace path                       workspace, cluster, phase, parent, tenant (when it is a tenant)
//	account    <workspace path>/<namespace>/<name>  tenant, workspace, namespace, name
//
// Errors: InvalidArgument when id or type is shorter than 3 characters (the protovalidate rule of GetRequest,
// checked here too because a builtin runs without the SDK's interceptor); NotFound for an unknown type or resource;
// Unavailable before the first sync. Configure("") is refused: the plugin needs to know which kcp to watch.
package resourcegraph

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"buf.build/go/protovalidate"
	"github.com/go-logr/logr"
	"github.com/openkcm/plugin-sdk/pkg/catalog"
	sisv1 "github.com/openkcm/plugin-sdk/proto/plugin/systeminformation/v1"
	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"sigs.k8s.io/yaml"

	"github.com/apeirora/apeiro-cmk/pkg/kcp"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/internal/pluginlog"
)

const (
	// BuiltinName is the builtin's registered name (the static plugin keeps APEIRO_RESOURCE_GRAPH).
	BuiltinName = "APEIRO_RESOURCE_GRAPH_KCP"

	TypeRegion    = "region"
	TypeTenant    = "tenant"
	TypeWorkspace = "workspace"
	TypeAccount   = "account"

	KeyRegion     = "region"
	KeyAudiences  = "audiences"
	KeyTenant     = "tenant"
	KeyTenantType = "tenantType"
	KeyParent     = "parent"
	KeyShadowOf   = "shadowOf"
	KeyWorkspace  = "workspace"
	KeyCluster    = "cluster"
	KeyPhase      = "phase"
	KeyNamespace  = "namespace"
	KeyName       = "name"
	// KeyConfigAge is the age in whole seconds of the mesh configuration a region answer comes from.
	KeyConfigAge = "configAgeSeconds"

	buildInfo          = `{"plugin":"apeiro-sis-resourcegraph","type":"SystemInformationService"}`
	defaultSyncTimeout = 5 * time.Second
)

// Config is the plugin YAML; unknown fields are rejected.
//
//	kubeconfig: /etc/kcp/kubeconfig   # empty: in-cluster configuration
//	context: shard-base               # kubeconfig context; its identity must be allowed to list across workspaces
//	tenantsRoot: root                 # workspaces below it are tenants
//	platformWorkspace: root:platform  # holds the mesh ConfigMap; never a tenant
//	meshNamespace: default
//	meshName: platform-mesh
//	syncTimeout: 5s                   # longest a Get waits for the first sync
type Config struct {
	Kubeconfig        string `json:"kubeconfig"`
	Context           string `json:"context"`
	InCluster         bool   `json:"inCluster"`
	TenantsRoot       string `json:"tenantsRoot"`
	PlatformWorkspace string `json:"platformWorkspace"`
	MeshNamespace     string `json:"meshNamespace"`
	MeshName          string `json:"meshName"`
	SyncTimeout       string `json:"syncTimeout"`
}

// ParseConfig decodes and checks the YAML.
func ParseConfig(raw string) (*Config, time.Duration, error) {
	var c Config
	if strings.TrimSpace(raw) == "" {
		return nil, 0, fmt.Errorf("configuration is empty: set kubeconfig, or inCluster: true")
	}
	if err := yaml.UnmarshalStrict([]byte(raw), &c); err != nil {
		return nil, 0, fmt.Errorf("decode YAML: %w", err)
	}
	if c.Kubeconfig == "" && !c.InCluster {
		return nil, 0, fmt.Errorf("set kubeconfig, or inCluster: true")
	}
	d := defaultSyncTimeout
	if c.SyncTimeout != "" {
		var err error
		if d, err = time.ParseDuration(c.SyncTimeout); err != nil || d <= 0 || d > time.Minute {
			return nil, 0, fmt.Errorf("syncTimeout %q must be a duration in (0, 1m]", c.SyncTimeout)
		}
	}
	return &c, d, nil
}

// instance is one configured watch.
type instance struct {
	graph   *kcp.Graph
	synced  func() bool
	timeout time.Duration
	cancel  context.CancelFunc
}

// Plugin implements SystemInformationService and the config service.
type Plugin struct {
	sisv1.UnimplementedSystemInformationServiceServer
	configv1.UnimplementedConfigServer
	pluginlog.Holder

	mu  sync.RWMutex
	cur *instance
	// cfgMu serialises Configure calls.
	cfgMu sync.Mutex
}

// New returns an unconfigured plugin.
func New() *Plugin { return &Plugin{} }

// NewFromGraph returns a plugin answering from g (already fed), for tests and in-process embedding.
func NewFromGraph(g *kcp.Graph) *Plugin {
	return &Plugin{cur: &instance{graph: g, synced: func() bool { return true }, timeout: defaultSyncTimeout}}
}

// NewBuiltIn returns the plugin as a plugin-sdk builtin.
func NewBuiltIn() catalog.BuiltInPlugin {
	p := New()
	return catalog.MakeBuiltIn(BuiltinName, sisv1.SystemInformationServicePluginServer(p), configv1.ConfigServiceServer(p))
}

// Configure starts a watch of the configured kcp. The previous watch keeps answering until the new one has synced
// (or syncTimeout passed), so reconfiguring never leaves Get without an answer.
func (p *Plugin) Configure(ctx context.Context, req *configv1.ConfigureRequest) (*configv1.ConfigureResponse, error) {
	c, timeout, err := ParseConfig(req.GetYamlConfiguration())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "sis resourcegraph: invalid configuration: %v", err)
	}
	path := c.Kubeconfig
	if c.InCluster {
		path = ""
	}
	base, err := kcp.LoadConfigContext(path, c.Context)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "sis resourcegraph: invalid configuration: %v", err)
	}
	p.cfgMu.Lock()
	defer p.cfgMu.Unlock()
	g := kcp.NewGraph(kcp.Options{TenantsRoot: c.TenantsRoot, PlatformWorkspace: c.PlatformWorkspace, MeshNamespace: c.MeshNamespace, MeshName: c.MeshName}, nil)
	wctx, cancel := context.WithCancel(context.Background())
	w := kcp.NewWatcher(base, g, kcp.WatcherOptions{SkipKeys: true, Log: logr.Discard()})
	if err := w.Start(wctx); err != nil {
		cancel()
		return nil, status.Errorf(codes.Internal, "sis resourcegraph: starting the kcp watch: %v", err)
	}
	next := &instance{graph: g, synced: w.HasSynced, timeout: timeout, cancel: cancel}
	p.mu.RLock()
	hasPrev := p.cur != nil
	p.mu.RUnlock()
	if hasPrev {
		sctx, scancel := context.WithTimeout(ctx, timeout)
		_ = w.WaitForSync(sctx)
		scancel()
	}
	p.mu.Lock()
	prev := p.cur
	p.cur = next
	p.mu.Unlock()
	if prev != nil && prev.cancel != nil {
		prev.cancel()
	}
	p.Log().Info("watching kcp", "tenantsRoot", g.Options().TenantsRoot, "platformWorkspace", g.Options().PlatformWorkspace)
	bi := buildInfo
	return &configv1.ConfigureResponse{BuildInfo: &bi}, nil
}

// Close stops the watch.
func (p *Plugin) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur != nil && p.cur.cancel != nil {
		p.cur.cancel()
	}
	p.cur = nil
}

// Get returns the metadata of one resource.
func (p *Plugin) Get(ctx context.Context, req *sisv1.GetRequest) (*sisv1.GetResponse, error) {
	if err := protovalidate.Validate(req); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "sis resourcegraph: invalid request: %v", err)
	}
	p.mu.RLock()
	in := p.cur
	p.mu.RUnlock()
	if in == nil {
		return nil, status.Error(codes.FailedPrecondition, "sis resourcegraph: not configured")
	}
	if !in.synced() {
		wctx, cancel := context.WithTimeout(ctx, in.timeout)
		defer cancel()
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for !in.synced() {
			select {
			case <-wctx.Done():
				return nil, status.Error(codes.Unavailable, "sis resourcegraph: the kcp view has not synced yet")
			case <-t.C:
			}
		}
	}
	md, ok := lookup(in.graph, req.GetType(), req.GetId())
	if !ok {
		return nil, status.Errorf(codes.NotFound, "%s %q not found in the Platform Mesh", clip(req.GetType()), clip(req.GetId()))
	}
	return &sisv1.GetResponse{Metadata: md}, nil
}

// lookup answers one Get from the graph.
func lookup(g *kcp.Graph, typ, id string) (map[string]string, bool) {
	switch typ {
	case TypeRegion:
		cfg, age := g.Mesh()
		if cfg == nil {
			return nil, false
		}
		r, ok := cfg.Region(id)
		if !ok {
			return nil, false
		}
		md := map[string]string{KeyRegion: r.Name, KeyConfigAge: strconv.Itoa(int(age / time.Second))}
		if r.Audiences != nil {
			md[KeyAudiences] = strings.Join(*r.Audiences, ",")
		}
		return md, true
	case TypeTenant:
		t, ok := g.Tenant(id)
		if !ok {
			return nil, false
		}
		path := g.Options().TenantPath(t.ID)
		md := map[string]string{KeyTenant: t.ID, KeyTenantType: string(t.Type), KeyWorkspace: path}
		put(md, KeyParent, t.Parent)
		put(md, KeyShadowOf, t.ShadowOf)
		if ws, ok := g.Workspace(path); ok {
			put(md, KeyCluster, ws.Cluster)
		}
		return md, true
	case TypeWorkspace:
		ws, ok := g.Workspace(id)
		if !ok {
			return nil, false
		}
		md := map[string]string{KeyWorkspace: ws.Path, KeyCluster: ws.Cluster}
		put(md, KeyPhase, ws.Phase)
		if i := strings.LastIndexByte(ws.Path, ':'); i > 0 {
			md[KeyParent] = ws.Path[:i]
		}
		if id, ok := g.Options().TenantID(ws.Path); ok {
			if _, ok := g.Tenant(id); ok {
				md[KeyTenant] = id
			}
		}
		return md, true
	case TypeAccount:
		path, rest, ok := strings.Cut(id, "/")
		if !ok {
			return nil, false
		}
		ns, name, ok := strings.Cut(rest, "/")
		if !ok {
			return nil, false
		}
		a, tenant, ok := g.AccountAt(path, ns, name)
		if !ok {
			return nil, false
		}
		md := map[string]string{KeyWorkspace: path, KeyNamespace: a.Namespace, KeyName: a.Name}
		put(md, KeyTenant, tenant)
		return md, true
	}
	return nil, false
}

func put(md map[string]string, k, v string) {
	if v != "" {
		md[k] = v
	}
}

func clip(s string) string {
	if len(s) > 128 {
		return s[:128] + "…"
	}
	return s
}
