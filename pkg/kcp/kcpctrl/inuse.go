package kcpctrl

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	cmkadmission "github.com/apeirora/apeiro-cmk/pkg/admission"
	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/controllers/inuse"
	"github.com/apeirora/apeiro-cmk/pkg/hierarchy"
	"github.com/apeirora/apeiro-cmk/pkg/kcp"
)

// The in-use controller on kcp: pkg/controllers/inuse's Reconciler (grace, dependents check, the finalizer patch),
// unchanged, driven for every workspace. Per request it gets a client confined to the object's logical cluster and
// a Dependents bound to that cluster; first sightings of terminating objects are shared across requests
// (inuse.Sightings), so the grace counts as on plain Kubernetes.
//
//   - Accounts come from the webhook's shared wildcard watch (OnAccount); each event costs one GET of the Account
//     in its workspace, because the watch's events carry no finalizers.
//   - Tenant objects are not part of that watch (on kcp the hierarchy comes from workspaces), so the controller
//     watches their metadata across all workspaces itself and queues only those with work to do.
//
// What depends on something is read live when the grace is over, like on plain Kubernetes:
//
//   - a Tenant named id (the tenant of workspace TenantPath(id)): the tenant workspaces directly below that
//     workspace and its Accounts (two lists in that workspace), plus children and shadows the watch knows (a
//     shadow is an annotation on a Workspace object anywhere on the shard, which no live query can select);
//   - an Account: the ServiceEncryptionKeys of every workspace whose account reference resolves to it (one label
//     query across all workspaces, paged, then each key's account-workspace annotation resolved to its logical
//     cluster).

// Paths is what the in-use controller asks the kcp view (kcp.Graph implements it).
type Paths interface {
	Options() kcp.Options
	Workspace(path string) (kcp.Workspace, bool)
}

// InUseOptions configure the in-use controller.
type InUseOptions struct {
	// Config addresses the kcp front (no /clusters suffix) with an identity that may get and patch Tenants and
	// Accounts (and their finalizers) in every tenant workspace and list Workspaces and Accounts there.
	Config *rest.Config
	// WatchConfig, when set, is the identity of the requests across all workspaces (/clusters/*: the Tenant
	// list/watch and the key query), which kcp allows only to its privileged group; Config then needs no more than
	// deploy/kcp grants. Nil: Config does both.
	WatchConfig *rest.Config
	Paths       Paths
	// Model answers children and shadows known to the watch (nil: only the live lists count).
	Model *hierarchy.Model
	// Grace and Recheck as in pkg/controllers/inuse (its defaults when zero).
	Grace, Recheck time.Duration
	// Workers reconciling in parallel (default 4).
	Workers int
	// Serve, when set, limits the controller to the logical clusters it accepts (nil: every workspace). Objects
	// elsewhere are neither stamped nor judged.
	Serve func(cluster string) bool
	Log   logr.Logger
}

type inUseItem struct {
	kind                     string // inuse.KindTenant or inuse.KindAccount
	cluster, namespace, name string
}

// InUse keeps the in-use finalizer on Tenants and Accounts of every workspace. Feed it Account events with
// OnAccount (kcp.WatcherOptions) and run it with Start (a manager.Runnable that needs leader election).
type InUse struct {
	o      InUseOptions
	scheme *runtime.Scheme
	mapper meta.RESTMapper
	http   *http.Client
	meta   metadata.Interface
	seen   *inuse.Sightings
	queue  workqueue.TypedRateLimitingInterface[inUseItem]
	synced toolscache.InformerSynced
}

// NewInUse prepares the in-use controller; nothing runs before Start.
func NewInUse(o InUseOptions) (*InUse, error) {
	if o.Config == nil || o.Paths == nil {
		return nil, errors.New("the kcp in-use controller needs a kcp configuration and the workspace view")
	}
	if o.Grace < 0 || o.Recheck < 0 {
		return nil, fmt.Errorf("the in-use grace and recheck must not be negative (got %s, %s)", o.Grace, o.Recheck)
	}
	if o.Workers <= 0 {
		o.Workers = 4
	}
	scheme, mapper, err := workspaceScheme()
	if err != nil {
		return nil, err
	}
	hc, err := rest.HTTPClientFor(o.Config)
	if err != nil {
		return nil, fmt.Errorf("kcp in-use controller: %w", err)
	}
	wc, whc := o.Config, hc
	if o.WatchConfig != nil {
		wc = o.WatchConfig
		if whc, err = rest.HTTPClientFor(wc); err != nil {
			return nil, fmt.Errorf("kcp in-use controller: %w", err)
		}
	}
	mc, err := metadata.NewForConfigAndClient(kcp.Wildcard(wc), whc)
	if err != nil {
		return nil, fmt.Errorf("kcp in-use controller: %w", err)
	}
	return &InUse{o: o, scheme: scheme, mapper: mapper, http: hc, meta: mc, seen: &inuse.Sightings{},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[inUseItem](),
			workqueue.TypedRateLimitingQueueConfig[inUseItem]{Name: "kcp-inuse"})}, nil
}

// OnAccount takes an Account event of the shared watch. A deletion needs no work: the Account is gone.
func (c *InUse) OnAccount(ev kcp.ObjectEvent) {
	if ev.Cluster != "" && !ev.Deleted && c.serves(ev.Cluster) {
		c.queue.Add(inUseItem{inuse.KindAccount, ev.Cluster, ev.Namespace, ev.Name})
	}
}

func (c *InUse) serves(cluster string) bool { return c.o.Serve == nil || c.o.Serve(cluster) }

// NeedLeaderElection: like on plain Kubernetes, one replica removes finalizers.
func (c *InUse) NeedLeaderElection() bool { return true }

// HasSynced reports whether the Tenant watch has delivered its first list.
func (c *InUse) HasSynced() bool { return c.synced != nil && c.synced() }

// Len is the number of objects waiting (tests).
func (c *InUse) Len() int { return c.queue.Len() }

// Start watches Tenants across all workspaces and runs the workers until ctx ends.
func (c *InUse) Start(ctx context.Context) error {
	c.watchTenants(ctx)
	runWorkers(ctx, c.queue, c.o.Workers, c.next)
	return nil
}

// needsWork: a live object without the finalizer (stamp it) or a terminating one with it (judge it).
func needsWork(o metav1.Object) bool {
	return (o.GetDeletionTimestamp() == nil) != slices.Contains(o.GetFinalizers(), inuse.Finalizer)
}

// tenantSep separates the logical cluster from the name in the informer's keys: Tenants are cluster-scoped and
// named by tenant ID, so two workspaces may hold one of the same name. No object name can contain "|".
const tenantSep = "|"

func (c *InUse) watchTenants(ctx context.Context) {
	ri := c.meta.Resource(cmkv1.GroupVersion.WithResource("tenants"))
	qualify := func(o *metav1.PartialObjectMetadata) {
		if lc := kcp.ClusterOf(o); lc != "" && !strings.HasPrefix(o.Name, lc+tenantSep) {
			o.Name = lc + tenantSep + o.Name
		}
	}
	lw := &toolscache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			l, err := ri.List(ctx, o)
			if apierrors.IsNotFound(err) {
				return &metav1.PartialObjectMetadataList{}, nil // no workspace defines Tenants yet
			}
			if err != nil {
				return nil, err
			}
			for i := range l.Items {
				qualify(&l.Items[i])
			}
			return l, nil
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			wi, err := ri.Watch(ctx, o)
			if err != nil {
				return nil, err
			}
			return watch.Filter(wi, func(e watch.Event) (watch.Event, bool) {
				if m, ok := e.Object.(*metav1.PartialObjectMetadata); ok && e.Type != watch.Error {
					qualify(m)
				}
				return e, true
			}), nil
		},
	}
	inf := toolscache.NewSharedIndexInformer(lw, &metav1.PartialObjectMetadata{}, 0, toolscache.Indexers{})
	_ = inf.SetTransform(func(o any) (any, error) {
		if m, ok := o.(*metav1.PartialObjectMetadata); ok {
			m.ManagedFields, m.Annotations = nil, map[string]string{kcp.AnnotationCluster: kcp.ClusterOf(m)}
		}
		return o, nil
	})
	on := func(o any) {
		m, ok := o.(*metav1.PartialObjectMetadata)
		if !ok || !needsWork(m) {
			return
		}
		lc, name, ok := strings.Cut(m.Name, tenantSep)
		if ok && lc != "" && c.serves(lc) {
			c.queue.Add(inUseItem{inuse.KindTenant, lc, "", name})
		}
	}
	reg, _ := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    on,
		UpdateFunc: func(_, o any) { on(o) },
	})
	c.synced = reg.HasSynced
	go inf.RunWithContext(ctx)
}

func (c *InUse) next(ctx context.Context) bool {
	it, shutdown := c.queue.Get()
	if shutdown {
		return false
	}
	defer c.queue.Done(it)
	res, err := c.reconcile(ctx, it)
	log := c.o.Log.WithValues("kind", it.kind, "cluster", it.cluster, "namespace", it.namespace, "name", it.name)
	if err != nil {
		log.Error(err, "in-use reconcile failed; retrying")
	}
	settle(c.queue, it, res, err)
	return true
}

func (c *InUse) reconcile(ctx context.Context, it inUseItem) (reconcile.Result, error) {
	cl, err := client.New(kcp.ForCluster(c.o.Config, it.cluster), client.Options{Scheme: c.scheme, Mapper: c.mapper, HTTPClient: c.http})
	if err != nil {
		return reconcile.Result{}, fmt.Errorf("client for logical cluster %s: %w", it.cluster, err)
	}
	r := &inuse.Reconciler{Reader: cl, Writer: cl, Deps: &workspaceDeps{c: c, cluster: it.cluster},
		Grace: c.o.Grace, Recheck: c.o.Recheck, Kind: it.kind, Seen: c.seen}
	return r.Reconcile(ctx, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: it.namespace, Name: it.name}})
}

// dependentsShown bounds each list: a few names keep the finalizer and say why.
const dependentsShown = 5

// keyPage is the page size of the cross-workspace key query: keys of every tenant's Account with the same
// namespace/name share the label value, so the answer is filtered after it arrives.
const keyPage = 500

// workspaceDeps answers inuse.Dependents for objects of one logical cluster.
type workspaceDeps struct {
	c       *InUse
	cluster string
}

var _ inuse.Dependents = (*workspaceDeps)(nil)

// TenantDependents lists what keeps the Tenant named id: child tenant workspaces and Accounts of its workspace
// (live), and children and shadows the watch knows.
func (d *workspaceDeps) TenantDependents(ctx context.Context, id string) ([]string, error) {
	var out []string
	if m := d.c.o.Model; m != nil {
		if err := m.ValidateTenantDelete(id); err != nil {
			out = append(out, err.Error())
		}
	}
	opts := d.c.o.Paths.Options()
	path := opts.TenantPath(id)
	if id == "" || strings.ContainsAny(id, ":/*|") || !opts.IsTenantPath(path) {
		return out, nil // no workspace is this tenant: nothing can live in it
	}
	mc, err := metadata.NewForConfigAndClient(kcp.ForCluster(d.c.o.Config, path), d.c.http)
	if err != nil {
		return nil, err
	}
	children, err := mc.Resource(kcp.WorkspacesGVR).List(ctx, metav1.ListOptions{Limit: dependentsShown})
	switch {
	case err == nil:
		for _, w := range children.Items {
			if cid, ok := opts.TenantID(path + ":" + w.Name); ok {
				out = append(out, "tenant "+cid)
			}
		}
	case d.workspaceGone(path, err):
		return out, nil
	default:
		return nil, fmt.Errorf("listing the child workspaces of %s: %w", path, err)
	}
	accounts, err := mc.Resource(kcp.AccountsGVR).List(ctx, metav1.ListOptions{Limit: dependentsShown})
	switch {
	case err == nil:
		for _, a := range accounts.Items {
			out = append(out, "account "+a.Namespace+"/"+a.Name)
		}
	case apierrors.IsNotFound(err) || meta.IsNoMatchError(err):
		// No Account kind in that workspace: nothing of it can depend on the tenant.
	default:
		return nil, fmt.Errorf("listing the Accounts of %s: %w", path, err)
	}
	return out, nil
}

// workspaceGone reports a list that failed because the workspace at path does not exist. kcp answers requests
// into a missing workspace with NotFound or, for a path it cannot resolve, Forbidden; Forbidden counts only when
// the watch does not know the workspace either, so a real permission problem keeps the finalizer.
func (d *workspaceDeps) workspaceGone(path string, err error) bool {
	if apierrors.IsNotFound(err) {
		return true
	}
	if apierrors.IsForbidden(err) {
		_, known := d.c.o.Paths.Workspace(path)
		return !known
	}
	return false
}

// AccountDependents lists the ServiceEncryptionKeys, in any workspace, that use Account namespace/name of this
// logical cluster.
func (d *workspaceDeps) AccountDependents(ctx context.Context, namespace, name string) ([]string, error) {
	ref := cmkadmission.AccountRefValue(hierarchy.AccountKey{Namespace: namespace, Name: name})
	sel := labels.SelectorFromSet(labels.Set{cmkadmission.AccountRefLabel: ref}).String()
	ri := d.c.meta.Resource(kcp.KeysGVR)
	var out []string
	opts := metav1.ListOptions{LabelSelector: sel, Limit: keyPage}
	for {
		l, err := ri.List(ctx, opts)
		if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
			return out, nil // no workspace defines keys: none can use the Account
		}
		if err != nil {
			return nil, fmt.Errorf("listing the keys labelled %s=%s across workspaces: %w", cmkadmission.AccountRefLabel, ref, err)
		}
		for i := range l.Items {
			k := &l.Items[i]
			if d.uses(k) {
				out = append(out, "key "+kcp.ClusterOf(k)+"|"+k.Namespace+"/"+k.Name)
				if len(out) >= dependentsShown {
					return out, nil
				}
			}
		}
		if l.Continue == "" {
			return out, nil
		}
		opts.Continue = l.Continue
	}
}

// uses reports whether key k (its account-ref label already matched) names an Account of this logical cluster. A
// key whose account-workspace the watch cannot resolve yet counts: keeping the finalizer a little longer is safe,
// dropping it under a key is not.
func (d *workspaceDeps) uses(k *metav1.PartialObjectMetadata) bool {
	ws := k.Annotations[kcp.AnnotationAccountWorkspace]
	if ws == "" {
		return kcp.ClusterOf(k) == d.cluster
	}
	w, known := d.c.o.Paths.Workspace(ws)
	return !known || w.Cluster == d.cluster
}
