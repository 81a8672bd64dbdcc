package admission

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/hierarchy"
)

// Labels the mutating webhook stamps on Tenants (derived from the immutable spec) so that a live, indexed query can
// confirm "has children / has shadows" before a delete even when the informer has not caught up yet.
const (
	ParentLabel   = "cmk.apeiro.io/parent"
	ShadowOfLabel = "cmk.apeiro.io/shadow-of"
	// AccountRefLabel is stamped on ServiceEncryptionKeys: AccountRefValue of the Account they use, so an Account
	// delete can confirm "no keys left" with one indexed live query.
	AccountRefLabel = "cmk.apeiro.io/account-ref"
)

// AccountRefValue is the label value naming an Account: a hash, because namespace/name does not fit the 63
// characters of a label value.
func AccountRefValue(k hierarchy.AccountKey) string {
	sum := sha256.Sum256([]byte(k.Namespace + "/" + k.Name))
	return hex.EncodeToString(sum[:16])
}

// ErrNoTenant means a namespace is not assigned to any tenant.
var ErrNoTenant = errors.New("namespace has no tenant")

// Directory answers "who owns what" from the in-memory hierarchy model, with a single live read on a miss so that
// objects created a moment ago (not yet seen by the informers) are found. It never writes to the API server.
type Directory struct {
	Model *hierarchy.Model
	// Cached reads namespaces (a cached client: namespaces change rarely).
	Cached client.Reader
	// Live reads straight from the API server on a model miss; nil disables the fallback (tests).
	Live client.Reader
	// MaxDepth bounds the ancestor chain loaded on a miss.
	MaxDepth int
	// Source, when set, replaces namespace-label ownership (kcp: ownership by logical cluster; see source.go).
	Source Source

	// deleted records when the informers removed an object, so that a live read racing with that delete never
	// re-inserts it (the live Get may return the object just before it is deleted, and the informer's delete may be
	// applied before this request's upsert).
	mu      sync.Mutex
	deleted map[string]time.Time
}

// deletionMemory is how long an informer delete is remembered; far longer than any live read.
const deletionMemory = time.Minute

// forget removes an object from the model on an informer delete and remembers when.
func (d *Directory) forget(key string, remove func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	remove()
	now := time.Now()
	if d.deleted == nil {
		d.deleted = map[string]time.Time{}
	}
	if len(d.deleted) > 256 {
		for k, at := range d.deleted {
			if now.Sub(at) > deletionMemory {
				delete(d.deleted, k)
			}
		}
	}
	d.deleted[key] = now
}

// remember inserts an object read live at readStart, unless the informers deleted it since.
func (d *Directory) remember(key string, readStart time.Time, insert func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if at, ok := d.deleted[key]; ok && !at.Before(readStart) {
		return
	}
	insert()
}

func tenantKey(id string) string               { return "tenant\x00" + id }
func accountKey(k hierarchy.AccountKey) string { return "account\x00" + k.Namespace + "\x00" + k.Name }

// TenantOfNamespace returns the tenant a namespace is assigned to by its cmk.apeiro.io/tenant label.
func (d *Directory) TenantOfNamespace(ctx context.Context, name string) (string, error) {
	if d.Source != nil {
		return d.Source.TenantOfNamespace(ctx, name)
	}
	var ns corev1.Namespace
	err := d.Cached.Get(ctx, client.ObjectKey{Name: name}, &ns)
	if apierrors.IsNotFound(err) && d.Live != nil {
		err = d.Live.Get(ctx, client.ObjectKey{Name: name}, &ns)
	}
	if err != nil {
		return "", fmt.Errorf("reading namespace %q: %w", name, err)
	}
	t := ns.Labels[cmkv1.TenantLabel]
	if t == "" {
		return "", ErrNoTenant
	}
	return t, nil
}

// EnsureTenant makes sure tenant id and its ancestors / shadow target are in the model, reading them live on a miss.
// A tenant that does not exist is not an error: the model's own checks report it precisely.
func (d *Directory) EnsureTenant(ctx context.Context, id string) error {
	limit := d.MaxDepth + 2
	if limit < 3 {
		limit = hierarchy.DefaultMaxDepth + 2
	}
	for i := 0; id != "" && i < limit; i++ {
		t, ok := d.Model.Tenant(id)
		if !ok {
			if d.Live == nil {
				return nil
			}
			var obj cmkv1.Tenant
			start := time.Now()
			if err := d.Live.Get(ctx, client.ObjectKey{Name: id}, &obj); err != nil {
				if apierrors.IsNotFound(err) {
					return nil
				}
				return fmt.Errorf("reading tenant %q: %w", id, err)
			}
			t = TenantFromObject(&obj)
			d.rememberLive(ctx, tenantKey(id), start, func() { d.Model.UpsertTenant(t) }, func() bool { _, ok := d.Model.Tenant(id); return ok }) // liveness.go: no model writes on dry runs
		}
		if t.ShadowOf != "" {
			id = t.ShadowOf
		} else {
			id = t.Parent
		}
	}
	return nil
}

// EnsureAccount makes sure the account and its owner's chain are in the model.
func (d *Directory) EnsureAccount(ctx context.Context, key hierarchy.AccountKey) error {
	owner, ok := d.Model.AccountOwner(key)
	if !ok && d.Live != nil {
		var obj cmkv1.Account
		start := time.Now()
		err := d.Live.Get(ctx, client.ObjectKey{Namespace: key.Namespace, Name: key.Name}, &obj)
		switch {
		case apierrors.IsNotFound(err):
			return nil
		case err != nil:
			return fmt.Errorf("reading account %s/%s: %w", key.Namespace, key.Name, err)
		}
		owner = obj.Labels[cmkv1.TenantLabel]
		if owner == "" {
			return nil // an unowned account (written while the webhook was down) is never referencable
		}
		d.rememberLive(ctx, accountKey(key), start, func() { d.Model.UpsertAccount(key, owner) }, func() bool { _, ok := d.Model.AccountOwner(key); return ok })
	}
	if owner == "" {
		return nil
	}
	return d.EnsureTenant(ctx, owner)
}

// liveNames lists, live, up to limit objects of list's kind carrying label=value and returns their names
// ("namespace/name" for namespaced objects). It backs the delete checks that must not trust informers which may lag
// behind a write made a moment ago; label selectors keep each query to the objects that matter.
func (d *Directory) liveNames(ctx context.Context, list client.ObjectList, label, value string, limit int64) ([]string, error) {
	if d.Live == nil {
		return nil, nil
	}
	if err := d.Live.List(ctx, list, client.MatchingLabels{label: value}, client.Limit(limit)); err != nil {
		return nil, fmt.Errorf("listing objects with %s=%s: %w", label, value, err)
	}
	var names []string
	err := apimeta.EachListItem(list, func(o runtime.Object) error {
		if m, ok := o.(client.Object); ok {
			if m.GetNamespace() != "" {
				names = append(names, m.GetNamespace()+"/"+m.GetName())
			} else {
				names = append(names, m.GetName())
			}
		}
		return nil
	})
	return names, err
}

// LiveDependents lists, live, up to limit children and up to limit shadows of tenant id.
func (d *Directory) LiveDependents(ctx context.Context, id string, limit int64) (children, shadows []string, err error) {
	if children, err = d.liveNames(ctx, &cmkv1.TenantList{}, ParentLabel, id, limit); err != nil {
		return nil, nil, err
	}
	shadows, err = d.liveNames(ctx, &cmkv1.TenantList{}, ShadowOfLabel, id, limit)
	return children, shadows, err
}

// LiveAssigned lists, live, up to limit namespaces assigned to tenant id and up to limit Accounts it owns. A tenant
// must not be deleted while either exists: its name could be re-created elsewhere in the hierarchy (say as a Shadow
// of another tenant) and would inherit the namespaces, Accounts and keys.
func (d *Directory) LiveAssigned(ctx context.Context, id string, limit int64) (namespaces, accounts []string, err error) {
	if namespaces, err = d.liveNames(ctx, &corev1.NamespaceList{}, cmkv1.TenantLabel, id, limit); err != nil {
		return nil, nil, err
	}
	accounts, err = d.liveNames(ctx, &cmkv1.AccountList{}, cmkv1.TenantLabel, id, limit)
	return namespaces, accounts, err
}

// LiveKeysOf lists, live, up to limit ServiceEncryptionKeys (namespace/name) that use Account k.
func (d *Directory) LiveKeysOf(ctx context.Context, k hierarchy.AccountKey, limit int64) ([]string, error) {
	return d.liveNames(ctx, &cmkv1.ServiceEncryptionKeyList{}, AccountRefLabel, AccountRefValue(k), limit)
}

// TenantFromObject converts the API object to the hierarchy model's view.
func TenantFromObject(t *cmkv1.Tenant) hierarchy.Tenant {
	return hierarchy.Tenant{ID: t.Name, Type: hierarchy.Type(t.Spec.Type), Parent: t.Spec.Parent, ShadowOf: t.Spec.ShadowOf}
}
