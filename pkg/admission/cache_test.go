package admission_test

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/apeirora/apeiro-cmk/pkg/admission"
	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
)

func TestSlimAccountKeepsWhatTheWatchersRead(t *testing.T) {
	now := metav1.Now()
	in := admission.AccountMetadata()
	in.ObjectMeta = metav1.ObjectMeta{
		Name: "main", Namespace: "team-a", UID: "u1", ResourceVersion: "42", Generation: 3, DeletionTimestamp: &now,
		Finalizers:      []string{"cmk.apeiro.io/in-use"},
		Labels:          map[string]string{cmkv1.TenantLabel: "acme", "example.com/other": strings.Repeat("x", 63)},
		Annotations:     map[string]string{"example.com/pad": strings.Repeat("x", 32000)},
		ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
		OwnerReferences: []metav1.OwnerReference{{Name: "someone"}},
	}
	out, err := admission.SlimAccount(in)
	if err != nil {
		t.Fatal(err)
	}
	m := out.(*metav1.PartialObjectMetadata)
	if m.Name != "main" || m.Namespace != "team-a" || m.ResourceVersion != "42" || m.Generation != 3 || m.DeletionTimestamp == nil ||
		len(m.Finalizers) != 1 || m.Kind != "Account" {
		t.Fatalf("lost what the index and the controllers read: %+v", m)
	}
	if len(m.Labels) != 1 || m.Labels[cmkv1.TenantLabel] != "acme" {
		t.Fatalf("labels = %v, want only the ownership label", m.Labels)
	}
	if m.Annotations != nil || m.ManagedFields != nil || m.OwnerReferences != nil || m.UID != "" {
		t.Fatalf("kept tenant-controlled or unread metadata: %+v", m.ObjectMeta)
	}
}

func TestOwnerLabelsAreSharedPerOwner(t *testing.T) {
	mk := func(owner string) map[string]string {
		in := admission.AccountMetadata()
		in.Name, in.Namespace = "a", "ns"
		if owner != "" {
			in.Labels = map[string]string{cmkv1.TenantLabel: owner}
		}
		out, _ := admission.SlimAccount(in)
		return out.(*metav1.PartialObjectMetadata).Labels
	}
	a, b, c := mk("acme"), mk("acme"), mk("globex")
	a["probe"] = "x" // maps are references: a write through one is visible through the other iff shared
	if b["probe"] != "x" {
		t.Fatal("two Accounts of one owner got separate label maps")
	}
	delete(a, "probe")
	if c[cmkv1.TenantLabel] != "globex" || len(c) != 1 {
		t.Fatalf("other owner's labels = %v", c)
	}
	if got := mk(""); got != nil {
		t.Fatalf("an unowned Account got labels %v", got)
	}
}

func TestSlimAccountLeavesTypedAccountsWhole(t *testing.T) {
	a := &cmkv1.Account{ObjectMeta: metav1.ObjectMeta{Name: "a", Namespace: "ns", Annotations: map[string]string{"x": "y"}},
		Spec: cmkv1.AccountSpec{KeyRef: "k"}}
	out, _ := admission.SlimAccount(a)
	got := out.(*cmkv1.Account)
	if got.Spec.KeyRef != "k" || got.Annotations != nil {
		t.Fatalf("typed Account: %+v", got)
	}
}

func TestTrimNamespaceKeepsOnlyTheOwnershipLabel(t *testing.T) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-a",
		Labels:      map[string]string{cmkv1.TenantLabel: "acme", "kubernetes.io/metadata.name": "team-a"},
		Annotations: map[string]string{"x": strings.Repeat("y", 1000)}},
		Spec: corev1.NamespaceSpec{Finalizers: []corev1.FinalizerName{"kubernetes"}}, Status: corev1.NamespaceStatus{Phase: corev1.NamespaceActive}}
	out, _ := admission.TrimNamespace(ns)
	got := out.(*corev1.Namespace)
	if got.Name != "team-a" || got.Labels[cmkv1.TenantLabel] != "acme" || len(got.Labels) != 1 || got.Annotations != nil ||
		got.Status.Phase != corev1.NamespaceActive || got.Spec.Finalizers != nil {
		t.Fatalf("trimmed namespace: %+v", got)
	}
}

func TestClientOptionsReadAccountsLive(t *testing.T) {
	o := admission.ClientOptions()
	if o.Cache == nil || len(o.Cache.DisableFor) != 1 {
		t.Fatalf("client options: %+v", o.Cache)
	}
	if _, ok := o.Cache.DisableFor[0].(*cmkv1.Account); !ok {
		t.Fatalf("DisableFor = %T, want *Account", o.Cache.DisableFor[0])
	}
}

func TestFinalizerListsAreSharedAndClipped(t *testing.T) {
	mk := func() []string {
		in := admission.AccountMetadata()
		in.Name, in.Namespace = "a", "ns"
		in.Finalizers = []string{"cmk.apeiro.io/in-use"}
		out, _ := admission.SlimAccount(in)
		return out.(*metav1.PartialObjectMetadata).Finalizers
	}
	a, b := mk(), mk()
	if &a[0] != &b[0] {
		t.Fatal("equal finalizer lists are not shared")
	}
	if cap(a) != len(a) {
		t.Fatalf("shared list has spare capacity %d: an append would write into it", cap(a))
	}
	c := append(a, "x")
	if &c[0] == &a[0] {
		t.Fatal("append wrote into the shared array")
	}
}
