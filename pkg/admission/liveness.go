package admission

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/hierarchy"
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
	var t cmkv1.Tenant
	if err := d.Live.Get(ctx, client.ObjectKey{Name: id}, &t); err != nil {
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
	var a cmkv1.Account
	if err := d.Live.Get(ctx, client.ObjectKey{Namespace: k.Namespace, Name: k.Name}, &a); err != nil {
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
