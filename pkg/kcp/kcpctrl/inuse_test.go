package kcpctrl

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	cmkadmission "github.com/apeirora/apeiro-cmk/pkg/admission"
	"github.com/apeirora/apeiro-cmk/pkg/controllers/inuse"
	"github.com/apeirora/apeiro-cmk/pkg/hierarchy"
	"github.com/apeirora/apeiro-cmk/pkg/kcp"
)

// fakePaths knows the workspaces of paths.
type fakePaths map[string]string // path -> logical cluster

func (fakePaths) Options() kcp.Options {
	o := kcp.Options{TenantsRoot: "root", PlatformWorkspace: "root:platform"}
	return o
}

func (p fakePaths) Workspace(path string) (kcp.Workspace, bool) {
	lc, ok := p[path]
	return kcp.Workspace{Path: path, Cluster: lc}, ok
}

func TestNeedsWork(t *testing.T) {
	now := metav1.Now()
	for _, tc := range []struct {
		name        string
		terminating bool
		finalizers  []string
		want        bool
	}{
		{"live without the finalizer: stamp", false, nil, true},
		{"live with it: nothing", false, []string{inuse.Finalizer}, false},
		{"terminating with it: judge", true, []string{"x", inuse.Finalizer}, true},
		{"terminating without it: not ours", true, []string{"x"}, false},
	} {
		m := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Finalizers: tc.finalizers}}
		if tc.terminating {
			m.DeletionTimestamp = &now
		}
		if got := needsWork(m); got != tc.want {
			t.Errorf("%s: needsWork = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestNewInUseRefusesBadOptions(t *testing.T) {
	for name, o := range map[string]InUseOptions{
		"no config":      {Paths: fakePaths{}},
		"no paths":       {Config: &rest.Config{Host: "https://kcp.invalid"}},
		"negative grace": {Config: &rest.Config{Host: "https://kcp.invalid"}, Paths: fakePaths{}, Grace: -time.Second},
	} {
		if _, err := NewInUse(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestInUseOnAccount(t *testing.T) {
	c, err := NewInUse(InUseOptions{Config: &rest.Config{Host: "https://kcp.invalid"}, Paths: fakePaths{}})
	if err != nil {
		t.Fatal(err)
	}
	c.OnAccount(kcp.ObjectEvent{Cluster: "lc1", Namespace: "keys", Name: "main"})
	c.OnAccount(kcp.ObjectEvent{Cluster: "lc1", Namespace: "keys", Name: "main"}) // deduplicated by the queue
	c.OnAccount(kcp.ObjectEvent{Cluster: "lc1", Namespace: "keys", Name: "gone", Deleted: true})
	c.OnAccount(kcp.ObjectEvent{Namespace: "keys", Name: "nowhere"})
	if c.Len() != 1 {
		t.Fatalf("queued %d, want 1 (the live Account once)", c.Len())
	}
	it, _ := c.queue.Get()
	if it != (inUseItem{inuse.KindAccount, "lc1", "keys", "main"}) {
		t.Fatalf("queued %+v", it)
	}
	c.queue.Done(it)

	// Limited to some workspaces, events of others are ignored.
	c.o.Serve = func(lc string) bool { return lc == "lc2" }
	c.OnAccount(kcp.ObjectEvent{Cluster: "lc1", Namespace: "keys", Name: "other"})
	c.OnAccount(kcp.ObjectEvent{Cluster: "lc2", Namespace: "keys", Name: "mine"})
	if it, _ := c.queue.Get(); c.Len() != 0 || it.cluster != "lc2" {
		t.Fatalf("queued %+v (and %d more), want only lc2's Account", it, c.Len())
	}
}

// fakeKCP answers the lists the dependents checks make, per request path, as PartialObjectMetadataLists.
type fakeKCP struct {
	lists  map[string][]metav1.PartialObjectMetadata // URL path -> items
	status map[string]int                            // URL path -> error status
	pages  int                                       // requests served for the key query
}

func (f *fakeKCP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if code, ok := f.status[r.URL.Path]; ok {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusFailure, Code: int32(code),
			Reason: map[int]metav1.StatusReason{403: metav1.StatusReasonForbidden, 404: metav1.StatusReasonNotFound}[code]})
		return
	}
	items, ok := f.lists[r.URL.Path]
	if !ok {
		http.NotFound(w, r)
		return
	}
	l := metav1.PartialObjectMetadataList{TypeMeta: metav1.TypeMeta{Kind: "PartialObjectMetadataList", APIVersion: "meta.k8s.io/v1"}}
	if strings.HasSuffix(r.URL.Path, "/serviceencryptionkeys") {
		// One item per page, to prove the query follows continue tokens.
		f.pages++
		i := 0
		if c := r.URL.Query().Get("continue"); c != "" {
			i = len(c)
		}
		if i < len(items) {
			l.Items = items[i : i+1]
		}
		if i+1 < len(items) {
			l.Continue = strings.Repeat("x", i+1)
		}
	} else {
		l.Items = items
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(l)
}

func pom(cluster, ns, name string, annotations map[string]string) metav1.PartialObjectMetadata {
	a := map[string]string{kcp.AnnotationCluster: cluster}
	for k, v := range annotations {
		a[k] = v
	}
	return metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: a}}
}

func newDeps(t *testing.T, f *fakeKCP, paths fakePaths, model *hierarchy.Model, cluster string) *workspaceDeps {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	c, err := NewInUse(InUseOptions{Config: &rest.Config{Host: srv.URL}, Paths: paths, Model: model})
	if err != nil {
		t.Fatal(err)
	}
	return &workspaceDeps{c: c, cluster: cluster}
}

const (
	wsList   = "/clusters/root:acme/apis/tenancy.kcp.io/v1alpha1/workspaces"
	acctList = "/clusters/root:acme/apis/cmk.apeiro.io/v1alpha1/accounts"
	keyList  = "/clusters/*/apis/cmk.apeiro.io/v1alpha1/serviceencryptionkeys"
)

func TestTenantDependents(t *testing.T) {
	model := hierarchy.New(hierarchy.Config{})
	model.UpsertTenant(hierarchy.Tenant{ID: "acme", Type: hierarchy.Root})
	model.UpsertTenant(hierarchy.Tenant{ID: "acme-dr", Type: hierarchy.Shadow, ShadowOf: "acme"})
	for _, tc := range []struct {
		name    string
		id      string
		model   *hierarchy.Model
		lists   map[string][]metav1.PartialObjectMetadata
		status  map[string]int
		known   fakePaths
		want    []string
		wantErr bool
	}{
		{name: "nothing left", id: "acme", lists: map[string][]metav1.PartialObjectMetadata{wsList: nil, acctList: nil}},
		{name: "child workspace and account", id: "acme",
			lists: map[string][]metav1.PartialObjectMetadata{wsList: {pom("lc1", "", "eu", nil)}, acctList: {pom("lc1", "keys", "main", nil)}},
			want:  []string{"tenant acme.eu", "account keys/main"}},
		{name: "shadow known to the watch", id: "acme", model: model,
			lists: map[string][]metav1.PartialObjectMetadata{wsList: nil, acctList: nil},
			want:  []string{`metadata.name: tenant "acme" is still the target of 1 shadow (acme-dr); delete them first [H-DELETE-SHADOWS]`}},
		{name: "no such workspace (NotFound)", id: "acme", status: map[string]int{wsList: 404}},
		{name: "no such workspace (Forbidden, unknown to the watch)", id: "acme", status: map[string]int{wsList: 403}},
		{name: "forbidden in a known workspace keeps the finalizer", id: "acme", status: map[string]int{wsList: 403},
			known: fakePaths{"root:acme": "lc1"}, wantErr: true},
		{name: "outage keeps the finalizer", id: "acme", status: map[string]int{wsList: 503}, wantErr: true},
		{name: "no Account kind there", id: "acme", lists: map[string][]metav1.PartialObjectMetadata{wsList: nil}, status: map[string]int{acctList: 404}},
		{name: "account list outage", id: "acme", lists: map[string][]metav1.PartialObjectMetadata{wsList: nil}, status: map[string]int{acctList: 500}, wantErr: true},
		{name: "hostile name reaches no workspace", id: "acme/../*", status: map[string]int{wsList: 500}},
		{name: "the platform workspace is no tenant", id: "platform", status: map[string]int{wsList: 500}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			known := tc.known
			if known == nil {
				known = fakePaths{}
			}
			d := newDeps(t, &fakeKCP{lists: tc.lists, status: tc.status}, known, tc.model, "lc0")
			got, err := d.TenantDependents(context.Background(), tc.id)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("dependents = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestAccountDependents(t *testing.T) {
	ref := cmkadmission.AccountRefValue(hierarchy.AccountKey{Namespace: "keys", Name: "main"})
	other := map[string]string{kcp.AnnotationAccountWorkspace: "root:acme"}
	paths := fakePaths{"root:acme": "lc-acme", "root:globex": "lc-globex"}
	for _, tc := range []struct {
		name    string
		keys    []metav1.PartialObjectMetadata
		status  int
		want    []string
		wantErr bool
	}{
		{name: "no keys"},
		{name: "own workspace", keys: []metav1.PartialObjectMetadata{pom("lc-acme", "keys", "k1", nil)}, want: []string{"key lc-acme|keys/k1"}},
		{name: "another tenant's Account of the same name is not ours",
			keys: []metav1.PartialObjectMetadata{pom("lc-globex", "keys", "k1", nil), pom("lc-globex", "keys", "k2", map[string]string{kcp.AnnotationAccountWorkspace: "root:globex"})}},
		{name: "a child workspace's key naming this workspace, found on a later page",
			keys: []metav1.PartialObjectMetadata{pom("lc-globex", "keys", "k1", nil), pom("lc-eu", "keys", "k2", other)},
			want: []string{"key lc-eu|keys/k2"}},
		{name: "unresolvable account workspace counts",
			keys: []metav1.PartialObjectMetadata{pom("lc-eu", "keys", "k3", map[string]string{kcp.AnnotationAccountWorkspace: "root:new"})},
			want: []string{"key lc-eu|keys/k3"}},
		{name: "no key kind anywhere", status: 404},
		{name: "outage keeps the finalizer", status: 503, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeKCP{lists: map[string][]metav1.PartialObjectMetadata{keyList: tc.keys}}
			if tc.status != 0 {
				f.status = map[string]int{keyList: tc.status}
			}
			srvCheck := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == keyList && r.URL.Query().Get("labelSelector") != cmkadmission.AccountRefLabel+"="+ref {
					t.Errorf("key query selector %q", r.URL.Query().Get("labelSelector"))
				}
				f.ServeHTTP(w, r)
			})
			srv := httptest.NewServer(srvCheck)
			defer srv.Close()
			c, err := NewInUse(InUseOptions{Config: &rest.Config{Host: srv.URL}, Paths: paths})
			if err != nil {
				t.Fatal(err)
			}
			got, err := (&workspaceDeps{c: c, cluster: "lc-acme"}).AccountDependents(context.Background(), "keys", "main")
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("dependents = %q, want %q", got, tc.want)
			}
		})
	}
}
