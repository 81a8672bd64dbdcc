// Package inuse keeps Tenants and Accounts from disappearing while something still depends on them, even when a
// delete of the parent and a create of a dependent are admitted at the same moment (on two webhook replicas each
// live check sees the other's write as not there yet).
//
// Every Tenant and Account carries the finalizer cmk.apeiro.io/in-use (stamped by the mutating webhook at create,
// or by this controller for objects that predate it). A DELETE therefore only marks the object terminating; from
// then on every create that would reference it is refused (A-TERMINATING / A-ACCOUNT-UNUSABLE read the parent
// live). This controller removes the finalizer only once
//
//  1. Grace has passed since deletion started, both by the deletion timestamp and by this process's own clock, so
//     that every create admitted before the delete was committed (its webhook calls are bounded by their
//     timeouts) has been stored, and
//  2. a live list finds no dependents: children, shadows, assigned namespaces and Accounts for a Tenant;
//     ServiceEncryptionKeys for an Account.
//
// The webhook judges the update that removes the last finalizer like the delete itself (A-TENANT-IN-USE,
// H-ACCOUNT-IN-USE), so a dependent that appears between the list and the update still keeps the object.
//
// On kcp the same Reconciler runs for every workspace (pkg/kcp/kcpctrl): built per request with a client confined
// to the object's logical cluster and a Dependents bound to it, sharing one Sightings so the grace still counts
// from the first sighting.
package inuse

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
)

// Finalizer is the in-use finalizer on every Tenant and Account.
const Finalizer = "cmk.apeiro.io/in-use"

// Kinds a Reconciler serves.
const (
	KindTenant  = "Tenant"
	KindAccount = "Account"
)

// Defaults. DefaultGrace is twice the validating webhooks' 5 s timeout: a create admitted just before the delete
// was committed is stored well within it.
const (
	DefaultGrace   = 10 * time.Second
	DefaultRecheck = 2 * time.Second
	maxTracked     = 1 << 16
	workers        = 8
)

// Dependents answers, live (never from an informer that may lag), what still depends on an object. Each list is
// bounded; a few names are enough to keep the finalizer and to say why.
type Dependents interface {
	// TenantDependents lists children, shadows, assigned namespaces and owned Accounts of tenant id.
	TenantDependents(ctx context.Context, id string) ([]string, error)
	// AccountDependents lists ServiceEncryptionKeys (namespace/name) that use Account namespace/name.
	AccountDependents(ctx context.Context, namespace, name string) ([]string, error)
}

// Writer is the one write the controller makes: a patch of an object's metadata (its finalizers).
type Writer interface {
	Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.PatchOption) error
}

// Reconciler owns the in-use finalizer of one kind.
type Reconciler struct {
	// Reader reads the reconciled objects (the manager's cache).
	Reader client.Reader
	Writer Writer
	Deps   Dependents
	// Grace before the finalizer may go once deletion started (default DefaultGrace); Recheck is how often a
	// terminating object with dependents is looked at again (default DefaultRecheck).
	Grace, Recheck time.Duration
	// Now is the clock (tests); default time.Now.
	Now func() time.Time

	// Kind is KindTenant or KindAccount.
	Kind string
	// Seen remembers first sightings of terminating objects across reconciles. Nil: the Reconciler keeps its own.
	// Set it when a Reconciler is built per request (pkg/kcp/kcpctrl binds Reader, Writer and Deps to one
	// workspace per request) so the grace still counts from the first sighting.
	Seen *Sightings

	once sync.Once
}

// Sightings records when this process first saw each object terminating. It is safe for concurrent use; the zero
// value is ready.
type Sightings struct {
	mu        sync.Mutex
	firstSeen map[types.UID]time.Time
}

// first returns when uid was first seen terminating, recording now when it was not seen before.
func (s *Sightings) first(uid types.UID, now time.Time) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.firstSeen == nil || len(s.firstSeen) > maxTracked {
		// Entries of objects that vanished without passing through here are dropped wholesale; losing a sighting
		// only makes an object wait its grace again.
		s.firstSeen = map[types.UID]time.Time{}
	}
	seen, ok := s.firstSeen[uid]
	if !ok {
		seen = now
		s.firstSeen[uid] = now
	}
	return seen
}

func (s *Sightings) forget(uid types.UID) {
	s.mu.Lock()
	delete(s.firstSeen, uid)
	s.mu.Unlock()
}

// SetupWithManager registers one controller for Tenants (typed, sharing the process's Tenant informer) and one for
// Accounts (metadata only, sharing the metadata-only Account informer).
func SetupWithManager(mgr manager.Manager, deps Dependents, grace, recheck time.Duration) error {
	for _, r := range []*Reconciler{
		// The cache, not the client: the process's client reads Accounts live (admission.ClientOptions), which would
		// cost one GET per Account at start.
		{Reader: mgr.GetCache(), Writer: mgr.GetClient(), Deps: deps, Grace: grace, Recheck: recheck, Kind: KindTenant},
		{Reader: mgr.GetCache(), Writer: mgr.GetClient(), Deps: deps, Grace: grace, Recheck: recheck, Kind: KindAccount},
	} {
		// Several workers: a reconcile is a few API calls, and deleting a namespace or a load test's objects makes
		// thousands of objects terminating at once, each due after the same grace.
		b := builder.ControllerManagedBy(mgr).Named("inuse-" + strings.ToLower(r.Kind)).
			WithOptions(controller.Options{MaxConcurrentReconciles: workers})
		if r.Kind == KindTenant {
			b = b.For(&cmkv1.Tenant{})
		} else {
			b = b.For(&cmkv1.Account{}, builder.OnlyMetadata)
		}
		if err := b.Complete(r); err != nil {
			return fmt.Errorf("setting up the in-use controller for %ss: %w", r.Kind, err)
		}
	}
	return nil
}

func (r *Reconciler) defaults() {
	if r.Grace <= 0 {
		r.Grace = DefaultGrace
	}
	if r.Recheck <= 0 {
		r.Recheck = DefaultRecheck
	}
	if r.Now == nil {
		r.Now = time.Now
	}
	if r.Seen == nil {
		r.Seen = &Sightings{}
	}
}

func (r *Reconciler) newObject() client.Object {
	if r.Kind == KindTenant {
		return &cmkv1.Tenant{}
	}
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(cmkv1.GroupVersion.WithKind("Account"))
	return m
}

// Reconcile stamps the finalizer on a live object and removes it from a terminating one once nothing depends on it.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	r.once.Do(r.defaults)
	obj := r.newObject()
	if err := r.Reader.Get(ctx, req.NamespacedName, obj); err != nil {
		if apierrors.IsNotFound(err) {
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, fmt.Errorf("reading %s %s: %w", r.Kind, req.NamespacedName, err)
	}
	has := slices.Contains(obj.GetFinalizers(), Finalizer)
	if obj.GetDeletionTimestamp() == nil {
		if has {
			return reconcile.Result{}, nil
		}
		if err := r.setFinalizers(ctx, obj, append(slices.Clone(obj.GetFinalizers()), Finalizer)); err != nil {
			return reconcile.Result{}, fmt.Errorf("adding the in-use finalizer to %s %s: %w", r.Kind, req.NamespacedName, err)
		}
		return reconcile.Result{}, nil
	}
	if !has {
		r.forget(obj.GetUID())
		return reconcile.Result{}, nil
	}
	if wait := r.graceLeft(obj); wait > 0 {
		return reconcile.Result{RequeueAfter: wait}, nil
	}
	var deps []string
	var err error
	if r.Kind == KindTenant {
		deps, err = r.Deps.TenantDependents(ctx, obj.GetName())
	} else {
		deps, err = r.Deps.AccountDependents(ctx, obj.GetNamespace(), obj.GetName())
	}
	if err != nil {
		return reconcile.Result{}, fmt.Errorf("listing what depends on %s %s: %w", r.Kind, req.NamespacedName, err)
	}
	if len(deps) > 0 {
		log.FromContext(ctx).V(1).Info("terminating object still in use; keeping the in-use finalizer", "kind", r.Kind, "dependents", len(deps))
		return reconcile.Result{RequeueAfter: r.Recheck}, nil
	}
	err = r.setFinalizers(ctx, obj, slices.DeleteFunc(slices.Clone(obj.GetFinalizers()), func(f string) bool { return f == Finalizer }))
	switch {
	case err == nil:
		r.forget(obj.GetUID())
		return reconcile.Result{}, nil
	case apierrors.IsForbidden(err):
		// The webhook's last-finalizer check saw a dependent the list did not (it appeared in between): keep waiting.
		log.FromContext(ctx).V(1).Info("removal of the in-use finalizer refused; retrying", "kind", r.Kind, "reason", err.Error())
		return reconcile.Result{RequeueAfter: r.Recheck}, nil
	case apierrors.IsNotFound(err):
		return reconcile.Result{}, nil
	default:
		return reconcile.Result{}, fmt.Errorf("removing the in-use finalizer from %s %s: %w", r.Kind, req.NamespacedName, err)
	}
}

// graceLeft is how long the finalizer must still stay. The deletion timestamp has second precision and comes from
// the API server's clock; the local first sighting guards against clock skew (a restart only makes it wait longer).
func (r *Reconciler) graceLeft(obj client.Object) time.Duration {
	now := r.Now()
	seen := r.Seen.first(obj.GetUID(), now)
	left := r.Grace - now.Sub(seen)
	if byServer := r.Grace - now.Sub(obj.GetDeletionTimestamp().Time); byServer > left {
		left = byServer
	}
	return left
}

func (r *Reconciler) forget(uid types.UID) { r.Seen.forget(uid) }

// setFinalizers writes the finalizer list with a merge patch guarded by the object's resource version, so a
// concurrent change of another owner's finalizer is never overwritten (the patch then fails with a conflict and the
// request is retried).
func (r *Reconciler) setFinalizers(ctx context.Context, obj client.Object, finalizers []string) error {
	base := obj.DeepCopyObject().(client.Object)
	obj.SetFinalizers(finalizers)
	return r.Writer.Patch(ctx, obj, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{}))
}
