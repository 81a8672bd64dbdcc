package kcp

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	kcpcore "github.com/kcp-dev/kcp/sdk/apis/core"
	"github.com/kcp-dev/logicalcluster/v3"
	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	cmkadmission "github.com/apeirora/apeiro-cmk/pkg/admission"
	"github.com/apeirora/apeiro-cmk/pkg/hierarchy"
)

// Annotations this package reads.
const (
	// AnnotationCluster is set by kcp on every object: the name of its logical cluster. kcp stamps it before the
	// webhooks run, so it is not writer-controlled.
	AnnotationCluster = logicalcluster.AnnotationKey
	// AnnotationPath is set by kcp on LogicalCluster objects: the workspace path (root:org:team).
	AnnotationPath = kcpcore.LogicalClusterPathAnnotationKey
	// AnnotationShadowOf on a Workspace makes the workspace's tenant a Shadow of the tenant at the given workspace
	// path. It is set in the parent workspace, by whoever may create workspaces there, never by the tenant itself.
	AnnotationShadowOf = "cmk.apeiro.io/shadow-of"
	// AnnotationAccountWorkspace on a ServiceEncryptionKey names the workspace path of the Account it uses when
	// that Account lives in another workspace (an ancestor's, typically). Absent: the key's own workspace.
	AnnotationAccountWorkspace = "cmk.apeiro.io/account-workspace"
)

// Options select which workspaces are tenants and where the mesh configuration lives.
type Options struct {
	// TenantsRoot is the workspace path whose descendants are tenants (default "root").
	TenantsRoot string
	// PlatformWorkspace holds the mesh configuration; it and its descendants are never tenants (default
	// "root:platform").
	PlatformWorkspace string
	// MeshNamespace / MeshName name the mesh configuration ConfigMap (default "default" / "platform-mesh").
	MeshNamespace, MeshName string
}

func (o *Options) defaults() {
	if o.TenantsRoot == "" {
		o.TenantsRoot = "root"
	}
	if o.PlatformWorkspace == "" {
		o.PlatformWorkspace = "root:platform"
	}
	if o.MeshNamespace == "" {
		o.MeshNamespace = "default"
	}
	if o.MeshName == "" {
		o.MeshName = "platform-mesh"
	}
}

// TenantID returns the tenant ID of the workspace at path: its path below TenantsRoot with ":" replaced by "."
// (root:acme:eu is tenant acme.eu). Workspace names never contain dots, so the mapping is one-to-one, and the ID is
// a valid label value as ownership labels require (up to 63 characters, i.e. a bounded nesting depth).
func (o Options) TenantID(path string) (string, bool) {
	if !o.IsTenantPath(path) {
		return "", false
	}
	return strings.ReplaceAll(strings.TrimPrefix(path, o.TenantsRoot+":"), ":", "."), true
}

// TenantPath is the inverse of TenantID.
func (o Options) TenantPath(id string) string {
	return o.TenantsRoot + ":" + strings.ReplaceAll(id, ".", ":")
}

// IsTenantPath reports whether the workspace at path is a tenant.
func (o Options) IsTenantPath(path string) bool {
	if !strings.HasPrefix(path, o.TenantsRoot+":") {
		return false
	}
	return path != o.PlatformWorkspace && !strings.HasPrefix(path, o.PlatformWorkspace+":")
}

func parentPath(path string) string {
	if i := strings.LastIndexByte(path, ':'); i >= 0 {
		return path[:i]
	}
	return ""
}

// Workspace is what the graph knows about one workspace.
type Workspace struct {
	Path, Cluster, Phase string
	// ShadowOf is the AnnotationShadowOf value of its Workspace object.
	ShadowOf string
}

// Account is what the graph knows about one Account. kcp serves objects of workspace-local CRDs across workspaces
// as metadata only, so that is all the graph has: the Account's place, never its spec.
type Account struct {
	Cluster, Namespace, Name string
}

type objID struct{ cluster, namespace, name string }

// keyInfo is what a ServiceEncryptionKey's metadata says about the Account it uses: the workspace
// (AnnotationAccountWorkspace; empty: its own) and the account-ref label the mutating webhook stamps (a hash of the
// Account's namespace/name, admission.AccountRefValue).
type keyInfo struct {
	accountWorkspace, accountRef string
}

// refKey names an Account by logical cluster and account-ref hash.
type refKey struct{ cluster, ref string }

// Graph is the in-memory view of the kcp tree. Watcher feeds it; it feeds Model (when set) and answers lookups.
// All methods are safe for concurrent use.
type Graph struct {
	opts  Options
	model *hierarchy.Model

	mu       sync.RWMutex
	lcs      map[string]*Workspace // logical cluster name -> workspace
	byPath   map[string]string     // path -> logical cluster
	shadowOf map[string]string     // logical cluster -> AnnotationShadowOf of its Workspace object
	phase    map[string]string     // logical cluster -> phase from its Workspace object
	tenants  map[string]hierarchy.Tenant
	tenantOf map[string]string // logical cluster -> tenant ID it currently yields
	accounts map[objID]Account
	keys     map[objID]keyInfo
	byLC     map[string]map[objID]bool // logical cluster -> its accounts and keys (re-fed when its tenant changes)
	byRef    map[refKey]objID          // account-ref hash -> Account
	keysTo   map[refKey]map[objID]bool // keys waiting on / using that Account (re-fed when it appears)

	meshMu sync.RWMutex
	mesh   meshState
}

// NewGraph returns an empty graph feeding model (which may be nil).
func NewGraph(opts Options, model *hierarchy.Model) *Graph {
	opts.defaults()
	return &Graph{opts: opts, model: model,
		lcs: map[string]*Workspace{}, byPath: map[string]string{}, shadowOf: map[string]string{}, phase: map[string]string{},
		tenants: map[string]hierarchy.Tenant{}, tenantOf: map[string]string{},
		accounts: map[objID]Account{}, keys: map[objID]keyInfo{}, byLC: map[string]map[objID]bool{},
		byRef: map[refKey]objID{}, keysTo: map[refKey]map[objID]bool{}}
}

// Options returns the graph's options with defaults applied.
func (g *Graph) Options() Options { return g.opts }

// --- feeding (called by the Watcher; exported so tests and other feeders can drive the graph) ---

// UpsertLogicalCluster records a logical cluster and its path.
func (g *Graph) UpsertLogicalCluster(name, path string) {
	if name == "" || path == "" {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	ws := g.lcs[name]
	if ws == nil {
		ws = &Workspace{Cluster: name}
		g.lcs[name] = ws
	}
	if ws.Path != path {
		if g.byPath[ws.Path] == name {
			delete(g.byPath, ws.Path)
		}
		ws.Path = path
		g.byPath[path] = name
	}
	g.refreshLocked(name)
}

// DeleteLogicalCluster forgets a logical cluster: its tenant is deleted from the model like a deleted Tenant, and
// references to it become dangling.
func (g *Graph) DeleteLogicalCluster(name string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	ws := g.lcs[name]
	if ws == nil {
		return
	}
	if g.byPath[ws.Path] == name {
		delete(g.byPath, ws.Path)
	}
	delete(g.lcs, name)
	g.refreshLocked(name)
}

// UpsertWorkspace records the Workspace object for logical cluster cluster (its spec.cluster).
func (g *Graph) UpsertWorkspace(cluster, shadowOf, phase string) {
	if cluster == "" {
		return // not scheduled yet
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.shadowOf[cluster] = shadowOf
	g.phase[cluster] = phase
	g.refreshLocked(cluster)
}

// DeleteWorkspace forgets the Workspace object of logical cluster cluster.
func (g *Graph) DeleteWorkspace(cluster string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.shadowOf, cluster)
	delete(g.phase, cluster)
	g.refreshLocked(cluster)
}

// refreshLocked recomputes the tenant logical cluster lc yields and re-feeds its accounts and keys when it changed.
func (g *Graph) refreshLocked(lc string) {
	var want hierarchy.Tenant
	if ws := g.lcs[lc]; ws != nil && g.opts.IsTenantPath(ws.Path) {
		want.ID, _ = g.opts.TenantID(ws.Path)
		parent, nested := g.opts.TenantID(parentPath(ws.Path))
		switch {
		case g.shadowOf[lc] != "":
			want.Type = hierarchy.Shadow
			if id, ok := g.opts.TenantID(g.shadowOf[lc]); ok {
				want.ShadowOf = id
			} else {
				want.ShadowOf = g.shadowOf[lc] // not a tenant workspace: the model reports the shadow as dangling
			}
		case nested:
			want.Type, want.Parent = hierarchy.Nested, parent
		default:
			want.Type = hierarchy.Root
		}
	}
	old := g.tenantOf[lc]
	if old != "" && old != want.ID {
		delete(g.tenants, old)
		if g.model != nil {
			g.model.DeleteTenant(old)
		}
	}
	if want.ID == "" {
		delete(g.tenantOf, lc)
	} else {
		g.tenantOf[lc] = want.ID
		if g.tenants[want.ID] != want {
			g.tenants[want.ID] = want
			if g.model != nil {
				g.model.UpsertTenant(want)
			}
		}
	}
	if old != want.ID {
		for id := range g.byLC[lc] {
			g.feedLocked(id)
		}
	}
}

// UpsertAccount records an Account of logical cluster a.Cluster.
func (g *Graph) UpsertAccount(a Account) {
	id := objID{a.Cluster, a.Namespace, a.Name}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.accounts[id] = a
	g.indexLocked(id, true)
	rk := refKey{a.Cluster, cmkadmission.AccountRefValue(hierarchy.AccountKey{Namespace: a.Namespace, Name: a.Name})}
	g.byRef[rk] = id
	g.feedLocked(id)
	for k := range g.keysTo[rk] {
		g.feedLocked(k)
	}
}

// DeleteAccount forgets an Account.
func (g *Graph) DeleteAccount(cluster, namespace, name string) {
	id := objID{cluster, namespace, name}
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.accounts, id)
	g.indexLocked(id, false)
	delete(g.byRef, refKey{cluster, cmkadmission.AccountRefValue(hierarchy.AccountKey{Namespace: namespace, Name: name})})
	if g.model != nil {
		g.model.DeleteAccount(modelAccount(cluster, namespace, name))
	}
}

// UpsertKey records a ServiceEncryptionKey: accountWorkspace is its AnnotationAccountWorkspace (empty: own),
// accountRef its admission.AccountRefLabel.
func (g *Graph) UpsertKey(cluster, namespace, name, accountWorkspace, accountRef string) {
	id := objID{cluster, "key\x00" + namespace, name}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.unwaitLocked(id)
	g.keys[id] = keyInfo{accountWorkspace, accountRef}
	g.indexLocked(id, true)
	g.feedLocked(id)
}

// unwaitLocked removes key id from the keysTo index of the Account it used.
func (g *Graph) unwaitLocked(id objID) {
	for rk, m := range g.keysTo {
		if m[id] {
			delete(m, id)
			if len(m) == 0 {
				delete(g.keysTo, rk)
			}
		}
	}
}

// DeleteKey forgets a ServiceEncryptionKey.
func (g *Graph) DeleteKey(cluster, namespace, name string) {
	id := objID{cluster, "key\x00" + namespace, name}
	g.mu.Lock()
	defer g.mu.Unlock()
	if old, ok := g.keys[id]; ok {
		rk := refKey{g.targetLocked(cluster, old.accountWorkspace), old.accountRef}
		if m := g.keysTo[rk]; m != nil {
			delete(m, id)
			if len(m) == 0 {
				delete(g.keysTo, rk)
			}
		}
	}
	delete(g.keys, id)
	g.indexLocked(id, false)
	if g.model != nil {
		g.model.DeleteKey(hierarchy.KeyRef{Namespace: cluster + "/" + namespace, Name: name})
	}
}

func (g *Graph) indexLocked(id objID, add bool) {
	m := g.byLC[id.cluster]
	if add {
		if m == nil {
			m = map[objID]bool{}
			g.byLC[id.cluster] = m
		}
		m[id] = true
		return
	}
	delete(m, id)
	if len(m) == 0 {
		delete(g.byLC, id.cluster)
	}
}

// feedLocked (re)writes one account or key into the model.
func (g *Graph) feedLocked(id objID) {
	if g.model == nil {
		return
	}
	if k, ok := g.keys[id]; ok {
		ns := strings.TrimPrefix(id.namespace, "key\x00")
		rk := refKey{g.targetLocked(id.cluster, k.accountWorkspace), k.accountRef}
		if g.keysTo[rk] == nil {
			g.keysTo[rk] = map[objID]bool{}
		}
		g.keysTo[rk][id] = true
		// Until the Account is seen, the key names a placeholder no Account has; it is re-fed when it appears.
		acct := modelAccount(rk.cluster, "account-ref:"+k.accountRef, "unresolved")
		if a, ok := g.byRef[rk]; ok {
			acct = modelAccount(a.cluster, a.namespace, a.name)
		}
		g.model.UpsertKey(hierarchy.KeyRef{Namespace: id.cluster + "/" + ns, Name: id.name}, acct)
		return
	}
	if _, ok := g.accounts[id]; ok {
		key := modelAccount(id.cluster, id.namespace, id.name)
		if owner := g.tenantOf[id.cluster]; owner != "" {
			g.model.UpsertAccount(key, owner)
		} else {
			g.model.DeleteAccount(key) // an Account outside any tenant is never referencable
		}
	}
}

// targetLocked is the logical cluster holding the Account a key of cluster uses.
func (g *Graph) targetLocked(cluster, accountWorkspace string) string {
	if accountWorkspace == "" {
		return cluster
	}
	return g.clusterOfLocked(accountWorkspace)
}

// clusterOfLocked maps a workspace path to its logical cluster; an unknown path maps to a name no cluster has, so
// references through it find no Account.
func (g *Graph) clusterOfLocked(path string) string {
	if lc, ok := g.byPath[path]; ok {
		return lc
	}
	return "unknown-workspace:" + path
}

// modelAccount is the hierarchy key of an Account: its logical cluster qualifies the namespace.
func modelAccount(cluster, namespace, name string) hierarchy.AccountKey {
	return hierarchy.AccountKey{Namespace: cluster + "/" + namespace, Name: name}
}

// --- mesh configuration ---

// SetMesh puts a valid configuration in force and marks it confirmed now.
func (g *Graph) SetMesh(cfg *MeshConfig) {
	g.meshMu.Lock()
	defer g.meshMu.Unlock()
	g.mesh = meshState{cfg: cfg, confirmed: time.Now()}
	setConfirmed(g.mesh.confirmed)
}

// RejectMesh records that the newest revision is malformed; the configuration in force does not change, and the
// newest revision is still "confirmed" (kcp answered).
func (g *Graph) RejectMesh(err error) {
	g.meshMu.Lock()
	defer g.meshMu.Unlock()
	g.mesh.lastErr = err.Error()
	g.mesh.confirmed = time.Now()
	setConfirmed(g.mesh.confirmed)
}

// ConfirmMesh marks the configuration in force as still current (kcp answered and nothing changed).
func (g *Graph) ConfirmMesh() {
	g.meshMu.Lock()
	defer g.meshMu.Unlock()
	g.mesh.confirmed = time.Now()
	setConfirmed(g.mesh.confirmed)
}

// Mesh returns the configuration in force (nil before the first valid one) and its age: the time since kcp last
// confirmed it.
func (g *Graph) Mesh() (*MeshConfig, time.Duration) {
	g.meshMu.RLock()
	defer g.meshMu.RUnlock()
	if g.mesh.confirmed.IsZero() {
		return g.mesh.cfg, 0
	}
	return g.mesh.cfg, time.Since(g.mesh.confirmed)
}

// MeshError is the error of the newest, rejected revision ("" when it is in force).
func (g *Graph) MeshError() string {
	g.meshMu.RLock()
	defer g.meshMu.RUnlock()
	return g.mesh.lastErr
}

// --- lookups ---

// Tenant returns the tenant with the given ID (see Options.TenantID).
func (g *Graph) Tenant(id string) (hierarchy.Tenant, bool) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	t, ok := g.tenants[id]
	return t, ok
}

// Workspace returns the workspace at path.
func (g *Graph) Workspace(path string) (Workspace, bool) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	lc, ok := g.byPath[path]
	if !ok {
		return Workspace{}, false
	}
	ws := *g.lcs[lc]
	ws.ShadowOf, ws.Phase = g.shadowOf[lc], g.phase[lc]
	return ws, true
}

// AccountAt returns the Account namespace/name in the workspace at path.
func (g *Graph) AccountAt(path, namespace, name string) (Account, string, bool) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	lc, ok := g.byPath[path]
	if !ok {
		return Account{}, "", false
	}
	a, ok := g.accounts[objID{lc, namespace, name}]
	return a, g.tenantOf[lc], ok
}

// TenantOfCluster returns the tenant a logical cluster belongs to, and whether the cluster is known at all.
func (g *Graph) TenantOfCluster(lc string) (tenant string, known bool) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	_, known = g.lcs[lc]
	return g.tenantOf[lc], known
}

// Counts reports the numbers of known workspaces, tenants and accounts.
func (g *Graph) Counts() (workspaces, tenants, accounts int) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return len(g.lcs), len(g.tenants), len(g.accounts)
}

// --- admission.Source ---

type scopeKey struct{}

type scope struct{ cluster, accountWorkspace string }

var _ cmkadmission.Source = (*Graph)(nil)

// Scope implements admission.Source: the request's logical cluster is the kcp.io/cluster annotation kcp stamps on
// the object. On CREATE kcp sets it (overwriting anything the writer sent) before calling webhooks; on UPDATE and
// DELETE it is read from the old object, i.e. from storage, so a writer cannot move an object between tenants.
func (g *Graph) Scope(ctx context.Context, req admission.Request) context.Context {
	m := cmkadmission.RequestMeta(req)
	s := scope{cluster: m.Annotations[AnnotationCluster], accountWorkspace: m.Annotations[AnnotationAccountWorkspace]}
	if len(req.OldObject.Raw) > 0 {
		old := cmkadmission.RequestMeta(admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{Object: req.OldObject}})
		s.cluster = old.Annotations[AnnotationCluster]
	}
	return context.WithValue(ctx, scopeKey{}, s)
}

// TenantOfNamespace implements admission.Source: every namespace of a workspace belongs to the workspace's tenant.
func (g *Graph) TenantOfNamespace(ctx context.Context, _ string) (string, error) {
	s, _ := ctx.Value(scopeKey{}).(scope)
	if s.cluster == "" {
		return "", fmt.Errorf("the object carries no %s annotation (is this webhook registered in kcp?)", AnnotationCluster)
	}
	t, known := g.TenantOfCluster(s.cluster)
	if !known {
		return "", fmt.Errorf("logical cluster %q is not known yet", clip(s.cluster))
	}
	if t == "" {
		return "", cmkadmission.ErrNoTenant
	}
	return t, nil
}

// AccountKey implements admission.Source.
func (g *Graph) AccountKey(ctx context.Context, k hierarchy.AccountKey) hierarchy.AccountKey {
	s, _ := ctx.Value(scopeKey{}).(scope)
	target := s.cluster
	if s.accountWorkspace != "" {
		g.mu.RLock()
		target = g.clusterOfLocked(s.accountWorkspace)
		g.mu.RUnlock()
	}
	return modelAccount(target, k.Namespace, k.Name)
}

// --- lookups for the controllers (pkg/kcp/kcpctrl) ---

// ObjectRef names an object in a workspace by logical cluster.
type ObjectRef struct{ Cluster, Namespace, Name string }

// KeysUsing lists the ServiceEncryptionKeys (of any workspace) whose account reference resolves to the Account
// namespace/name of logical cluster cluster.
func (g *Graph) KeysUsing(cluster, namespace, name string) []ObjectRef {
	rk := refKey{cluster, cmkadmission.AccountRefValue(hierarchy.AccountKey{Namespace: namespace, Name: name})}
	g.mu.RLock()
	defer g.mu.RUnlock()
	out := make([]ObjectRef, 0, len(g.keysTo[rk]))
	for id := range g.keysTo[rk] {
		out = append(out, ObjectRef{Cluster: id.cluster, Namespace: strings.TrimPrefix(id.namespace, "key\x00"), Name: id.name})
	}
	return out
}

// KeyAccountCluster resolves the Account that the ServiceEncryptionKey namespace/name of logical cluster cluster
// uses: the logical cluster holding it (its own, or the one its account-workspace annotation names; "" when that
// workspace does not exist), whether that is another workspace, and the tenants owning the key's and the Account's
// workspaces. known is false while the watch has not delivered the key.
func (g *Graph) KeyAccountCluster(cluster, namespace, name string) (accountCluster string, cross bool, keyTenant, accountTenant string, known bool) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	k, found := g.keys[objID{cluster, "key\x00" + namespace, name}]
	if !found {
		return "", false, "", "", false
	}
	if k.accountWorkspace == "" {
		return cluster, false, g.tenantOf[cluster], g.tenantOf[cluster], true
	}
	target, ok := g.byPath[k.accountWorkspace]
	if !ok {
		return "", true, g.tenantOf[cluster], "", true
	}
	return target, target != cluster, g.tenantOf[cluster], g.tenantOf[target], true
}
