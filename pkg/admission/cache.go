package admission

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
)

// CacheOptions is the informer cache of the webhook process. Every replica holds every Tenant, Account, key and
// tenant namespace of the cluster, so what a tenant writes into an object must not decide a replica's memory:
// annotations (which a tenant controls and can make large) and managed fields are never kept. Specs and status stay,
// because the controllers and the identity side of this process read them from the same cache (key status and
// workload identities, Tenant identity providers); their size is bounded by the CRD schemas, and the metadata of our
// kinds by the metadata-size policy in deploy/base. Namespaces, which are not ours and which only the namespace ->
// tenant lookup reads, are cut to name, labels and deletion state.
func CacheOptions() cache.Options {
	return cache.Options{
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Namespace{}:           {Transform: TrimNamespace},
			&cmkv1.Tenant{}:               {Transform: TrimAnnotations},
			&cmkv1.ServiceEncryptionKey{}: {Transform: TrimAnnotations},
			&cmkv1.Account{}:              {Transform: TrimAnnotations},
			&cmkv1.WebHookNotification{}:  {Transform: TrimAnnotations},
		},
		DefaultTransform: cache.TransformStripManagedFields(),
	}
}

var _ toolscache.TransformFunc = TrimNamespace

// trimMeta keeps the identity, labels, finalizers and deletion state of an object's metadata.
func trimMeta(m metav1.ObjectMeta) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion, Generation: m.Generation,
		Labels: m.Labels, Finalizers: m.Finalizers, DeletionTimestamp: m.DeletionTimestamp, CreationTimestamp: m.CreationTimestamp,
	}
}

// TrimNamespace keeps what the namespace -> tenant lookup reads.
func TrimNamespace(obj any) (any, error) {
	ns, ok := obj.(*corev1.Namespace)
	if !ok {
		return obj, nil
	}
	return &corev1.Namespace{TypeMeta: ns.TypeMeta, ObjectMeta: trimMeta(ns.ObjectMeta), Status: corev1.NamespaceStatus{Phase: ns.Status.Phase}}, nil
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
