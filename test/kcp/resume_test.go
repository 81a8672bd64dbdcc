package kcp_test

import (
	"context"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"

	"github.com/apeirora/apeiro-cmk/pkg/hierarchy"
	"github.com/apeirora/apeiro-cmk/pkg/kcp"
	"github.com/apeirora/apeiro-cmk/pkg/kcp/kcpserver"
)

// flakyProxy sits between a watcher and kcp. It forwards with the shard identity (so the watcher needs none), and
// on command drops every open connection (a network blip: watches end mid-stream), refuses connections for a
// while (kcp unreachable), or answers the next watch requests with 410 Expired ("too old resource version"), which
// is what kcp sends when the resourceVersion a watch resumes from has been compacted away: the client must relist.
type flakyProxy struct {
	srv  *httptest.Server
	rp   *httputil.ReverseProxy
	down atomic.Bool
	// expire is how many of the next watch requests get 410 Expired.
	expire atomic.Int32

	mu       sync.Mutex
	inflight map[int64]context.CancelFunc
	seq      int64

	lists, watches, dropped, expired, refused atomic.Int64
}

func newFlakyProxy(t *testing.T, upstream *rest.Config) (*flakyProxy, *rest.Config) {
	t.Helper()
	target, err := url.Parse(upstream.Host)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := rest.TransportFor(upstream)
	if err != nil {
		t.Fatal(err)
	}
	p := &flakyProxy{inflight: map[int64]context.CancelFunc{}}
	p.rp = &httputil.ReverseProxy{
		Rewrite:       func(r *httputil.ProxyRequest) { r.SetURL(target); r.Out.Host = target.Host },
		Transport:     rt,
		FlushInterval: -1, // stream watch events as they come
		ErrorHandler:  func(w http.ResponseWriter, _ *http.Request, _ error) { w.WriteHeader(http.StatusBadGateway) },
	}
	p.srv = httptest.NewUnstartedServer(p)
	p.srv.StartTLS()
	t.Cleanup(p.srv.Close)
	cfg := &rest.Config{Host: p.srv.URL, TLSClientConfig: rest.TLSClientConfig{
		CAData: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.srv.Certificate().Raw})}}
	return p, cfg
}

func (p *flakyProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p.down.Load() {
		p.refused.Add(1)
		// Close the connection without an answer, as an unreachable server would leave the client.
		if hj, ok := w.(http.Hijacker); ok {
			if c, _, err := hj.Hijack(); err == nil {
				_ = c.Close()
				return
			}
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	watching := r.URL.Query().Get("watch") == "true" || r.URL.Query().Get("watch") == "1"
	if watching {
		p.watches.Add(1)
		if p.expire.Add(-1) >= 0 {
			p.expired.Add(1)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusOK)
			rv := r.URL.Query().Get("resourceVersion")
			_, _ = fmt.Fprintf(w, `{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version: %s","reason":"Expired","code":410}}`+"\n", rv)
			return
		}
		p.expire.Store(0)
	}
	if !watching && r.Method == http.MethodGet || r.URL.Query().Get("sendInitialEvents") == "true" {
		p.lists.Add(1) // a list, or a streaming list (a watch that starts with the current state)
	}
	ctx, cancel := context.WithCancel(r.Context())
	p.mu.Lock()
	p.seq++
	id := p.seq
	p.inflight[id] = cancel
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.inflight, id)
		p.mu.Unlock()
		cancel()
	}()
	p.rp.ServeHTTP(w, r.WithContext(ctx))
}

// drop ends every request in flight (open watches end mid-stream).
func (p *flakyProxy) drop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.inflight {
		c()
		p.dropped.Add(1)
	}
}

// checkWatchResume proves that a watcher whose connections to kcp break resumes without missing adds or deletes,
// and that a relist forced by an expired resourceVersion reconciles its model with the truth.
func checkWatchResume(t *testing.T, ctx context.Context, s *kcpserver.Server, truthModel *hierarchy.Model) {
	proxy, via := newFlakyProxy(t, s.Shard)
	model := hierarchy.New(hierarchy.Config{})
	graph := kcp.NewGraph(kcp.Options{}, model)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := kcp.NewWatcher(via, graph, kcp.WatcherOptions{Log: testr.New(t)})
	if err := w.Start(wctx); err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithTimeout(ctx, time.Minute)
	defer scancel()
	if err := w.WaitForSync(sctx); err != nil {
		t.Fatal(err)
	}
	parent, err := kcpserver.CreateWorkspace(ctx, s.Base, "root", "resume", nil)
	if err != nil {
		t.Fatal(err)
	}
	dc, err := kcpserver.Client(s.Base, parent)
	if err != nil {
		t.Fatal(err)
	}
	create := func(name string) {
		u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "tenancy.kcp.io/v1alpha1", "kind": "Workspace",
			"metadata": map[string]any{"name": name}}}
		if _, err := dc.Resource(kcp.WorkspacesGVR).Create(ctx, u, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating workspace %s: %v", name, err)
		}
	}
	remove := func(name string) {
		if err := dc.Resource(kcp.WorkspacesGVR).Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Fatalf("deleting workspace %s: %v", name, err)
		}
	}

	// Phase 1: connections drop every 300 ms while workspaces come and go; watches resume from the last
	// resourceVersion they saw.
	stop := make(chan struct{})
	var blips sync.WaitGroup
	blips.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(300 * time.Millisecond):
				proxy.drop()
			}
		}
	})
	for _, n := range []string{"a", "b", "c"} {
		create(n)
	}
	remove("a")
	time.Sleep(3 * time.Second)
	close(stop)
	blips.Wait()

	// Phase 2: kcp unreachable for the watcher while workspaces are created and deleted (it cannot see those
	// events at all); when it comes back, its watches are told their resourceVersion is too old, so it must relist
	// and derive the deletions from the difference.
	proxy.down.Store(true)
	proxy.drop()
	listsBefore := proxy.lists.Load()
	create("d")
	remove("b")
	time.Sleep(4 * time.Second)
	proxy.expire.Store(5) // about one per informer
	proxy.down.Store(false)

	want := []string{"resume.c", "resume.d"}
	eventually(t, "the model after the outage equals kcp's workspaces", func() error {
		truth, err := dc.Resource(kcp.WorkspacesGVR).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		var live []string
		for _, u := range truth.Items {
			phase, _, _ := unstructured.NestedString(u.Object, "status", "phase")
			if u.GetDeletionTimestamp() == nil && phase == "Ready" {
				live = append(live, "resume."+u.GetName())
			}
		}
		sort.Strings(live)
		if !slices.Equal(live, want) || len(truth.Items) != len(want) {
			return fmt.Errorf("kcp itself not settled yet: %v (%d objects)", live, len(truth.Items))
		}
		for name, m := range map[string]*hierarchy.Model{"reconnected watcher": model, "undisturbed watcher": truthModel} {
			got := children(m, "resume", []string{"a", "b", "c", "d"})
			if !slices.Equal(got, want) {
				return fmt.Errorf("%s: tenants under resume %v, want %v", name, got, want)
			}
		}
		return nil
	})
	if proxy.dropped.Load() == 0 || proxy.refused.Load() == 0 || proxy.expired.Load() == 0 {
		t.Fatalf("the proxy did not disturb the watch: dropped %d, refused %d, expired %d", proxy.dropped.Load(), proxy.refused.Load(), proxy.expired.Load())
	}
	if proxy.lists.Load() <= listsBefore {
		t.Fatalf("no relist after the expired watches")
	}
	t.Logf("connections dropped %d, refused %d, watches expired %d, lists %d (relists after the outage %d), watches %d",
		proxy.dropped.Load(), proxy.refused.Load(), proxy.expired.Load(), proxy.lists.Load(), proxy.lists.Load()-listsBefore, proxy.watches.Load())
}

// children lists which of the candidate tenants parent.<name> the model holds, sorted.
func children(m *hierarchy.Model, parent string, names []string) []string {
	var out []string
	for _, n := range names {
		if t, ok := m.Tenant(parent + "." + n); ok && t.Parent == parent {
			out = append(out, t.ID)
		}
	}
	sort.Strings(out)
	return out
}
