package inuse

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
)

// fakeDeps answers the dependents lists from fixed values.
type fakeDeps struct {
	tenant, account []string
	err             error
	calls           int
}

func (d *fakeDeps) TenantDependents(context.Context, string) ([]string, error) {
	d.calls++
	return d.tenant, d.err
}

func (d *fakeDeps) AccountDependents(context.Context, string, string) ([]string, error) {
	d.calls++
	return d.account, d.err
}

// refusingWriter answers every patch with the webhook's Forbidden, like a last-finalizer check that found a
// dependent.
type refusingWriter struct{}

func (refusingWriter) Patch(context.Context, client.Object, client.Patch, ...client.PatchOption) error {
	return apierrors.NewForbidden(schema.GroupResource{Group: cmkv1.GroupVersion.Group, Resource: "tenants"}, "t", errors.New("still in use"))
}

func scheme(t *testing.T) *runtime.Scheme {
	s := runtime.NewScheme()
	if err := cmkv1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return s
}

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func tenant(terminating bool, finalizers ...string) *cmkv1.Tenant {
	t := &cmkv1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "acme", UID: types.UID("u1"), Finalizers: finalizers}}
	if terminating {
		ts := metav1.NewTime(t0.Add(-time.Hour))
		t.DeletionTimestamp = &ts
	}
	return t
}

func account(terminating bool, finalizers ...string) *metav1.PartialObjectMetadata {
	a := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "main", UID: types.UID("u2"), Finalizers: finalizers}}
	a.SetGroupVersionKind(cmkv1.GroupVersion.WithKind("Account"))
	if terminating {
		ts := metav1.NewTime(t0.Add(-time.Hour))
		a.DeletionTimestamp = &ts
	}
	return a
}

func TestReconcile(t *testing.T) {
	const other = "example.com/other"
	cases := []struct {
		name string
		kind string
		obj  client.Object
		deps *fakeDeps
		// afterGrace: reconcile once at t0 (the first sighting), then again at t0+grace.
		afterGrace   bool
		refuse       bool
		want         []string // finalizers afterwards; nil with gone
		gone         bool
		wantRequeue  bool
		wantErr      bool
		wantDepCalls int
	}{
		{name: "stamps a live tenant", kind: KindTenant, obj: tenant(false), deps: &fakeDeps{}, want: []string{Finalizer}},
		{name: "keeps other finalizers when stamping", kind: KindAccount, obj: account(false, other), deps: &fakeDeps{}, want: []string{other, Finalizer}},
		{name: "stamped once", kind: KindTenant, obj: tenant(false, Finalizer), deps: &fakeDeps{}, want: []string{Finalizer}},
		{name: "within grace nothing is listed", kind: KindTenant, obj: tenant(true, Finalizer), deps: &fakeDeps{}, want: []string{Finalizer}, wantRequeue: true},
		{name: "tenant with a child keeps the finalizer", kind: KindTenant, obj: tenant(true, Finalizer), deps: &fakeDeps{tenant: []string{"child"}}, afterGrace: true, want: []string{Finalizer}, wantRequeue: true, wantDepCalls: 1},
		{name: "account with a key keeps the finalizer", kind: KindAccount, obj: account(true, Finalizer), deps: &fakeDeps{account: []string{"ns/k"}}, afterGrace: true, want: []string{Finalizer}, wantRequeue: true, wantDepCalls: 1},
		{name: "unused tenant goes", kind: KindTenant, obj: tenant(true, Finalizer), deps: &fakeDeps{}, afterGrace: true, gone: true, wantDepCalls: 1},
		{name: "unused account keeps another owner's finalizer", kind: KindAccount, obj: account(true, Finalizer, other), deps: &fakeDeps{}, afterGrace: true, want: []string{other}, wantDepCalls: 1},
		{name: "list failure keeps the finalizer and retries", kind: KindAccount, obj: account(true, Finalizer), deps: &fakeDeps{err: errors.New("apiserver down")}, afterGrace: true, want: []string{Finalizer}, wantErr: true, wantDepCalls: 1},
		{name: "refused removal retries", kind: KindTenant, obj: tenant(true, Finalizer), deps: &fakeDeps{}, afterGrace: true, refuse: true, want: []string{Finalizer}, wantRequeue: true, wantDepCalls: 1},
		{name: "terminating without our finalizer is left alone", kind: KindTenant, obj: tenant(true, other), deps: &fakeDeps{}, want: []string{other}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := fake.NewClientBuilder().WithScheme(scheme(t)).WithObjects(tc.obj).Build()
			r := &Reconciler{Reader: c, Writer: c, Deps: tc.deps, Kind: tc.kind, Grace: 10 * time.Second}
			if tc.refuse {
				r.Writer = refusingWriter{}
			}
			now := t0
			r.Now = func() time.Time { return now }
			req := reconcile.Request{NamespacedName: client.ObjectKeyFromObject(tc.obj)}
			res, err := r.Reconcile(context.Background(), req)
			if tc.afterGrace {
				if err != nil || res.RequeueAfter != 10*time.Second {
					t.Fatalf("first sighting: got %v, %v; want a requeue after the whole grace", res, err)
				}
				now = t0.Add(10 * time.Second)
				res, err = r.Reconcile(context.Background(), req)
			}
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if (res.RequeueAfter > 0) != tc.wantRequeue {
				t.Fatalf("RequeueAfter = %v, want requeue %v", res.RequeueAfter, tc.wantRequeue)
			}
			if tc.deps.calls != tc.wantDepCalls {
				t.Fatalf("dependents listed %d times, want %d", tc.deps.calls, tc.wantDepCalls)
			}
			got := tc.obj.DeepCopyObject().(client.Object)
			err = c.Get(context.Background(), req.NamespacedName, got)
			if tc.gone {
				if !apierrors.IsNotFound(err) {
					t.Fatalf("object should be gone, got err=%v finalizers=%v", err, got.GetFinalizers())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got.GetFinalizers(), tc.want) {
				t.Fatalf("finalizers = %v, want %v", got.GetFinalizers(), tc.want)
			}
		})
	}
}

// The grace is measured from the later of the deletion timestamp and this process's first sighting: a fresh
// deletion waits the whole grace even when this process saw it late, and a restart never shortens it.
func TestGraceLeft(t *testing.T) {
	r := &Reconciler{Grace: 10 * time.Second}
	now := t0
	r.Now = func() time.Time { return now }
	obj := tenant(false)
	ts := metav1.NewTime(t0.Add(-3 * time.Second))
	obj.DeletionTimestamp = &ts
	r.defaults()
	if got := r.graceLeft(obj); got != 10*time.Second {
		t.Fatalf("first sighting: %v left, want 10s", got)
	}
	now = t0.Add(8 * time.Second)
	if got := r.graceLeft(obj); got != 2*time.Second {
		t.Fatalf("after 8s: %v left, want 2s", got)
	}
	// Deletion timestamp in the future (server clock ahead): the server's clock wins when it asks for more.
	r2 := &Reconciler{Grace: 10 * time.Second, Now: func() time.Time { return t0 }}
	r2.defaults()
	future := metav1.NewTime(t0.Add(5 * time.Second))
	obj2 := tenant(false)
	obj2.UID = "u3"
	obj2.DeletionTimestamp = &future
	if got := r2.graceLeft(obj2); got != 15*time.Second {
		t.Fatalf("skewed clock: %v left, want 15s", got)
	}
}

// A Reconciler built per request (as on kcp, bound to one workspace each time) keeps counting the grace from the
// first sighting when the requests share one Sightings: the second request, 4 s later, waits only the rest.
func TestSharedSightings(t *testing.T) {
	seen := &Sightings{}
	obj := tenant(true, Finalizer)
	now := t0
	for i, want := range []time.Duration{10 * time.Second, 6 * time.Second} {
		r := &Reconciler{Grace: 10 * time.Second, Now: func() time.Time { return now }, Seen: seen}
		r.defaults()
		if got := r.graceLeft(obj); got != want {
			t.Fatalf("request %d: %v left, want %v", i, got, want)
		}
		now = now.Add(4 * time.Second)
	}
	// Without a shared record each new Reconciler would start the grace again.
	r := &Reconciler{Grace: 10 * time.Second, Now: func() time.Time { return now }}
	r.defaults()
	if got := r.graceLeft(obj); got != 10*time.Second {
		t.Fatalf("own record: %v left, want the whole grace", got)
	}
}
