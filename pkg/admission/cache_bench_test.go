package admission_test

import (
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/apeirora/apeiro-cmk/pkg/admission"
	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
)

// BenchmarkCacheMemory measures what one cached object costs a webhook replica: objects are decoded from JSON (as
// the informer does), passed through the cache transform, and kept in a client-go indexer (the informer's store).
// "strip" is the transform the webhook had before (managed fields only); "trim" is admission.CacheOptions'.
// "hostile" objects carry 256 KiB of annotations and a managedFields entry, as a tenant can write them.
// Reported: retained heap bytes per object. Run: go test -run '^$' -bench CacheMemory -benchtime=1x ./pkg/admission/
func BenchmarkCacheMemory(b *testing.B) {
	strip := func(o any) (any, error) {
		if co, ok := o.(client.Object); ok {
			co.SetManagedFields(nil)
		}
		return o, nil
	}
	kinds := []struct {
		name string
		new  func(i int, hostile bool) client.Object
		trim toolscache.TransformFunc
	}{
		{"Account", func(i int, h bool) client.Object { return benchAccount(i, h) }, admission.TrimAnnotations},
		{"Tenant", func(i int, h bool) client.Object { return benchTenant(i, h) }, admission.TrimAnnotations},
		{"ServiceEncryptionKey", func(i int, h bool) client.Object { return benchKey(i, h) }, admission.TrimAnnotations},
		{"Namespace", func(i int, h bool) client.Object { return benchNamespace(i, h) }, admission.TrimNamespace},
	}
	for _, k := range kinds {
		for _, hostile := range []bool{false, true} {
			for _, mode := range []struct {
				name string
				fn   toolscache.TransformFunc
			}{{"strip", strip}, {"trim", k.trim}} {
				n := 20000
				if hostile {
					n = 200 // 200 × 256 KiB is already 50 MiB untrimmed
				}
				label := "plain"
				if hostile {
					label = "hostile"
				}
				b.Run(fmt.Sprintf("%s/%s/%s", k.name, label, mode.name), func(b *testing.B) {
					for range b.N {
						per := retainedPerObject(b, n, func(i int) any {
							raw, _ := json.Marshal(k.new(i, hostile))
							obj := k.new(0, false)
							_ = json.Unmarshal(raw, obj)
							out, _ := mode.fn(obj)
							return out
						})
						b.ReportMetric(per, "B/object")
					}
				})
			}
		}
	}
}

func retainedPerObject(b *testing.B, n int, make func(i int) any) float64 {
	b.Helper()
	store := toolscache.NewIndexer(toolscache.MetaNamespaceKeyFunc, toolscache.Indexers{})
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range n {
		if err := store.Add(make(i)); err != nil {
			b.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(store)
	return float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
}

func hostileMeta(m *metav1.ObjectMeta) {
	m.Annotations = map[string]string{"example.com/pad": strings.Repeat("x", 256<<10)}
	m.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationApply,
		APIVersion: "v1", FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:metadata":{"f:annotations":{}}}`)}}}
}

func benchAccount(i int, hostile bool) *cmkv1.Account {
	ns := fmt.Sprintf("tenant-%06d", i/10)
	a := &cmkv1.Account{
		TypeMeta:   metav1.TypeMeta{APIVersion: cmkv1.GroupVersion.String(), Kind: "Account"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("acct-%d", i%10), UID: "0f8a3c2e-1b7d-4c5e-9a6f-3d2b1c0e9f8a", ResourceVersion: "123456789", Labels: map[string]string{cmkv1.TenantLabel: ns}},
		Spec:       cmkv1.AccountSpec{Keystore: cmkv1.KeystoreAWS, KeyRef: "arn:aws:kms:eu-central-1:123456789012:key/0f8a3c2e-1b7d-4c5e-9a6f-3d2b1c0e9f8a", Region: "eu-central-1"},
		Status: cmkv1.AccountStatus{Conditions: []metav1.Condition{{Type: "Ready", Status: metav1.ConditionTrue, Reason: "KeyReachable",
			Message: "the L1 key answered", LastTransitionTime: metav1.Now()}}},
	}
	a.Annotations = map[string]string{"kubectl.kubernetes.io/last-applied-configuration": strings.Repeat("y", 400)}
	if hostile {
		hostileMeta(&a.ObjectMeta)
	}
	return a
}

func benchTenant(i int, hostile bool) *cmkv1.Tenant {
	t := &cmkv1.Tenant{
		TypeMeta:   metav1.TypeMeta{APIVersion: cmkv1.GroupVersion.String(), Kind: "Tenant"},
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("tenant-%06d", i), UID: "0f8a3c2e-1b7d-4c5e-9a6f-3d2b1c0e9f8a", ResourceVersion: "123456789", Labels: map[string]string{cmkv1.TenantLabel: fmt.Sprintf("tenant-%06d", i), admission.ParentLabel: "root-0001"}},
		Spec: cmkv1.TenantSpec{Type: cmkv1.TenantTypeNested, Parent: "root-0001", Region: "eu-central",
			OIDCProvider: &cmkv1.OIDCProvider{Issuer: "https://idp.example.com/realms/x", JWKSURI: "https://idp.example.com/realms/x/certs", Audiences: []string{"cmk-api"}}},
	}
	if hostile {
		hostileMeta(&t.ObjectMeta)
	}
	return t
}

func benchKey(i int, hostile bool) *cmkv1.ServiceEncryptionKey {
	ns := fmt.Sprintf("tenant-%06d", i/10)
	k := &cmkv1.ServiceEncryptionKey{
		TypeMeta:   metav1.TypeMeta{APIVersion: cmkv1.GroupVersion.String(), Kind: "ServiceEncryptionKey"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("key-%d", i%10), UID: "0f8a3c2e-1b7d-4c5e-9a6f-3d2b1c0e9f8a", ResourceVersion: "123456789", Labels: map[string]string{cmkv1.TenantLabel: ns, admission.AccountRefLabel: "0123456789abcdef0123456789abcdef"}},
		Spec: cmkv1.ServiceEncryptionKeySpec{AccountRef: cmkv1.AccountReference{Namespace: ns, Name: "acct-0"}, Algorithm: cmkv1.AlgorithmAES256,
			WorkloadIdentities: []string{"spiffe://cluster.local/ns/" + ns + "/sa/app"}},
	}
	if hostile {
		hostileMeta(&k.ObjectMeta)
	}
	return k
}

func benchNamespace(i int, hostile bool) *corev1.Namespace {
	name := fmt.Sprintf("tenant-%06d", i)
	ns := &corev1.Namespace{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
		ObjectMeta: metav1.ObjectMeta{Name: name, UID: "0f8a3c2e-1b7d-4c5e-9a6f-3d2b1c0e9f8a", ResourceVersion: "123456789", Labels: map[string]string{cmkv1.TenantLabel: name, "kubernetes.io/metadata.name": name}},
		Spec:       corev1.NamespaceSpec{Finalizers: []corev1.FinalizerName{"kubernetes"}},
		Status:     corev1.NamespaceStatus{Phase: corev1.NamespaceActive},
	}
	if hostile {
		hostileMeta(&ns.ObjectMeta)
	}
	return ns
}

// BenchmarkAccountCacheMemory measures what one Account costs a replica as the webhook caches it now and before:
// "typed" is the typed informer the process used to run (annotations and managed fields dropped), "metadata" the
// metadata-only informer with admission.SlimAccount. Objects are decoded from the JSON the API server sends (a full
// Account for typed, its metadata for metadata-only), transformed, and kept in an indexer with the namespace index
// controller-runtime adds; 100,000 Accounts, ten per tenant namespace. The hierarchy index entry (~121 B, see
// pkg/hierarchy BenchmarkModelMemory) comes on top of either. Each Account carries the in-use finalizer, as in a
// cluster whose leader has stamped it.
// Run: go test -run '^$' -bench AccountCacheMemory -benchtime=1x ./pkg/admission/
func BenchmarkAccountCacheMemory(b *testing.B) {
	const n = 100000
	nsIndex := toolscache.Indexers{toolscache.NamespaceIndex: toolscache.MetaNamespaceIndexFunc}
	modes := []struct {
		name string
		make func(i int) any
	}{
		{"typed", func(i int) any {
			raw, _ := json.Marshal(heldAccount(i))
			var a cmkv1.Account
			_ = json.Unmarshal(raw, &a)
			out, _ := admission.TrimAnnotations(&a)
			return out
		}},
		{"metadata", func(i int) any {
			full := heldAccount(i)
			raw, _ := json.Marshal(metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "meta.k8s.io/v1", Kind: "PartialObjectMetadata"}, ObjectMeta: full.ObjectMeta})
			var m metav1.PartialObjectMetadata
			_ = json.Unmarshal(raw, &m)
			out, _ := admission.SlimAccount(&m)
			return out
		}},
	}
	for _, mode := range modes {
		b.Run(mode.name, func(b *testing.B) {
			for range b.N {
				store := toolscache.NewIndexer(toolscache.MetaNamespaceKeyFunc, nsIndex)
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				for i := range n {
					if err := store.Add(mode.make(i)); err != nil {
						b.Fatal(err)
					}
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				runtime.KeepAlive(store)
				b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/account")
			}
		})
	}
}

func heldAccount(i int) *cmkv1.Account {
	a := benchAccount(i, false)
	a.Finalizers = []string{"cmk.apeiro.io/in-use"}
	return a
}
