package admission

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
)

// liveMetadata is the object a liveness check reads into: metadata only (deletion state, labels). The API server
// then answers with the metadata in protobuf instead of the whole object in JSON; decoding that JSON (spec, status,
// managed fields, kubectl's last-applied annotation) was the largest CPU cost of a create in the webhook.
func liveMetadata(kind string) *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(cmkv1.GroupVersion.WithKind(kind))
	return m
}

// BatchedReader makes the webhook's live reads (Directory.Live) affordable under concurrency without weakening what
// they promise. A live read exists so that an answer reflects the API server as of some moment after the request
// arrived, never an informer that lags behind. Under load many requests read the same few objects (the tenant of a
// busy namespace, a shared Account) at once; sending each its own GET made the API server's round trip, not our
// checks, the webhook's throughput limit (every create waited for one or two GETs queued on one HTTP/2 connection).
//
// BatchedReader keeps at most one GET per object in flight. A request uses any read of the object that *started
// after the request arrived* (WithArrival; the time of the Get call when unknown): a finished one, the one in
// flight, or else the next one, which starts when the current one ends and is shared by every request queued for it
// (group commit). A read that began before the request arrived is never used, so each answer is exactly as fresh as
// with a GET of its own; a request waits at most two round trips, and N concurrent requests for one object cost
// about one GET per round trip instead of N. Reads with options, and lists, go straight through.
//
// MaxAge > 0 relaxes this on purpose: a request may then also use a read that started up to MaxAge before it
// arrived, and a read past half that age is renewed in the background while requests keep using it, so that under
// steady load no request waits for the API server. The answer may then miss a change made up to MaxAge earlier — a
// window of the same kind as the informers' lag, which the in-use finalizer makes harmless (docs/admission.md; the
// webhook sets MaxAge only while the finalizer runs).
type BatchedReader struct {
	client.Reader
	// Timeout bounds one shared read (default 10 s, the request timeout); each caller also stops waiting when its
	// own context ends.
	Timeout time.Duration
	// MaxAge is how much older than the request a shared read may be; 0 (the zero value) means never older.
	MaxAge time.Duration

	mu    sync.Mutex
	state map[batchKey]*batchQueue
}

// NewBatchedReader wraps r (normally the manager's API reader).
func NewBatchedReader(r client.Reader) *BatchedReader {
	return &BatchedReader{Reader: r, Timeout: DefaultRequestTimeout}
}

type batchKey struct {
	typ       reflect.Type
	gvk       schema.GroupVersionKind // for unstructured and metadata-only objects, whose Go type says nothing
	namespace string
	name      string
}

// batchQueue is the per-object state: the read in flight, the batch waiting for the next one, and the last finished
// read (still useful to requests that arrived before it started, and with MaxAge to later ones).
type batchQueue struct {
	current *batch
	next    *batch
	last    *batch
}

type batch struct {
	proto   client.Object // an empty object of the callers' type to read into
	started time.Time
	done    chan struct{}
	obj     client.Object
	err     error
}

// Finished reads are kept for keepFinished (plus MaxAge): long enough for the requests in flight when they started,
// whose answers take milliseconds. maxIdleEntries triggers a sweep of expired ones.
const (
	keepFinished   = time.Second
	maxIdleEntries = 4096
)

type arrivalKey struct{}

// WithArrival records when the request being answered arrived; live reads that started after it are fresh for it.
func WithArrival(ctx context.Context, t time.Time) context.Context {
	return context.WithValue(ctx, arrivalKey{}, t)
}

func arrivalOf(ctx context.Context) time.Time {
	if t, ok := ctx.Value(arrivalKey{}).(time.Time); ok {
		return t
	}
	return time.Now()
}

// Get implements client.Reader.
func (r *BatchedReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if len(opts) > 0 {
		return r.Reader.Get(ctx, key, obj, opts...)
	}
	k := batchKey{typ: reflect.TypeOf(obj), gvk: obj.GetObjectKind().GroupVersionKind(), namespace: key.Namespace, name: key.Name}
	now := time.Now()
	// The oldest read start this request may use.
	arrival := arrivalOf(ctx)
	oldest := arrival.Add(-max(r.MaxAge, 0))
	r.mu.Lock()
	if r.state == nil {
		r.state = map[batchKey]*batchQueue{}
	}
	q := r.state[k]
	if q == nil {
		if len(r.state) >= maxIdleEntries {
			r.sweepLocked(now)
		}
		q = &batchQueue{}
		r.state[k] = q
	}
	var b *batch
	how := "joined"
	switch {
	case q.last != nil && !q.last.started.Before(oldest):
		b, how = q.last, "reused" // finished, and started no earlier than this request may accept
		if r.MaxAge > 0 && q.current == nil && arrival.Sub(q.last.started) > r.MaxAge/2 {
			// Refresh ahead: past half its window, the read is renewed in the background, so under steady load
			// nobody waits for a round trip when it expires. This request keeps the answer it may use.
			q.current = newBatch(obj, now)
			go r.execute(k, q.current)
		}
	case q.current != nil && !q.current.started.Before(oldest):
		b = q.current // in flight, started after the request arrived
	case q.current == nil:
		// Nothing in flight: this request's read starts now.
		b, how = newBatch(obj, now), "started"
		q.current = b
		go r.execute(k, b)
	case q.next == nil:
		// A read is in flight but began before this request arrived: wait for the next one.
		b, how = newBatch(obj, time.Time{}), "queued"
		q.next = b
	default:
		b = q.next // join the next read, which has not started yet
	}
	r.mu.Unlock()
	liveReads.WithLabelValues(how).Inc()

	select {
	case <-b.done:
	case <-ctx.Done():
		return fmt.Errorf("waiting for a live read of %s: %w", key, ctx.Err())
	}
	if b.err != nil {
		return b.err
	}
	reflect.ValueOf(obj).Elem().Set(reflect.ValueOf(b.obj.DeepCopyObject()).Elem())
	return nil
}

func newBatch(obj client.Object, started time.Time) *batch {
	proto := reflect.New(reflect.TypeOf(obj).Elem()).Interface().(client.Object)
	proto.GetObjectKind().SetGroupVersionKind(obj.GetObjectKind().GroupVersionKind())
	return &batch{proto: proto, started: started, done: make(chan struct{})}
}

// execute performs the reads of one object back to back until nobody waits for another one.
func (r *BatchedReader) execute(k batchKey, b *batch) {
	for b != nil {
		ctx, cancel := context.WithTimeout(context.Background(), r.Timeout)
		b.obj = b.proto
		b.err = r.Reader.Get(ctx, client.ObjectKey{Namespace: k.namespace, Name: k.name}, b.obj)
		cancel()

		// The queue is updated before the waiters wake, so that a caller that follows one of them sees this read
		// as finished (and may refresh it), never as still in flight.
		r.mu.Lock()
		q := r.state[k]
		if b.err == nil || apierrors.IsNotFound(b.err) {
			q.last = b // a transient failure is never reused
		}
		next := q.next
		q.next = nil
		if next != nil {
			next.started = time.Now()
		}
		q.current = next
		if next == nil && q.last == nil {
			delete(r.state, k)
		}
		r.mu.Unlock()
		close(b.done)
		b = next
	}
}

// sweepLocked drops finished reads no request can use any more.
func (r *BatchedReader) sweepLocked(now time.Time) {
	for k, q := range r.state {
		if q.current == nil && q.next == nil && (q.last == nil || now.Sub(q.last.started) > keepFinished+r.MaxAge) {
			delete(r.state, k)
		}
	}
}
