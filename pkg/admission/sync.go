package admission

import (
	"context"
	"fmt"

	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/hierarchy"
)

// Sync keeps the hierarchy model current from informers: Tenants, Accounts (owner = their ownership label; watched
// metadata only, see CacheOptions) and ServiceEncryptionKeys (which Account each one uses). The model tolerates
// out-of-order arrival. The returned func reports whether every handler has seen its informer's initial list, i.e.
// the model is complete; gate readiness on it so that no request is judged against a half-filled model after a start.
func Sync(ctx context.Context, informers cache.Informers, d *Directory) (synced func() bool, err error) {
	m := d.Model
	var regs []toolscache.ResourceEventHandlerRegistration
	add := func(obj client.Object, upsert func(client.Object), remove func(client.Object)) error {
		inf, err := informers.GetInformer(ctx, obj)
		if err != nil {
			return fmt.Errorf("informer for %T: %w", obj, err)
		}
		reg, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc: func(o any) {
				if co, ok := o.(client.Object); ok {
					upsert(co)
				}
			},
			UpdateFunc: func(_, o any) {
				if co, ok := o.(client.Object); ok {
					upsert(co)
				}
			},
			DeleteFunc: func(o any) {
				if d, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
					o = d.Obj
				}
				if co, ok := o.(client.Object); ok {
					remove(co)
				}
			},
		})
		regs = append(regs, reg)
		return err
	}
	if err := add(&cmkv1.Tenant{},
		func(o client.Object) { m.UpsertTenant(TenantFromObject(o.(*cmkv1.Tenant))) },
		func(o client.Object) { d.forget(tenantKey(o.GetName()), func() { m.DeleteTenant(o.GetName()) }) }); err != nil {
		return nil, err
	}
	if err := add(AccountMetadata(),
		func(o client.Object) {
			k := hierarchy.AccountKey{Namespace: o.GetNamespace(), Name: o.GetName()}
			if owner := o.GetLabels()[cmkv1.TenantLabel]; owner != "" {
				m.UpsertAccount(k, owner)
			} else {
				m.DeleteAccount(k)
			}
		},
		func(o client.Object) {
			k := hierarchy.AccountKey{Namespace: o.GetNamespace(), Name: o.GetName()}
			d.forget(accountKey(k), func() { m.DeleteAccount(k) })
		}); err != nil {
		return nil, err
	}
	err = add(&cmkv1.ServiceEncryptionKey{},
		func(o client.Object) {
			k := o.(*cmkv1.ServiceEncryptionKey)
			ns := k.Spec.AccountRef.Namespace
			if ns == "" {
				ns = k.Namespace
			}
			m.UpsertKey(hierarchy.KeyRef{Namespace: k.Namespace, Name: k.Name}, hierarchy.AccountKey{Namespace: ns, Name: k.Spec.AccountRef.Name})
		},
		func(o client.Object) { m.DeleteKey(hierarchy.KeyRef{Namespace: o.GetNamespace(), Name: o.GetName()}) })
	if err != nil {
		return nil, err
	}
	return func() bool {
		for _, r := range regs {
			if !r.HasSynced() {
				return false
			}
		}
		return true
	}, nil
}
