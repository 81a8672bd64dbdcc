package kcp

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	apisv1alpha1 "github.com/kcp-dev/kcp/sdk/apis/apis/v1alpha1"
	kcpcorev1alpha1 "github.com/kcp-dev/kcp/sdk/apis/core/v1alpha1"
	tenancyv1alpha1 "github.com/kcp-dev/kcp/sdk/apis/tenancy/v1alpha1"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	cmkadmission "github.com/apeirora/apeiro-cmk/pkg/admission"
	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
)

// Resources watched across all workspaces.
var (
	WorkspacesGVR       = tenancyv1alpha1.SchemeGroupVersion.WithResource("workspaces")
	LogicalClustersGVR  = kcpcorev1alpha1.SchemeGroupVersion.WithResource("logicalclusters")
	AccountsGVR         = cmkv1.GroupVersion.WithResource("accounts")
	KeysGVR             = cmkv1.GroupVersion.WithResource("serviceencryptionkeys")
	configMapsGVR       = corev1.SchemeGroupVersion.WithResource("configmaps")
	apiExportsGVR       = apisv1alpha1.SchemeGroupVersion.WithResource("apiexports")
	eventsGVR           = corev1.SchemeGroupVersion.WithResource("events")
	lastConfirmedMillis atomic.Int64
)

// setConfirmed feeds the age metric (one process runs one webhook watcher; the newest confirmation wins).
func setConfirmed(t time.Time) { lastConfirmedMillis.Store(t.UnixMilli()) }

func init() {
	metrics.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "apeiro_cmk_mesh_config_age_seconds",
		Help: "Seconds since kcp last confirmed the Platform Mesh configuration in force (grows while kcp is unreachable; -1 before the first).",
	}, func() float64 {
		ms := lastConfirmedMillis.Load()
		if ms == 0 {
			return -1
		}
		return time.Since(time.UnixMilli(ms)).Seconds()
	}), meshRejected)
}

var meshRejected = prometheus.NewCounter(prometheus.CounterOpts{
	Name: "apeiro_cmk_mesh_config_rejected_total",
	Help: "Malformed Platform Mesh configuration revisions seen (the previous configuration stayed in force).",
})

// WatcherOptions tune a Watcher.
type WatcherOptions struct {
	// ConfirmInterval is how often the mesh configuration is re-read to confirm it (default 15 s).
	ConfirmInterval time.Duration
	// RequestTimeout bounds each confirmation read and event write (default 5 s).
	RequestTimeout time.Duration
	// ReportErrors writes an Event on a malformed mesh ConfigMap (the webhook does; plugin instances do not, so a
	// revision is reported once).
	ReportErrors bool
	// SkipKinds leaves out the Account and ServiceEncryptionKey watches (the SIS plugin needs Accounts only for
	// its "account" type; the webhook needs both).
	SkipKeys bool
	// OnAccount and OnKey, when set, hear about every Account / ServiceEncryptionKey event after the graph applied
	// it: the kcp controllers (pkg/kcp/kcpctrl) take their work from the same wildcard watch instead of opening a
	// watch per workspace. They run on the informer's goroutine and must not block.
	OnAccount, OnKey func(ObjectEvent)
	Log              logr.Logger
}

// ObjectEvent is one watch event about an object in some workspace.
type ObjectEvent struct {
	// Cluster is the object's logical cluster; Namespace and Name are as in that workspace.
	Cluster, Namespace, Name string
	// Deleted: the object is gone. GenerationChanged: a create, or an update of the spec (not of status or
	// metadata only).
	Deleted, GenerationChanged bool
}

// Watcher keeps a Graph current from kcp.
type Watcher struct {
	base  *rest.Config
	graph *Graph
	opts  WatcherOptions

	synced []toolscache.InformerSynced
	meshRV atomic.Value // resourceVersion of the last mesh revision handled
}

// NewWatcher returns a watcher feeding g from the kcp at base (see LoadConfig).
func NewWatcher(base *rest.Config, g *Graph, opts WatcherOptions) *Watcher {
	if opts.ConfirmInterval <= 0 {
		opts.ConfirmInterval = 15 * time.Second
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = 5 * time.Second
	}
	return &Watcher{base: base, graph: g, opts: opts}
}

// HasSynced reports whether every watch has delivered its initial list.
func (w *Watcher) HasSynced() bool {
	if len(w.synced) == 0 {
		return false
	}
	for _, s := range w.synced {
		if !s() {
			return false
		}
	}
	return true
}

// WaitForSync waits for HasSynced until ctx ends.
func (w *Watcher) WaitForSync(ctx context.Context) error {
	if !toolscache.WaitForCacheSync(ctx.Done(), w.HasSynced) {
		return fmt.Errorf("waiting for the kcp watch to sync: %w", context.Cause(ctx))
	}
	return nil
}

// Start starts the watches; they run until ctx ends. Informers resume after a disconnect from the last seen
// resourceVersion and relist when that is too old; a relist replaces the cache and reports deletions it missed,
// so the graph reconciles.
func (w *Watcher) Start(ctx context.Context) error {
	wild, err := dynamic.NewForConfig(Wildcard(w.base))
	if err != nil {
		return fmt.Errorf("kcp wildcard client: %w", err)
	}
	platform, err := dynamic.NewForConfig(ForCluster(w.base, w.graph.opts.PlatformWorkspace))
	if err != nil {
		return fmt.Errorf("kcp platform workspace client: %w", err)
	}
	w.run(ctx, wild.Resource(LogicalClustersGVR), "", handlers{
		upsert: func(u *unstructured.Unstructured) {
			w.graph.UpsertLogicalCluster(cluster(u), u.GetAnnotations()[AnnotationPath])
		},
		remove: func(u *unstructured.Unstructured) { w.graph.DeleteLogicalCluster(cluster(u)) },
	})
	// Workspaces are served to every workspace through kcp's tenancy.kcp.io APIExport; across workspaces they are
	// addressed by that export's identity hash (workspaces:<hash>).
	root, err := dynamic.NewForConfig(ForCluster(w.base, "root"))
	if err != nil {
		return fmt.Errorf("kcp root client: %w", err)
	}
	ictx, cancel := context.WithTimeout(ctx, w.opts.RequestTimeout)
	export, err := root.Resource(apiExportsGVR).Get(ictx, WorkspacesGVR.Group, metav1.GetOptions{})
	cancel()
	if err != nil {
		return fmt.Errorf("reading the identity of kcp's %s APIExport: %w", WorkspacesGVR.Group, err)
	}
	identity, _, _ := unstructured.NestedString(export.Object, "status", "identityHash")
	if identity == "" {
		return fmt.Errorf("kcp's %s APIExport has no identity hash yet", WorkspacesGVR.Group)
	}
	wsGVR := WorkspacesGVR
	wsGVR.Resource += ":" + identity
	w.run(ctx, wild.Resource(wsGVR), "", handlers{
		upsert: func(u *unstructured.Unstructured) {
			var ws tenancyv1alpha1.Workspace
			if runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &ws) != nil {
				return
			}
			w.graph.UpsertWorkspace(ws.Spec.Cluster, ws.Annotations[AnnotationShadowOf], string(ws.Status.Phase))
		},
		remove: func(u *unstructured.Unstructured) {
			c, _, _ := unstructured.NestedString(u.Object, "spec", "cluster")
			w.graph.DeleteWorkspace(c)
		},
	})
	// kcp serves workspace-local CRDs across workspaces as metadata only (PartialObjectMetadata), which is all the
	// graph needs: an Account's place, and a key's account-ref label and account-workspace annotation.
	meta, err := metadata.NewForConfig(Wildcard(w.base))
	if err != nil {
		return fmt.Errorf("kcp wildcard metadata client: %w", err)
	}
	w.runMeta(ctx, meta.Resource(AccountsGVR), metaHandlers{
		upsert: func(o *metav1.PartialObjectMetadata) {
			w.graph.UpsertAccount(Account{Cluster: o.Annotations[AnnotationCluster], Namespace: o.Namespace, Name: name(o)})
		},
		remove: func(o *metav1.PartialObjectMetadata) {
			w.graph.DeleteAccount(o.Annotations[AnnotationCluster], o.Namespace, name(o))
		},
		notify: w.opts.OnAccount,
	})
	if !w.opts.SkipKeys {
		w.runMeta(ctx, meta.Resource(KeysGVR), metaHandlers{
			upsert: func(o *metav1.PartialObjectMetadata) {
				w.graph.UpsertKey(o.Annotations[AnnotationCluster], o.Namespace, name(o), o.Annotations[AnnotationAccountWorkspace], o.Labels[cmkadmission.AccountRefLabel])
			},
			remove: func(o *metav1.PartialObjectMetadata) {
				w.graph.DeleteKey(o.Annotations[AnnotationCluster], o.Namespace, name(o))
			},
			notify: w.opts.OnKey,
		})
	}
	cms := platform.Resource(configMapsGVR).Namespace(w.graph.opts.MeshNamespace)
	w.run(ctx, cms, fields.OneTermEqualSelector("metadata.name", w.graph.opts.MeshName).String(), handlers{
		upsert: func(u *unstructured.Unstructured) { w.applyMesh(ctx, platform, u) },
		remove: func(*unstructured.Unstructured) {
			// A deleted configuration is treated like kcp being unreachable: the last one keeps applying, and its
			// age grows until a new one appears.
			w.opts.Log.Info("the Platform Mesh configuration was deleted; the last one stays in force")
		},
		optional: true,
	})
	go w.confirmLoop(ctx, platform)
	return nil
}

type metaHandlers struct {
	upsert func(*metav1.PartialObjectMetadata)
	remove func(*metav1.PartialObjectMetadata)
	notify func(ObjectEvent) // optional, after upsert/remove
}

func (h metaHandlers) tell(o *metav1.PartialObjectMetadata, deleted, genChanged bool) {
	if h.notify != nil {
		h.notify(ObjectEvent{Cluster: o.Annotations[AnnotationCluster], Namespace: o.Namespace, Name: name(o), Deleted: deleted, GenerationChanged: genChanged})
	}
}

// runMeta starts one metadata-only informer.
func (w *Watcher) runMeta(ctx context.Context, ri metadata.ResourceInterface, h metaHandlers) {
	lw := &toolscache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			l, err := ri.List(ctx, o)
			if apierrors.IsNotFound(err) {
				// No workspace defines the kind yet (a fresh mesh): that is an empty list, not a reason to stay
				// unready. The watch fails the same way and the reflector lists again after its back-off.
				return &metav1.PartialObjectMetadataList{}, nil
			}
			if err == nil {
				for i := range l.Items {
					qualify(&l.Items[i])
				}
			}
			return l, err
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			wi, err := ri.Watch(ctx, o)
			if err != nil {
				return nil, err
			}
			return watch.Filter(wi, qualifyEvent), nil
		},
	}
	inf := toolscache.NewSharedIndexInformer(lw, &metav1.PartialObjectMetadata{}, 0, toolscache.Indexers{})
	_ = inf.SetTransform(func(o any) (any, error) {
		if m, ok := o.(*metav1.PartialObjectMetadata); ok {
			m.ManagedFields = nil
		}
		return o, nil
	})
	on := func(o any, f func(*metav1.PartialObjectMetadata)) {
		if d, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
			o = d.Obj
		}
		if m, ok := o.(*metav1.PartialObjectMetadata); ok {
			f(m)
		}
	}
	reg, _ := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(o any) {
			on(o, func(m *metav1.PartialObjectMetadata) { h.upsert(m); h.tell(m, false, true) })
		},
		UpdateFunc: func(old, o any) {
			prev, _ := old.(*metav1.PartialObjectMetadata)
			on(o, func(m *metav1.PartialObjectMetadata) {
				h.upsert(m)
				h.tell(m, false, prev == nil || prev.Generation != m.Generation)
			})
		},
		DeleteFunc: func(o any) {
			on(o, func(m *metav1.PartialObjectMetadata) { h.remove(m); h.tell(m, true, false) })
		},
	})
	w.synced = append(w.synced, reg.HasSynced)
	go inf.RunWithContext(ctx)
}

type handlers struct {
	upsert func(*unstructured.Unstructured)
	remove func(*unstructured.Unstructured)
	// optional: a NotFound list (the platform workspace does not exist yet) is an empty list. kcp's own kinds are
	// never optional: NotFound there is a misconfiguration that must keep the webhook unready.
	optional bool
}

func cluster(u *unstructured.Unstructured) string { return u.GetAnnotations()[AnnotationCluster] }

// Objects of different workspaces share names (every LogicalCluster is called "cluster"), but an informer keys its
// queue and cache by namespace/name. qualify prefixes the name with the logical cluster before the informer sees
// the object; name() undoes it for the handlers.
const clusterSep = "|"

func qualify(o metav1.Object) {
	if c := o.GetAnnotations()[AnnotationCluster]; c != "" && !strings.HasPrefix(o.GetName(), c+clusterSep) {
		o.SetName(c + clusterSep + o.GetName())
	}
}

func qualifyEvent(e watch.Event) (watch.Event, bool) {
	if o, ok := e.Object.(metav1.Object); ok && e.Type != watch.Bookmark && e.Type != watch.Error {
		qualify(o)
	}
	return e, true
}

// name returns an object's name without the cluster prefix qualify added.
func name(o metav1.Object) string {
	n := o.GetName()
	if i := strings.Index(n, clusterSep); i >= 0 {
		return n[i+len(clusterSep):]
	}
	return n
}

// run starts one informer. Its handlers never block on I/O except the mesh one's rare event write.
func (w *Watcher) run(ctx context.Context, ri dynamic.ResourceInterface, fieldSelector string, h handlers) {
	lw := &toolscache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = fieldSelector
			l, err := ri.List(ctx, o)
			if apierrors.IsNotFound(err) && h.optional {
				return &unstructured.UnstructuredList{}, nil // see runMeta
			}
			if err == nil {
				for i := range l.Items {
					qualify(&l.Items[i])
				}
			}
			return l, err
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = fieldSelector
			wi, err := ri.Watch(ctx, o)
			if err != nil {
				return nil, err
			}
			return watch.Filter(wi, qualifyEvent), nil
		},
	}
	inf := toolscache.NewSharedIndexInformer(lw, &unstructured.Unstructured{}, 0, toolscache.Indexers{})
	// Keep only what the graph reads: kcp objects carry sizeable managed fields and status.
	_ = inf.SetTransform(func(o any) (any, error) {
		if u, ok := o.(*unstructured.Unstructured); ok {
			u.SetManagedFields(nil)
		}
		return o, nil
	})
	on := func(o any, f func(*unstructured.Unstructured)) {
		if d, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
			o = d.Obj
		}
		if u, ok := o.(*unstructured.Unstructured); ok {
			f(u)
		}
	}
	reg, _ := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { on(o, h.upsert) },
		UpdateFunc: func(_, o any) { on(o, h.upsert) },
		DeleteFunc: func(o any) { on(o, h.remove) },
	})
	w.synced = append(w.synced, reg.HasSynced)
	go inf.RunWithContext(ctx)
}

// applyMesh validates a ConfigMap revision and puts it in force, or reports it and keeps the previous one.
func (w *Watcher) applyMesh(ctx context.Context, platform dynamic.Interface, u *unstructured.Unstructured) {
	if rv, _ := w.meshRV.Load().(string); rv == u.GetResourceVersion() && rv != "" {
		w.graph.ConfirmMesh()
		return
	}
	w.meshRV.Store(u.GetResourceVersion())
	raw, _, _ := unstructured.NestedString(u.Object, "data", MeshConfigKey)
	cfg, err := ParseMeshConfig(raw)
	if err != nil {
		meshRejected.Inc()
		w.graph.RejectMesh(err)
		w.opts.Log.Info("rejected a malformed Platform Mesh configuration; the previous one stays in force", "error", err.Error(), "resourceVersion", u.GetResourceVersion())
		if w.opts.ReportErrors {
			w.reportInvalid(ctx, platform, u, err)
		}
		return
	}
	w.graph.SetMesh(cfg)
	w.opts.Log.Info("applied the Platform Mesh configuration", "regions", cfg.RegionNames(), "resourceVersion", u.GetResourceVersion())
}

// ReasonInvalidMeshConfig is the reason of the Warning event on a malformed mesh ConfigMap.
const ReasonInvalidMeshConfig = "InvalidMeshConfiguration"

func (w *Watcher) reportInvalid(ctx context.Context, platform dynamic.Interface, u *unstructured.Unstructured, cause error) {
	ctx, cancel := context.WithTimeout(ctx, w.opts.RequestTimeout)
	defer cancel()
	now := metav1.Now()
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{GenerateName: name(u) + ".", Namespace: u.GetNamespace()},
		InvolvedObject: corev1.ObjectReference{APIVersion: "v1", Kind: "ConfigMap", Namespace: u.GetNamespace(), Name: name(u),
			UID: u.GetUID(), ResourceVersion: u.GetResourceVersion()},
		Reason:         ReasonInvalidMeshConfig,
		Message:        clip256("configuration rejected, the previous one stays in force: " + cause.Error()),
		Type:           corev1.EventTypeWarning,
		Source:         corev1.EventSource{Component: "apeiro-cmk-webhook"},
		FirstTimestamp: now, LastTimestamp: now, Count: 1,
	}
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(ev)
	if err == nil {
		_, err = platform.Resource(eventsGVR).Namespace(u.GetNamespace()).Create(ctx, &unstructured.Unstructured{Object: obj}, metav1.CreateOptions{})
	}
	if err != nil {
		w.opts.Log.Error(err, "could not record the rejected Platform Mesh configuration as an event")
	}
}

func clip256(s string) string {
	if len(s) > 1024 {
		return s[:1024] + "…"
	}
	return s
}

// confirmLoop re-reads the mesh configuration periodically: a successful read confirms it (the age metric drops to
// zero); a failed one leaves the last known configuration in force and lets its age grow.
func (w *Watcher) confirmLoop(ctx context.Context, platform dynamic.Interface) {
	t := time.NewTicker(w.opts.ConfirmInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, w.opts.RequestTimeout)
		u, err := platform.Resource(configMapsGVR).Namespace(w.graph.opts.MeshNamespace).Get(rctx, w.graph.opts.MeshName, metav1.GetOptions{})
		cancel()
		switch {
		case err == nil:
			w.applyMesh(ctx, platform, u)
		case apierrors.IsNotFound(err):
		default:
			w.opts.Log.V(1).Info("kcp unreachable; the last known Platform Mesh configuration stays in force", "error", err.Error())
		}
	}
}
