// Package kcpctrl runs apeiro-cmk's controllers (the Account status reconciler, the ServiceEncryptionKey
// controller and the in-use finalizer controller of pkg/controllers; the last in inuse.go) for every workspace of a
// kcp shard.
//
// The controllers are the same code as on plain Kubernetes; only where their work comes from and whom they talk to
// differs:
//
//   - Work comes from the webhook's one multi-cluster watch (kcp.Watcher over /clusters/*, metadata only), not from
//     a watch per workspace: 10 000 workspaces cost 10 000 idle watch connections otherwise, and the watch already
//     holds everything needed to decide what to reconcile (an Account's generation, which keys use which Account).
//   - Each reconcile gets a client scoped to the object's logical cluster (/clusters/<name>), so reads and writes
//     can never reach another workspace by accident. A key whose Account lives in another workspace (the
//     cmk.apeiro.io/account-workspace annotation) reads that one Account there, and only when the hierarchy allows
//     the key's tenant to use the Account's tenant.
//   - Events are written into the workspace of the object they are about.
//
// The clients share one HTTP transport, and the REST mapping is fixed (the product CRDs are the same in every
// workspace), so a reconcile costs no discovery requests.
package kcpctrl

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/controllers/account"
	"github.com/apeirora/apeiro-cmk/pkg/controllers/serviceencryptionkey"
	"github.com/apeirora/apeiro-cmk/pkg/hierarchy"
	"github.com/apeirora/apeiro-cmk/pkg/kcp"
	"github.com/apeirora/apeiro-cmk/pkg/keychain"
)

// Graph is what the controllers ask the kcp view (kcp.Graph implements it).
type Graph interface {
	KeysUsing(cluster, namespace, name string) []kcp.ObjectRef
	KeyAccountCluster(cluster, namespace, name string) (accountCluster string, cross bool, keyTenant, accountTenant string, known bool)
}

// Options configure the controllers.
type Options struct {
	// Config addresses the kcp front (no /clusters suffix) with an identity that may read and write Accounts,
	// ServiceEncryptionKeys, Secrets and Events in every tenant workspace.
	Config *rest.Config
	Graph  Graph
	// Model answers whether a key's tenant may use an Account's tenant (nil: only same-workspace Accounts are used).
	Model *hierarchy.Model
	Chain *keychain.Chain
	// Prober probes L1 keys (nil: Accounts stay not Ready with reason NoKeystorePlugin, as on plain Kubernetes).
	Prober keychain.Prober
	// AccountInterval / KeyInterval: re-probe and rotation-check periods (defaults of the reconcilers when zero).
	AccountInterval, KeyInterval time.Duration
	// RetryInterval after a failed probe or wrap (defaults of the reconcilers when zero).
	RetryInterval time.Duration
	// Workers reconciling in parallel (default 4).
	Workers int
	// Component is the reporting controller of the Events written (default "apeiro-cmk").
	Component string
	Log       logr.Logger
}

type kind uint8

const (
	kindAccount kind = iota + 1
	kindKey
)

// item is one object to reconcile.
type item struct {
	kind                     kind
	cluster, namespace, name string
}

// Controllers reconciles Accounts and ServiceEncryptionKeys of every workspace. Feed it with OnAccount / OnKey
// (kcp.WatcherOptions) and run it with Start (a manager.Runnable that needs leader election).
type Controllers struct {
	o      Options
	scheme *runtime.Scheme
	mapper meta.RESTMapper
	http   *http.Client
	queue  workqueue.TypedRateLimitingInterface[item]
}

// New prepares the controllers; nothing runs before Start.
func New(o Options) (*Controllers, error) {
	if o.Config == nil || o.Graph == nil || o.Chain == nil {
		return nil, errors.New("kcp controllers need a kcp configuration, the graph and the key chain")
	}
	if o.Workers <= 0 {
		o.Workers = 4
	}
	if o.Component == "" {
		o.Component = "apeiro-cmk"
	}
	scheme, m, err := workspaceScheme()
	if err != nil {
		return nil, err
	}
	hc, err := rest.HTTPClientFor(o.Config)
	if err != nil {
		return nil, fmt.Errorf("kcp controllers: %w", err)
	}
	return &Controllers{o: o, scheme: scheme, mapper: m, http: hc,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[item](),
			workqueue.TypedRateLimitingQueueConfig[item]{Name: "kcp-keys"})}, nil
}

// workspaceScheme is the scheme and REST mapping of the per-workspace clients. The product CRDs are the same in
// every workspace: a fixed mapping spares a discovery round per workspace.
func workspaceScheme() (*runtime.Scheme, meta.RESTMapper, error) {
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		return nil, nil, err
	}
	if err := cmkv1.AddToScheme(scheme); err != nil {
		return nil, nil, err
	}
	m := meta.NewDefaultRESTMapper(nil)
	// Resource names are spelled out: the mapper's guess would pluralise ServiceEncryptionKey as "...keies".
	for _, k := range []struct {
		gvk      schema.GroupVersionKind
		resource string
		scope    meta.RESTScope
	}{
		{cmkv1.GroupVersion.WithKind("Account"), "accounts", meta.RESTScopeNamespace},
		{cmkv1.GroupVersion.WithKind("ServiceEncryptionKey"), "serviceencryptionkeys", meta.RESTScopeNamespace},
		{cmkv1.GroupVersion.WithKind("Tenant"), "tenants", meta.RESTScopeRoot},
		{corev1.SchemeGroupVersion.WithKind("Secret"), "secrets", meta.RESTScopeNamespace},
		{corev1.SchemeGroupVersion.WithKind("Event"), "events", meta.RESTScopeNamespace},
	} {
		gv := k.gvk.GroupVersion()
		m.AddSpecific(k.gvk, gv.WithResource(k.resource), gv.WithResource(strings.ToLower(k.gvk.Kind)), k.scope)
	}
	return scheme, m, nil
}

// OnAccount takes an Account event of the watch: a new or changed spec is probed; every change (a status write
// too: the Account became Ready) re-queues the keys that use it.
func (c *Controllers) OnAccount(ev kcp.ObjectEvent) {
	if ev.Cluster == "" {
		return
	}
	if !ev.Deleted && ev.GenerationChanged {
		c.queue.Add(item{kindAccount, ev.Cluster, ev.Namespace, ev.Name})
	}
	for _, k := range c.o.Graph.KeysUsing(ev.Cluster, ev.Namespace, ev.Name) {
		c.queue.Add(item{kindKey, k.Cluster, k.Namespace, k.Name})
	}
}

// OnKey takes a ServiceEncryptionKey event of the watch. Deletions need no work: a key with material carries a
// finalizer, so its deletion arrives as an update first.
func (c *Controllers) OnKey(ev kcp.ObjectEvent) {
	if ev.Cluster != "" && !ev.Deleted {
		c.queue.Add(item{kindKey, ev.Cluster, ev.Namespace, ev.Name})
	}
}

// NeedLeaderElection: like on plain Kubernetes, one replica reconciles.
func (c *Controllers) NeedLeaderElection() bool { return true }

// Start runs the workers until ctx ends.
func (c *Controllers) Start(ctx context.Context) error {
	runWorkers(ctx, c.queue, c.o.Workers, c.next)
	return nil
}

// runWorkers runs n workers, each calling next until it reports the queue shut down, and shuts the queue down when
// ctx ends; it returns once every worker has stopped.
func runWorkers(ctx context.Context, queue interface{ ShutDown() }, n int, next func(context.Context) bool) {
	go func() {
		<-ctx.Done()
		queue.ShutDown()
	}()
	done := make(chan struct{})
	for range n {
		go func() {
			defer func() { done <- struct{}{} }()
			for next(ctx) {
			}
		}()
	}
	for range n {
		<-done
	}
}

// Len is the number of objects waiting (for tests and metrics).
func (c *Controllers) Len() int { return c.queue.Len() }

func (c *Controllers) next(ctx context.Context) bool {
	it, shutdown := c.queue.Get()
	if shutdown {
		return false
	}
	defer c.queue.Done(it)
	res, err := c.reconcile(ctx, it)
	log := c.o.Log.WithValues("cluster", it.cluster, "namespace", it.namespace, "name", it.name)
	log.V(1).Info("reconciled", "kind", it.kind.String(), "requeueAfter", res.RequeueAfter, "error", err)
	if err != nil {
		log.Error(err, "reconcile failed; retrying", "kind", it.kind.String())
	}
	settle(c.queue, it, res, err)
	return true
}

// settle files a reconcile's outcome with the queue: a failure is retried with backoff, a requested requeue comes
// back after its delay, anything else is forgotten (its backoff reset).
func settle[T comparable](queue workqueue.TypedRateLimitingInterface[T], it T, res reconcile.Result, err error) {
	switch {
	case err != nil:
		queue.AddRateLimited(it)
	case res.RequeueAfter > 0:
		queue.Forget(it)
		queue.AddAfter(it, res.RequeueAfter)
	default:
		queue.Forget(it)
	}
}

func (k kind) String() string {
	if k == kindAccount {
		return "Account"
	}
	return "ServiceEncryptionKey"
}

func (c *Controllers) reconcile(ctx context.Context, it item) (reconcile.Result, error) {
	cl, err := c.clientFor(it.cluster)
	if err != nil {
		return reconcile.Result{}, err
	}
	rec := &recorder{c: cl, scheme: c.scheme, component: c.o.Component, log: c.o.Log}
	req := reconcile.Request{NamespacedName: types.NamespacedName{Namespace: it.namespace, Name: it.name}}
	if it.kind == kindAccount {
		r := &account.Reconciler{Client: cl, Chain: c.o.Chain, Recorder: rec, Interval: c.o.AccountInterval, RetryInterval: c.o.RetryInterval}
		if c.o.Prober != nil {
			r.Prober = c.o.Prober
		}
		return r.Reconcile(ctx, req)
	}
	target, cross, keyTenant, acctTenant, known := c.o.Graph.KeyAccountCluster(it.cluster, it.namespace, it.name)
	if !known {
		// The event came from the watch, so the graph has the key unless it was deleted meanwhile; look again soon.
		return reconcile.Result{RequeueAfter: time.Second}, nil
	}
	kc := client.Client(cl)
	if cross {
		// Never fall back to the key's own workspace: an Account of the same name there is a different Account.
		r := &routed{Client: cl, allowed: c.mayUse(keyTenant, acctTenant)}
		if target == "" {
			r.allowed = nil // the named workspace does not exist: the Account is simply not found
		} else if r.accounts, err = c.clientFor(target); err != nil {
			return reconcile.Result{}, err
		}
		kc = r
	}
	r := &serviceencryptionkey.Reconciler{Client: kc, Reader: cl, Chain: c.o.Chain, Recorder: rec,
		Interval: c.o.KeyInterval, RetryInterval: c.o.RetryInterval}
	return r.Reconcile(ctx, req)
}

// mayUse reports, as an error, whether a key of tenant keyTenant may use an Account of tenant acctTenant now. The
// webhook checked it when the key was written; the hierarchy may have changed since (a shadow removed), and the
// controller must not wrap under another tenant's key on the strength of an old verdict.
func (c *Controllers) mayUse(keyTenant, acctTenant string) error {
	if keyTenant == "" || acctTenant == "" {
		return fmt.Errorf("the key's or the Account's workspace belongs to no tenant")
	}
	if c.o.Model == nil {
		return fmt.Errorf("Accounts of other workspaces are not used without the hierarchy model")
	}
	return c.o.Model.MayReference(keyTenant, acctTenant)
}

// clientFor returns a client confined to one logical cluster.
func (c *Controllers) clientFor(cluster string) (client.Client, error) {
	cl, err := client.New(kcp.ForCluster(c.o.Config, cluster), client.Options{Scheme: c.scheme, Mapper: c.mapper, HTTPClient: c.http})
	if err != nil {
		return nil, fmt.Errorf("client for logical cluster %s: %w", cluster, err)
	}
	return cl, nil
}

// routed is a key's client whose Account reads go to the Account's workspace (and nothing else does).
type routed struct {
	client.Client
	accounts client.Client // nil: the Account's workspace does not exist
	allowed  error         // nil: the key's tenant may use the Account's tenant
}

func (r *routed) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if _, ok := obj.(*cmkv1.Account); ok {
		if r.allowed != nil {
			return fmt.Errorf("the Account %s of another workspace is not usable by this key: %w", key, r.allowed)
		}
		if r.accounts == nil {
			return apierrors.NewNotFound(kcp.AccountsGVR.GroupResource(), key.Name)
		}
		return r.accounts.Get(ctx, key, obj, opts...)
	}
	return r.Client.Get(ctx, key, obj, opts...)
}

var _ events.EventRecorder = (*recorder)(nil)
