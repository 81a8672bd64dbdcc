package admission

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/hierarchy"
	"github.com/apeirora/apeiro-cmk/pkg/keychain"
)

// Liveness of a referenced object, read from the API server rather than the informer-fed model: the model keeps a
// terminating object (one held by a finalizer) until it is gone, and a reference admitted to a terminating object
// would outlive it. These reads happen only when a new reference is made (a create), never on the hot update path.

// objectState is what a live read says about a referenced object.
type objectState int

const (
	stateMissing objectState = iota
	stateLive
	stateTerminating
)

// LiveTenantState reads tenant id from the API server. Without a live reader (unit tests) the model answers and a
// known tenant counts as live.
func (d *Directory) LiveTenantState(ctx context.Context, id string) (objectState, error) {
	if d.Live == nil {
		if _, ok := d.Model.Tenant(id); ok {
			return stateLive, nil
		}
		return stateMissing, nil
	}
	t := liveMetadata("Tenant") // metadata only: livereads.go
	if err := d.Live.Get(ctx, client.ObjectKey{Name: id}, t); err != nil {
		if apierrors.IsNotFound(err) {
			return stateMissing, nil
		}
		return stateMissing, fmt.Errorf("reading tenant %q: %w", id, err)
	}
	if t.DeletionTimestamp != nil {
		return stateTerminating, nil
	}
	return stateLive, nil
}

// LiveAccountState reads Account k from the API server and returns its state and owner label. Without a live reader
// the model answers.
func (d *Directory) LiveAccountState(ctx context.Context, k hierarchy.AccountKey) (objectState, string, error) {
	if d.Live == nil {
		if owner, ok := d.Model.AccountOwner(k); ok {
			return stateLive, owner, nil
		}
		return stateMissing, "", nil
	}
	a := liveMetadata("Account")
	if err := d.Live.Get(ctx, client.ObjectKey{Namespace: k.Namespace, Name: k.Name}, a); err != nil {
		if apierrors.IsNotFound(err) {
			return stateMissing, "", nil
		}
		return stateMissing, "", fmt.Errorf("reading account %s: %w", k, err)
	}
	if a.DeletionTimestamp != nil {
		return stateTerminating, a.Labels[cmkv1.TenantLabel], nil
	}
	return stateLive, a.Labels[cmkv1.TenantLabel], nil
}

// lastFinalizerRemoved reports the UPDATE that lets the API server finally remove a terminating object: the old
// object is terminating and held by finalizers, the new one has none. The delete checks ran when deletion started,
// but dependents may have been added since (a race on another replica, or a write while the webhook was down), so
// this update is judged like the delete itself.
func lastFinalizerRemoved(old, cur client.Object) bool {
	return old.GetDeletionTimestamp() != nil && len(old.GetFinalizers()) > 0 && len(cur.GetFinalizers()) == 0
}

// LiveKeysByOwner lists, live and metadata only, up to limit ServiceEncryptionKeys that use Account k, and splits
// them into the names (namespace/name) of keys owned by tenant owner and a count of the others. Only the first may
// be shown to the Account's owner: the others belong to other tenants.
func (d *Directory) LiveKeysByOwner(ctx context.Context, k hierarchy.AccountKey, owner string, limit int64) (own []string, others int, err error) {
	if d.Live == nil {
		return nil, 0, nil
	}
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(cmkv1.GroupVersion.WithKind("ServiceEncryptionKeyList"))
	if err := d.Live.List(ctx, list, client.MatchingLabels{AccountRefLabel: AccountRefValue(k)}, client.Limit(limit)); err != nil {
		return nil, 0, fmt.Errorf("listing the keys of account %s: %w", k, err)
	}
	for _, item := range list.Items {
		if owner != "" && item.Labels[cmkv1.TenantLabel] == owner {
			own = append(own, item.Namespace+"/"+item.Name)
		} else {
			others++
		}
	}
	return own, others, nil
}

// dryRunInformerWait bounds how long a dry run waits for the informers to deliver an object it read live before it
// fills the model itself.
var dryRunInformerWait = 250 * time.Millisecond

// withDryRun marks ctx when req is a dry run (keychain.WithDryRun is the one marker every dry-run-aware component
// reads: the key prober caches nothing, the directory prefers the informers' copy to its own write).
func withDryRun(ctx context.Context, req admission.Request) context.Context {
	if req.DryRun != nil && *req.DryRun {
		return keychain.WithDryRun(ctx)
	}
	return ctx
}

// rememberLive puts an object read live on a model miss into the model, so that the checks of this request (and
// the next ones) see what the API server holds. A dry run prefers not to write: it first waits up to
// dryRunInformerWait for the informers to deliver the object (they do within milliseconds: it exists, it was just
// read) and fills the model itself only when they lag longer, with exactly what the informers are about to
// deliver. Either way the request's own object is never written and the verdict is the one a real request gets.
func (d *Directory) rememberLive(ctx context.Context, key string, readStart time.Time, insert func(), present func() bool) {
	if keychain.IsDryRun(ctx) {
		deadline := time.Now().Add(dryRunInformerWait)
		for !present() && time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(5 * time.Millisecond)
		}
		if present() {
			return
		}
	}
	d.remember(key, readStart, insert)
}
