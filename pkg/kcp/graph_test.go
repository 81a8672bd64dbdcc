package kcp

import (
	"context"
	"errors"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	cmkadmission "github.com/apeirora/apeiro-cmk/pkg/admission"
	"github.com/apeirora/apeiro-cmk/pkg/hierarchy"
)

// tree feeds a graph with root:acme (Root), root:acme:eu (Nested), root:globex (Root), root:acme-dr (Shadow of
// root:acme) and root:platform (not a tenant), in an order where children arrive before their parents.
func tree(t *testing.T) (*Graph, *hierarchy.Model) {
	t.Helper()
	m := hierarchy.New(hierarchy.Config{})
	g := NewGraph(Options{}, m)
	g.UpsertWorkspace("lc-eu", "", "Ready")
	g.UpsertLogicalCluster("lc-eu", "root:acme:eu")
	g.UpsertLogicalCluster("lc-acme", "root:acme")
	g.UpsertLogicalCluster("lc-globex", "root:globex")
	g.UpsertWorkspace("lc-dr", "root:acme", "Ready")
	g.UpsertLogicalCluster("lc-dr", "root:acme-dr")
	g.UpsertLogicalCluster("lc-platform", "root:platform")
	g.UpsertLogicalCluster("root", "root")
	return g, m
}

func TestGraphTenantsFromWorkspaces(t *testing.T) {
	g, m := tree(t)
	want := map[string]hierarchy.Tenant{
		"acme":    {ID: "acme", Type: hierarchy.Root},
		"acme.eu": {ID: "acme.eu", Type: hierarchy.Nested, Parent: "acme"},
		"globex":  {ID: "globex", Type: hierarchy.Root},
		"acme-dr": {ID: "acme-dr", Type: hierarchy.Shadow, ShadowOf: "acme"},
	}
	if m.Len() != len(want) {
		t.Fatalf("model has %d tenants, want %d", m.Len(), len(want))
	}
	for id, w := range want {
		got, ok := m.Tenant(id)
		if !ok || got != w {
			t.Errorf("model tenant %s = %+v (%v), want %+v", id, got, ok, w)
		}
	}
	for _, notTenant := range []string{"root", "root:platform", "platform", ""} {
		if _, ok := m.Tenant(notTenant); ok {
			t.Errorf("%s must not be a tenant", notTenant)
		}
	}
	// Removing the shadow annotation turns the workspace into a Root tenant.
	g.UpsertWorkspace("lc-dr", "", "Ready")
	if got, _ := m.Tenant("acme-dr"); got.Type != hierarchy.Root {
		t.Fatalf("after removing the annotation: %+v", got)
	}
	// A deleted workspace is a deleted tenant.
	g.DeleteWorkspace("lc-eu")
	g.DeleteLogicalCluster("lc-eu")
	if _, ok := m.Tenant("acme.eu"); ok {
		t.Fatal("deleted workspace still a tenant")
	}
}

func TestGraphReferencesAcrossWorkspaces(t *testing.T) {
	g, m := tree(t)
	g.UpsertAccount(Account{Cluster: "lc-acme", Namespace: "keys", Name: "main"})
	g.UpsertAccount(Account{Cluster: "lc-globex", Namespace: "keys", Name: "main"})
	// A key in acme:eu may use acme's Account (its ancestor), never globex's (another tree).
	src := cmkadmission.Source(g)
	ctx := scoped(t, g, "lc-eu", "root:acme")
	k := src.AccountKey(ctx, hierarchy.AccountKey{Namespace: "keys", Name: "main"})
	if err := m.MayReferenceAccount("acme.eu", k); err != nil {
		t.Fatalf("ancestor's account: %v", err)
	}
	ctx = scoped(t, g, "lc-eu", "root:globex")
	k = src.AccountKey(ctx, hierarchy.AccountKey{Namespace: "keys", Name: "main"})
	var re *hierarchy.RuleError
	if err := m.MayReferenceAccount("acme.eu", k); !errors.As(err, &re) {
		t.Fatalf("other tree's account: %v, want a RuleError", err)
	}
	// Equal namespace names in two workspaces are different Accounts.
	ctx = scoped(t, g, "lc-globex", "")
	if owner, ok := m.AccountOwner(src.AccountKey(ctx, hierarchy.AccountKey{Namespace: "keys", Name: "main"})); !ok || owner != "globex" {
		t.Fatalf("globex's own account: owner %q %v", owner, ok)
	}
	// An unknown workspace in the annotation names no Account.
	ctx = scoped(t, g, "lc-eu", "root:nowhere")
	if _, ok := m.AccountOwner(src.AccountKey(ctx, hierarchy.AccountKey{Namespace: "keys", Name: "main"})); ok {
		t.Fatal("unknown workspace resolved to an account")
	}
	// Ownership: by logical cluster; the platform workspace and unknown clusters are not tenants.
	for lc, want := range map[string]string{"lc-eu": "acme.eu", "lc-acme": "acme"} {
		got, err := src.TenantOfNamespace(scoped(t, g, lc, ""), "anything")
		if err != nil || got != want {
			t.Errorf("TenantOfNamespace(%s) = %q, %v; want %q", lc, got, err, want)
		}
	}
	if _, err := src.TenantOfNamespace(scoped(t, g, "lc-platform", ""), "default"); !errors.Is(err, cmkadmission.ErrNoTenant) {
		t.Errorf("platform workspace: %v, want ErrNoTenant", err)
	}
	if _, err := src.TenantOfNamespace(scoped(t, g, "lc-unknown", ""), "default"); err == nil || errors.Is(err, cmkadmission.ErrNoTenant) {
		t.Errorf("unknown cluster: %v, want a retryable error", err)
	}
	if _, err := src.TenantOfNamespace(scoped(t, g, "", ""), "default"); err == nil {
		t.Error("no cluster annotation: want an error")
	}
	// An Account arriving before its workspace is owned once the workspace arrives.
	g.UpsertAccount(Account{Cluster: "lc-late", Namespace: "keys", Name: "main"})
	if _, ok := m.AccountOwner(modelAccount("lc-late", "keys", "main")); ok {
		t.Fatal("account of an unknown workspace has an owner")
	}
	g.UpsertLogicalCluster("lc-late", "root:late")
	if owner, _ := m.AccountOwner(modelAccount("lc-late", "keys", "main")); owner != "late" {
		t.Fatalf("late workspace: owner %q", owner)
	}
}

// scoped builds the context the admission Source derives from a request carrying the annotations kcp stamps.
func scoped(t *testing.T, g *Graph, lc, accountWS string) context.Context {
	t.Helper()
	ann := map[string]any{}
	if lc != "" {
		ann[AnnotationCluster] = lc
	}
	if accountWS != "" {
		ann[AnnotationAccountWorkspace] = accountWS
	}
	raw, err := jsonOf(map[string]any{"metadata": map[string]any{"name": "x", "annotations": ann}})
	if err != nil {
		t.Fatal(err)
	}
	req := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{Object: runtime.RawExtension{Raw: raw}}}
	return g.Scope(context.Background(), req)
}

func TestGraphKeysKeepAccountsInUse(t *testing.T) {
	g, m := tree(t)
	ref := cmkadmission.AccountRefValue(hierarchy.AccountKey{Namespace: "keys", Name: "main"})
	// The key arrives before the Account it uses (in an ancestor's workspace).
	g.UpsertKey("lc-eu", "keys", "k1", "root:acme", ref)
	g.UpsertAccount(Account{Cluster: "lc-acme", Namespace: "keys", Name: "main"})
	var re *hierarchy.RuleError
	if err := m.ValidateAccountDelete(modelAccount("lc-acme", "keys", "main")); !errors.As(err, &re) {
		t.Fatalf("deleting an Account in use: %v, want a RuleError", err)
	}
	g.DeleteKey("lc-eu", "keys", "k1")
	if err := m.ValidateAccountDelete(modelAccount("lc-acme", "keys", "main")); err != nil {
		t.Fatalf("deleting an Account no longer in use: %v", err)
	}
}

func TestScopeTrustsStoredCluster(t *testing.T) {
	g, _ := tree(t)
	raw := func(lc string) []byte {
		b, _ := jsonOf(map[string]any{"metadata": map[string]any{"annotations": map[string]any{AnnotationCluster: lc}}})
		return b
	}
	// An UPDATE whose new object claims another workspace is judged by the stored (old) object's workspace.
	req := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{Operation: admissionv1.Update,
		Object: runtime.RawExtension{Raw: raw("lc-globex")}, OldObject: runtime.RawExtension{Raw: raw("lc-acme")}}}
	got, err := g.TenantOfNamespace(g.Scope(context.Background(), req), "keys")
	if err != nil || got != "acme" {
		t.Fatalf("TenantOfNamespace = %q, %v; want acme", got, err)
	}
}

func TestQualifyKeepsWorkspacesApart(t *testing.T) {
	a := &metav1.ObjectMeta{Name: "cluster", Annotations: map[string]string{AnnotationCluster: "lc-a"}}
	b := &metav1.ObjectMeta{Name: "cluster", Annotations: map[string]string{AnnotationCluster: "lc-b"}}
	qualify(a)
	qualify(b)
	qualify(a) // idempotent (a relist may hand the same object back)
	if a.Name == b.Name || name(a) != "cluster" || name(b) != "cluster" || a.Name != "lc-a|cluster" {
		t.Fatalf("qualified names %q %q", a.Name, b.Name)
	}
}

// The controllers' lookups: which keys use an Account, and where a key's Account lives.
func TestGraphKeyAccounts(t *testing.T) {
	g, _ := tree(t)
	g.UpsertAccount(Account{Cluster: "lc-acme", Namespace: "keys", Name: "main"})
	g.UpsertAccount(Account{Cluster: "lc-eu", Namespace: "keys", Name: "main"}) // same name, other workspace
	ref := cmkadmission.AccountRefValue(hierarchy.AccountKey{Namespace: "keys", Name: "main"})
	g.UpsertKey("lc-eu", "keys", "own", "", ref)
	g.UpsertKey("lc-eu", "keys", "parent", "root:acme", ref)
	g.UpsertKey("lc-eu", "keys", "nowhere", "root:gone", ref)

	users := func(cluster string) (out []string) {
		for _, k := range g.KeysUsing(cluster, "keys", "main") {
			out = append(out, k.Cluster+"/"+k.Namespace+"/"+k.Name)
		}
		return out
	}
	if got := users("lc-acme"); len(got) != 1 || got[0] != "lc-eu/keys/parent" {
		t.Errorf("keys using acme's Account: %v", got)
	}
	if got := users("lc-eu"); len(got) != 1 || got[0] != "lc-eu/keys/own" {
		t.Errorf("keys using eu's Account: %v", got)
	}
	for _, tc := range []struct {
		key, target string
		cross       bool
		keyT, acctT string
		known       bool
	}{
		{"own", "lc-eu", false, "acme.eu", "acme.eu", true},
		{"parent", "lc-acme", true, "acme.eu", "acme", true},
		{"nowhere", "", true, "acme.eu", "", true}, // never the key's own workspace
		{"unknown", "", false, "", "", false},
	} {
		target, cross, keyT, acctT, known := g.KeyAccountCluster("lc-eu", "keys", tc.key)
		if target != tc.target || cross != tc.cross || keyT != tc.keyT || acctT != tc.acctT || known != tc.known {
			t.Errorf("key %s: %q %v %q %q %v", tc.key, target, cross, keyT, acctT, known)
		}
	}
}
