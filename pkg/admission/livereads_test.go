package admission_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/apeirora/apeiro-cmk/pkg/admission"
	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
)

// stateReader is an API server stand-in: each Get returns the tenant's state as of the moment the read starts,
// optionally held until released, and counts the reads.
type stateReader struct {
	client.Reader
	reads   atomic.Int64
	parent  atomic.Value // string: the tenant's current spec.parent
	hold    chan struct{}
	started chan struct{}
	delay   time.Duration
	missing bool
}

func (r *stateReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	r.reads.Add(1)
	parent, _ := r.parent.Load().(string) // the state at read start
	if r.started != nil {
		r.started <- struct{}{}
	}
	if r.hold != nil {
		<-r.hold
	}
	time.Sleep(r.delay)
	if r.missing {
		return apierrors.NewNotFound(schema.GroupResource{Group: "cmk.apeiro.io", Resource: "tenants"}, key.Name)
	}
	t := obj.(*cmkv1.Tenant)
	t.Name = key.Name
	t.Spec.Parent = parent
	return nil
}

// A request never receives a read that began before it arrived: callers arriving while a read is in flight share
// the next one, which sees every change made before they arrived.
func TestBatchedReaderNeverServesOlderReads(t *testing.T) {
	fake := &stateReader{hold: make(chan struct{}), started: make(chan struct{}, 4)}
	fake.parent.Store("v1")
	r := admission.NewBatchedReader(fake)
	ctx := context.Background()

	first := make(chan string)
	go func() {
		var tn cmkv1.Tenant
		_ = r.Get(ctx, client.ObjectKey{Name: "acme"}, &tn)
		first <- tn.Spec.Parent
	}()
	<-fake.started // read 1 is in flight with state v1
	fake.parent.Store("v2")

	var wg sync.WaitGroup
	later := make([]string, 8)
	for i := range later {
		wg.Go(func() {
			var tn cmkv1.Tenant
			if err := r.Get(ctx, client.ObjectKey{Name: "acme"}, &tn); err != nil {
				t.Error(err)
			}
			later[i] = tn.Spec.Parent
		})
	}
	time.Sleep(50 * time.Millisecond) // let all eight queue behind read 1
	fake.hold <- struct{}{}           // release read 1
	if got := <-first; got != "v1" {
		t.Fatalf("first caller got %q, want v1", got)
	}
	<-fake.started          // read 2 starts after all eight arrived
	fake.hold <- struct{}{} // release read 2
	wg.Wait()
	for i, got := range later {
		if got != "v2" {
			t.Errorf("caller %d got %q: a read older than its arrival", i, got)
		}
	}
	if n := fake.reads.Load(); n != 2 {
		t.Errorf("%d reads, want 2 (one in flight, one shared by the eight that arrived meanwhile)", n)
	}
}

// N concurrent requests for one object cost about one read per round trip, not N.
func TestBatchedReaderCollapsesConcurrentReads(t *testing.T) {
	fake := &stateReader{delay: 5 * time.Millisecond}
	fake.parent.Store("acme")
	r := admission.NewBatchedReader(fake)
	var wg sync.WaitGroup
	for range 200 {
		wg.Go(func() {
			var tn cmkv1.Tenant
			if err := r.Get(context.Background(), client.ObjectKey{Name: "acme-eu"}, &tn); err != nil || tn.Spec.Parent != "acme" || tn.Name != "acme-eu" {
				t.Errorf("got %+v, %v", tn.ObjectMeta, err)
			}
		})
	}
	wg.Wait()
	if n := fake.reads.Load(); n > 20 {
		t.Errorf("%d reads for 200 concurrent callers", n)
	}
}

func TestBatchedReaderErrorsAndCancellation(t *testing.T) {
	t.Run("not found reaches every caller", func(t *testing.T) {
		r := admission.NewBatchedReader(&stateReader{missing: true, delay: time.Millisecond})
		var wg sync.WaitGroup
		for range 10 {
			wg.Go(func() {
				if err := r.Get(context.Background(), client.ObjectKey{Name: "gone"}, &cmkv1.Tenant{}); !apierrors.IsNotFound(err) {
					t.Errorf("err %v, want NotFound", err)
				}
			})
		}
		wg.Wait()
	})
	t.Run("a caller stops waiting when its context ends", func(t *testing.T) {
		fake := &stateReader{hold: make(chan struct{})}
		defer close(fake.hold)
		r := admission.NewBatchedReader(fake)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := r.Get(ctx, client.ObjectKey{Name: "slow"}, &cmkv1.Tenant{})
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > time.Second {
			t.Fatalf("err %v after %s", err, time.Since(start))
		}
	})
	t.Run("different objects never share a read", func(t *testing.T) {
		fake := &stateReader{delay: 2 * time.Millisecond}
		r := admission.NewBatchedReader(fake)
		var wg sync.WaitGroup
		for _, name := range []string{"a", "b", "c"} {
			wg.Go(func() {
				var tn cmkv1.Tenant
				if err := r.Get(context.Background(), client.ObjectKey{Name: name}, &tn); err != nil || tn.Name != name {
					t.Errorf("asked for %s, got %q (%v)", name, tn.Name, err)
				}
			})
		}
		wg.Wait()
		if n := fake.reads.Load(); n != 3 {
			t.Errorf("%d reads, want 3", n)
		}
	})
}

// A finished read is reused by a request that arrived before it started, never by one that arrived after.
func TestBatchedReaderReusesReadsStartedAfterArrival(t *testing.T) {
	fake := &stateReader{}
	fake.parent.Store("acme")
	r := admission.NewBatchedReader(fake)
	arrived := time.Now()
	time.Sleep(time.Millisecond)
	if err := r.Get(context.Background(), client.ObjectKey{Name: "acme-eu"}, &cmkv1.Tenant{}); err != nil { // starts a read
		t.Fatal(err)
	}
	var tn cmkv1.Tenant
	if err := r.Get(admission.WithArrival(context.Background(), arrived), client.ObjectKey{Name: "acme-eu"}, &tn); err != nil || tn.Spec.Parent != "acme" {
		t.Fatalf("got %+v, %v", tn.Spec, err)
	}
	if n := fake.reads.Load(); n != 1 {
		t.Fatalf("%d reads; the earlier arrival should have reused the read that started after it", n)
	}
	if err := r.Get(admission.WithArrival(context.Background(), time.Now()), client.ObjectKey{Name: "acme-eu"}, &tn); err != nil {
		t.Fatal(err)
	}
	if n := fake.reads.Load(); n != 2 {
		t.Fatalf("%d reads; a later arrival must not reuse an older read", n)
	}
}

// MaxAge > 0 lets requests reuse a recent finished read; 0 never does.
func TestBatchedReaderMaxAge(t *testing.T) {
	for _, tc := range []struct {
		maxAge time.Duration
		reads  int64
	}{{0, 5}, {time.Hour, 1}} {
		fake := &stateReader{}
		fake.parent.Store("acme")
		r := admission.NewBatchedReader(fake)
		r.MaxAge = tc.maxAge
		for range 5 {
			var tn cmkv1.Tenant
			if err := r.Get(context.Background(), client.ObjectKey{Name: "acme-eu"}, &tn); err != nil || tn.Spec.Parent != "acme" {
				t.Fatalf("got %+v, %v", tn.Spec, err)
			}
		}
		if n := fake.reads.Load(); n != tc.reads {
			t.Errorf("MaxAge %s: %d reads for 5 sequential callers, want %d", tc.maxAge, n, tc.reads)
		}
	}
}

// Past half of MaxAge a read is renewed in the background: the caller that notices keeps the read it may use and
// does not wait for the renewal, and later callers get the renewed read.
func TestBatchedReaderRefreshesAhead(t *testing.T) {
	fake := &stateReader{}
	fake.parent.Store("v1")
	r := admission.NewBatchedReader(fake)
	r.MaxAge = time.Hour
	get := func(arrival time.Time) string {
		var tn cmkv1.Tenant
		if err := r.Get(admission.WithArrival(context.Background(), arrival), client.ObjectKey{Name: "acme-eu"}, &tn); err != nil {
			t.Fatal(err)
		}
		return tn.Spec.Parent
	}
	if got := get(time.Now()); got != "v1" {
		t.Fatalf("first read: %q", got)
	}
	// A request arriving 40 minutes later may still use that read (within the hour) but it is past half its
	// window: the request is answered from it at once, while the renewal is held at the API server.
	fake.parent.Store("v2")
	fake.hold, fake.started = make(chan struct{}), make(chan struct{}, 1)
	if got := get(time.Now().Add(40 * time.Minute)); got != "v1" {
		t.Fatalf("refreshing caller: %q, want the read it may still use (v1)", got)
	}
	<-fake.started // the renewal started in the background
	close(fake.hold)
	deadline := time.Now().Add(10 * time.Second)
	for get(time.Now()) != "v2" {
		if time.Now().After(deadline) {
			t.Fatal("the renewed read was never used")
		}
		time.Sleep(time.Millisecond)
	}
	if n := fake.reads.Load(); n != 2 {
		t.Fatalf("%d reads, want 2 (one renewal)", n)
	}
}
