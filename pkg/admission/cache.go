package admission

import (
	"slices"
	"strings"
	"sync"
	"unique"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
)

// CacheOptions is the informer cache of the webhook process. Every replica holds every Tenant, Account, key and
// tenant namespace of the cluster, so what a tenant writes into an object must not decide a replica's memory, and
// the per-object cost must stay small at a million Accounts:
//
//   - Accounts, by far the most numerous kind, are watched metadata only (AccountMetadata) and cut to name,
//     namespace, resource version, generation, finalizers, deletion state and the ownership label (SlimAccount).
//     Nothing in the process reads an Account's spec or status from the cache: the controllers read the one Account
//     they work on live (ClientOptions makes typed Account reads bypass the cache, so no typed Account informer is
//     ever started by accident).
//   - Namespaces, which are not ours and which only the namespace -> tenant lookup reads, are cut to name, the
//     ownership label and deletion state.
//   - Tenants, keys and notifications keep spec and status (the identity side of the process reads keys' workload
//     identities and Tenants' identity providers from the cache; their size is bounded by the CRD schemas and the
//     metadata of our kinds by the metadata-size policy in deploy/base); annotations and managed fields go.
//
// Ownership-label maps are interned: the ten Accounts of a tenant share one read-only map instead of ten copies
// (a one-entry Go map costs ~300 bytes). Readers of the cache get deep copies; event handlers must not mutate.
func CacheOptions() cache.Options {
	return cache.Options{
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Namespace{}:           {Transform: TrimNamespace},
			&cmkv1.Tenant{}:               {Transform: TrimAnnotations},
			&cmkv1.ServiceEncryptionKey{}: {Transform: TrimAnnotations},
			// One entry per GVK: it applies to the metadata-only Account informer (and, should anyone start one, to a
			// typed one).
			&cmkv1.Account{}:             {Transform: SlimAccount},
			&cmkv1.WebHookNotification{}: {Transform: TrimAnnotations},
		},
		DefaultTransform: cache.TransformStripManagedFields(),
	}
}

// ClientOptions is the client of the webhook process: typed Account reads go to the API server. The process reads
// an Account's spec and status only when it works on that one Account (a probe, a key wrap, an alert), and a typed
// cached read would otherwise start a full typed informer holding every Account of the cluster.
func ClientOptions() client.Options {
	return client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&cmkv1.Account{}}}}
}

// AccountMetadata is the metadata-only object under which Accounts are watched (informers, controller watches).
func AccountMetadata() *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(cmkv1.GroupVersion.WithKind("Account"))
	return m
}

var (
	_ toolscache.TransformFunc = TrimNamespace
	_ toolscache.TransformFunc = SlimAccount
)

// SlimAccount keeps what the hierarchy index and the Account controllers' watches read of an Account: name,
// namespace (interned), resource version, generation, finalizers, deletion state and the ownership label (an
// interned map). Typed Accounts, which the process does not cache, only lose annotations and managed fields.
func SlimAccount(obj any) (any, error) {
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return TrimAnnotations(obj)
	}
	return &metav1.PartialObjectMetadata{
		TypeMeta: accountTypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Name: m.Name, Namespace: unique.Make(m.Namespace).Value(), ResourceVersion: m.ResourceVersion,
			Generation: m.Generation, CreationTimestamp: m.CreationTimestamp, DeletionTimestamp: m.DeletionTimestamp,
			Finalizers: finalizerLists.of(m.Finalizers), Labels: ownerLabels.of(m.Labels[cmkv1.TenantLabel]),
		},
	}, nil
}

// finalizerLists shares the finalizer lists of cached objects: nearly every Account carries the same one or two
// (the in-use finalizer), and a list is ~50 bytes per object otherwise. Lists are read-only like the label maps.
var finalizerLists = stringsIntern{m: map[string][]string{}}

type stringsIntern struct {
	mu sync.Mutex
	m  map[string][]string
}

// maxFinalizerLists bounds the table; distinct finalizer lists are few, a flood of made-up ones only resets it.
const maxFinalizerLists = 1024

func (s *stringsIntern) of(list []string) []string {
	if len(list) == 0 {
		return nil
	}
	key := strings.Join(list, "\x00")
	s.mu.Lock()
	defer s.mu.Unlock()
	if l, ok := s.m[key]; ok {
		return l
	}
	if len(s.m) >= maxFinalizerLists {
		clear(s.m)
	}
	l := slices.Clip(slices.Clone(list)) // clipped: an append by a careless reader reallocates instead of writing into the shared array
	s.m[key] = l
	return l
}

var accountTypeMeta = metav1.TypeMeta{APIVersion: cmkv1.GroupVersion.String(), Kind: "Account"}

// TrimNamespace keeps what the namespace -> tenant lookups read: the name, the ownership label, deletion state.
func TrimNamespace(obj any) (any, error) {
	ns, ok := obj.(*corev1.Namespace)
	if !ok {
		return obj, nil
	}
	return &corev1.Namespace{
		TypeMeta: ns.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Name: ns.Name, UID: ns.UID, ResourceVersion: ns.ResourceVersion, CreationTimestamp: ns.CreationTimestamp,
			DeletionTimestamp: ns.DeletionTimestamp, Labels: ownerLabels.of(ns.Labels[cmkv1.TenantLabel]),
		},
		Status: corev1.NamespaceStatus{Phase: ns.Status.Phase},
	}, nil
}

// TrimAnnotations drops annotations and managed fields of any object.
func TrimAnnotations(obj any) (any, error) {
	o, ok := obj.(client.Object)
	if !ok {
		return obj, nil
	}
	o.SetAnnotations(nil)
	o.SetManagedFields(nil)
	return o, nil
}

// labelIntern hands out one shared, read-only {cmk.apeiro.io/tenant: <owner>} map per owner. It is bounded: when it
// holds maxInterned owners it starts afresh (maps handed out before stay valid, they are only no longer shared), so
// a flood of distinct label values costs at most one table.
type labelIntern struct {
	mu sync.Mutex
	m  map[string]map[string]string
}

const maxInterned = 1 << 18

var ownerLabels labelIntern

func (l *labelIntern) of(owner string) map[string]string {
	if owner == "" {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if m, ok := l.m[owner]; ok {
		return m
	}
	if l.m == nil || len(l.m) >= maxInterned {
		l.m = make(map[string]map[string]string)
	}
	m := map[string]string{cmkv1.TenantLabel: owner}
	l.m[owner] = m
	return m
}
