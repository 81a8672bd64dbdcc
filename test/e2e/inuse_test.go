package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	cmkv1alpha1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/controllers/inuse"
)

// TestInUseRaceTwoReplicas races "delete the parent" against "create a dependent" many times, with two webhook
// processes behind a per-request round-robin balancer (the API server's calls alternate between them, as with a
// two-replica Deployment behind a Service). Each replica's live checks can miss the other's write in flight, so
// both requests may be admitted. The in-use finalizer makes that harmless: the admitted delete only marks the
// parent terminating, and the parent stays until its dependent is gone. No orphan may survive: a child Tenant
// whose parent is gone, or a key whose Account is gone.
func TestInUseRaceTwoReplicas(t *testing.T) {
	needOwnCluster(t)
	f := newFixture(t)
	ctx := f.ctx
	s := env.stack

	replica, err := s.StartReplica(ctx, "webhook-replica-2")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = replica.Process.Stop(10 * time.Second) })
	lb, served := roundRobin(t, s.WebhookCAPEM, s.WebhookURL, replica.URL)
	if err := s.RegisterAt(ctx, lb); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.InstallWebhookConfigurations(testContext(t)); err != nil {
			t.Errorf("registering the webhook again: %v", err)
		}
	})

	const pairs = 12
	f.tenant("t", cmkv1alpha1.TenantTypeRoot, "", "")
	f.namespace("t")
	ns := f.n("t")
	parents := make([]*cmkv1alpha1.Tenant, pairs)
	children := make([]*cmkv1alpha1.Tenant, pairs)
	accounts := make([]*cmkv1alpha1.Account, pairs)
	keys := make([]*cmkv1alpha1.ServiceEncryptionKey, pairs)
	for i := range pairs {
		parents[i] = tenantObj(f.n(fmt.Sprintf("p%d", i)), cmkv1alpha1.TenantTypeRoot, "", "")
		children[i] = tenantObj(f.n(fmt.Sprintf("c%d", i)), cmkv1alpha1.TenantTypeNested, parents[i].Name, "")
		accounts[i] = accountObj(ns, fmt.Sprintf("a%d", i))
		keys[i] = keyObj(ns, fmt.Sprintf("k%d", i), ns, accounts[i].Name)
		f.create(parents[i])
		f.create(accounts[i])
	}
	// Every parent carries the finalizer from its create on (the mutating webhook stamps it).
	for _, o := range append(objs(parents), objs(accounts)...) {
		eventually(t, 10*time.Second, func() error {
			got := o.DeepCopyObject().(client.Object)
			if err := env.client.Get(ctx, client.ObjectKeyFromObject(o), got); err != nil {
				return err
			}
			if !slices.Contains(got.GetFinalizers(), inuse.Finalizer) {
				return fmt.Errorf("%s has finalizers %v, want %s", o.GetName(), got.GetFinalizers(), inuse.Finalizer)
			}
			return nil
		})
	}

	// The races: for each pair a delete of the parent and a create of a dependent start at the same moment.
	var bothAdmitted, created atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	race := func(parent, dependent client.Object) {
		var delErr, createErr error
		var inner sync.WaitGroup
		inner.Add(2)
		go func() {
			defer inner.Done()
			<-start
			delErr = env.client.Delete(ctx, parent.DeepCopyObject().(client.Object))
		}()
		go func() {
			defer inner.Done()
			<-start
			createErr = env.client.Create(ctx, dependent.DeepCopyObject().(client.Object))
		}()
		inner.Wait()
		if createErr == nil {
			created.Add(1)
			if delErr == nil {
				bothAdmitted.Add(1)
			}
		}
		wg.Done()
	}
	for i := range pairs {
		wg.Add(2)
		go race(parents[i], children[i])
		go race(accounts[i], keys[i])
	}
	close(start)
	wg.Wait()
	t.Logf("%d of %d dependents created, %d of them while the parent's delete was admitted too; requests per replica: %v",
		created.Load(), 2*pairs, bothAdmitted.Load(), served())
	if n := served(); n[0] == 0 || n[1] == 0 {
		t.Fatalf("both replicas must have answered: %v", n)
	}

	exists := func(o client.Object) bool {
		err := env.client.Get(ctx, client.ObjectKeyFromObject(o), o.DeepCopyObject().(client.Object))
		if err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
		return err == nil
	}
	// Past the grace (2 s in this suite) the controller has listed the dependents: an unused parent is gone, a used
	// one is still there. Either way no dependent is left without its parent.
	time.Sleep(4 * time.Second)
	check := func(parent, dependent client.Object) {
		if exists(dependent) && !exists(parent) {
			t.Errorf("orphan: %T %s survived the deletion of %s", dependent, dependent.GetName(), parent.GetName())
		}
	}
	for i := range pairs {
		check(parents[i], children[i])
		check(accounts[i], keys[i])
	}
	// Deleting the dependents lets every parent go: the delete waited for them, it was not lost.
	for i := range pairs {
		for _, o := range []client.Object{children[i], keys[i]} {
			if err := env.client.Delete(ctx, o); err != nil && !apierrors.IsNotFound(err) {
				t.Fatal(err)
			}
		}
	}
	for i := range pairs {
		for _, o := range []client.Object{parents[i], accounts[i]} {
			// The parents whose delete was refused (the dependent came first) are deleted now; that delete is
			// refused until the dependent, itself held by its in-use finalizer for the grace, is gone.
			eventually(t, 30*time.Second, func() error {
				if err := env.client.Delete(ctx, o); err != nil && !apierrors.IsNotFound(err) {
					return err
				}
				if exists(o) {
					return fmt.Errorf("%T %s still exists", o, o.GetName())
				}
				return nil
			})
		}
	}
}

func objs[T client.Object](in []T) []client.Object {
	out := make([]client.Object, len(in))
	for i, o := range in {
		out[i] = o
	}
	return out
}

// roundRobin serves HTTPS on loopback with the stack's webhook certificate and forwards each request to the next
// backend in turn. It returns its URL and a function counting the requests each backend answered.
func roundRobin(t *testing.T, caPEM []byte, backends ...string) (string, func() []int64) {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	transport := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, ForceAttemptHTTP2: true}
	targets := make([]*url.URL, len(backends))
	for i, b := range backends {
		u, err := url.Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		targets[i] = u
	}
	counts := make([]atomic.Int64, len(backends))
	var next atomic.Uint64
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			i := int(next.Add(1)-1) % len(targets)
			counts[i].Add(1)
			r.SetURL(targets[i])
		},
		Transport: transport,
	}
	certFile, keyFile := env.stack.WebhookCertFiles()
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: proxy, ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })
	return "https://" + ln.Addr().String(), func() []int64 {
		out := make([]int64, len(counts))
		for i := range counts {
			out[i] = counts[i].Load()
		}
		return out
	}
}

// inUseGraceArg shortens the in-use finalizer's grace for the suite: the API server and the webhook share a
// loopback here, so a create admitted before a delete is stored within milliseconds, and tests that delete a parent
// and then check what follows should not wait the production default.
const inUseGraceArg = "--in-use-grace=2s"
