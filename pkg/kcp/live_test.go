package kcp

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
)

// fakeKCP answers the point reads the live reader makes, by URL path.
func fakeKCP(t *testing.T, objects map[string]string) *rest.Config {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, ok := objects[r.URL.Path]
		w.Header().Set("Content-Type", "application/json")
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}`))
			return
		}
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return &rest.Config{Host: srv.URL}
}

const wsPath = "/apis/tenancy.kcp.io/v1alpha1/workspaces/"

func TestLiveReaderTenants(t *testing.T) {
	cfg := fakeKCP(t, map[string]string{
		"/clusters/root" + wsPath + "acme":                                        `{"apiVersion":"tenancy.kcp.io/v1alpha1","kind":"Workspace","metadata":{"name":"acme","uid":"u1"}}`,
		"/clusters/root:acme" + wsPath + "eu":                                     `{"apiVersion":"tenancy.kcp.io/v1alpha1","kind":"Workspace","metadata":{"name":"eu","deletionTimestamp":"2026-01-01T00:00:00Z"}}`,
		"/clusters/root" + wsPath + "acme-dr":                                     `{"apiVersion":"tenancy.kcp.io/v1alpha1","kind":"Workspace","metadata":{"name":"acme-dr","annotations":{"cmk.apeiro.io/shadow-of":"root:acme"}}}`,
		"/clusters/root" + wsPath + "platform":                                    `{"apiVersion":"tenancy.kcp.io/v1alpha1","kind":"Workspace","metadata":{"name":"platform"}}`,
		"/clusters/lc1/apis/cmk.apeiro.io/v1alpha1/namespaces/keys/accounts/main": `{"apiVersion":"cmk.apeiro.io/v1alpha1","kind":"Account","metadata":{"name":"main","namespace":"keys","labels":{"cmk.apeiro.io/tenant":"acme"}},"spec":{"keystore":"local","keyRef":"k"}}`,
	})
	r, err := NewLiveReader(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, tc := range []struct {
		id                    string
		typ, parent, shadowOf string
		terminating, notFound bool
	}{
		{id: "acme", typ: "Root"},
		{id: "acme.eu", typ: "Nested", parent: "acme", terminating: true},
		{id: "acme-dr", typ: "Shadow", shadowOf: "acme"},
		{id: "platform", notFound: true}, // the platform workspace is never a tenant
		{id: "nobody", notFound: true},
		{id: "root:acme", notFound: true}, // a path is not a tenant ID
		{id: "", notFound: true},
	} {
		var got cmkv1.Tenant
		err := r.Get(ctx, client.ObjectKey{Name: tc.id}, &got)
		if tc.notFound {
			if !apierrors.IsNotFound(err) {
				t.Errorf("tenant %q: %v, want NotFound", tc.id, err)
			}
			continue
		}
		if err != nil || got.Name != tc.id || string(got.Spec.Type) != tc.typ || got.Spec.Parent != tc.parent ||
			got.Spec.ShadowOf != tc.shadowOf || (got.DeletionTimestamp != nil) != tc.terminating {
			t.Errorf("tenant %q: %+v %v", tc.id, got, err)
		}
	}

	// Liveness checks read metadata only.
	for _, tc := range []struct {
		kind string
		key  client.ObjectKey
	}{{"Tenant", client.ObjectKey{Name: "acme.eu"}}, {"Account", client.ObjectKey{Namespace: "lc1/keys", Name: "main"}}} {
		m := &metav1.PartialObjectMetadata{}
		m.SetGroupVersionKind(cmkv1.GroupVersion.WithKind(tc.kind))
		if err := r.Get(ctx, tc.key, m); err != nil || m.Name != tc.key.Name || m.Kind != tc.kind {
			t.Errorf("metadata of %s %v: %+v %v", tc.kind, tc.key, m, err)
		}
		if tc.kind == "Tenant" && m.DeletionTimestamp == nil {
			t.Errorf("the terminating workspace's metadata lost its deletion timestamp")
		}
	}
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(cmkv1.GroupVersion.WithKind("ServiceEncryptionKey"))
	if err := r.Get(ctx, client.ObjectKey{Name: "x"}, m); err == nil {
		t.Errorf("metadata of an unsupported kind must fail")
	}

	var a cmkv1.Account
	if err := r.Get(ctx, client.ObjectKey{Namespace: "lc1/keys", Name: "main"}, &a); err != nil || a.Labels[cmkv1.TenantLabel] != "acme" || a.Namespace != "lc1/keys" {
		t.Errorf("account: %+v %v", a, err)
	}
	for _, ns := range []string{"keys", "/keys", "lc1/", "lc2/keys"} {
		if err := r.Get(ctx, client.ObjectKey{Namespace: ns, Name: "main"}, &a); !apierrors.IsNotFound(err) {
			t.Errorf("account in %q: %v, want NotFound", ns, err)
		}
	}
	if err := r.Get(ctx, client.ObjectKey{Name: "x"}, &cmkv1.ServiceEncryptionKey{}); err == nil || !strings.Contains(err.Error(), "does not read") {
		t.Errorf("unsupported kind: %v", err)
	}
	if err := r.List(ctx, &cmkv1.AccountList{}); err != nil {
		t.Errorf("lists come from the watch and must not fail: %v", err)
	}
}
