package server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"
)

// Limits bound every request before it reaches a handler.
type Limits struct {
	// MaxBodyBytes caps the request body (default 3 MiB: the API server's 1.5 MiB object limit, twice for an
	// AdmissionReview of an UPDATE with its old object, plus the envelope).
	MaxBodyBytes int64
	// RequestTimeout bounds reading the body and answering (default 10 s, above the 5 s webhook timeout).
	RequestTimeout time.Duration
	// MaxInFlightBytes caps the bodies held by all requests being answered at once (default 16 MiB). A request
	// reserves its Content-Length (MaxBodyBytes while the length is unknown) before its body is read and keeps it
	// until it is answered; one that cannot reserve within InFlightWait is answered 429, so a burst of large
	// bodies costs latency, never the replica's memory limit.
	MaxInFlightBytes int64
	// InFlightWait is how long a request waits for room in MaxInFlightBytes (default 1 s).
	InFlightWait time.Duration
}

const (
	DefaultMaxBodyBytes   = 3 << 20
	DefaultRequestTimeout = 10 * time.Second
	DefaultMaxInFlight    = 16 << 20
	DefaultInFlightWait   = time.Second
)

// Limiter applies Limits to handlers; every handler it wraps shares one in-flight budget.
type Limiter struct {
	lim    Limits
	budget *semaphore.Weighted
}

// NewLimiter fills in the defaults of lim.
func NewLimiter(lim Limits) *Limiter {
	if lim.MaxBodyBytes <= 0 {
		lim.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if lim.RequestTimeout <= 0 {
		lim.RequestTimeout = DefaultRequestTimeout
	}
	if lim.MaxInFlightBytes <= 0 {
		lim.MaxInFlightBytes = DefaultMaxInFlight
	}
	if lim.MaxInFlightBytes < lim.MaxBodyBytes {
		lim.MaxInFlightBytes = lim.MaxBodyBytes // one maximal request must always fit
	}
	if lim.InFlightWait <= 0 {
		lim.InFlightWait = DefaultInFlightWait
	}
	return &Limiter{lim: lim, budget: semaphore.NewWeighted(lim.MaxInFlightBytes)}
}

// Limits returns the effective limits.
func (l *Limiter) Limits() Limits { return l.lim }

// body is a request body read by the Limiter: the bytes stay available to the handler without another copy
// (RequestBody), and the buffer is reused by later requests once the handler has returned.
type body struct {
	buf bytes.Buffer
	rd  bytes.Reader
}

func (b *body) Read(p []byte) (int, error) { return b.rd.Read(p) }
func (b *body) Close() error               { return nil }

var bodies = sync.Pool{New: func() any { return new(body) }}

// maxPooledBody keeps one unusually large body from pinning its buffer in the pool.
const maxPooledBody = 256 << 10

// RequestBody returns the body the Limiter read for r, without copying. The slice is valid only until the handler
// returns; a handler that keeps bytes must copy them.
func RequestBody(r *http.Request) ([]byte, bool) {
	if b, ok := r.Body.(*body); ok {
		return b.buf.Bytes(), true
	}
	return nil, false
}

// Wrap caps the body of every request to next, reserves it in the in-flight budget, and sets read and write
// deadlines on the connection for this request. Only POST is served.
func (l *Limiter) Wrap(next http.Handler) http.Handler {
	lim := l.lim
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "only POST is allowed", http.StatusMethodNotAllowed)
			return
		}
		if r.ContentLength > lim.MaxBodyBytes {
			rejectedTooLarge.Inc()
			http.Error(w, "request entity is too large; limit is "+strconv.FormatInt(lim.MaxBodyBytes, 10)+" bytes", http.StatusRequestEntityTooLarge)
			return
		}
		reserved := lim.MaxBodyBytes
		if r.ContentLength >= 0 && r.ContentLength < reserved {
			reserved = r.ContentLength
		}
		reserved = max(reserved, 1)
		// The common case, room in the budget, takes no timer and no context.
		if !l.budget.TryAcquire(reserved) {
			wctx, cancel := context.WithTimeout(r.Context(), lim.InFlightWait)
			err := l.budget.Acquire(wctx, reserved)
			cancel()
			if err != nil {
				rejectedBusy.Inc()
				w.Header().Set("Retry-After", "1")
				http.Error(w, "too many large requests in flight; retry", http.StatusTooManyRequests)
				return
			}
		}
		defer func() { l.budget.Release(reserved) }()
		rc := http.NewResponseController(w)
		deadline := time.Now().Add(lim.RequestTimeout)
		_ = rc.SetReadDeadline(deadline) // not every ResponseWriter supports deadlines (httptest); the server's own timeouts remain
		_ = rc.SetWriteDeadline(deadline)
		// Read the body here rather than handing the handler a MaxBytesReader: a chunked body over the limit would
		// otherwise surface as a read error (answered 400, not counted) instead of 413, and a wrapped empty body
		// would no longer be http.NoBody, so "request body is empty" checks would be skipped.
		if r.Body != nil && r.Body != http.NoBody {
			b := bodies.Get().(*body)
			defer func() {
				if b.buf.Cap() <= maxPooledBody {
					b.buf.Reset()
					b.rd.Reset(nil)
					bodies.Put(b)
				}
			}()
			if r.ContentLength > 0 {
				b.buf.Grow(int(r.ContentLength) + bytes.MinRead) // one read, no regrowth
			}
			_, err := b.buf.ReadFrom(http.MaxBytesReader(w, r.Body, lim.MaxBodyBytes))
			var tooLarge *http.MaxBytesError
			switch {
			case errors.As(err, &tooLarge):
				rejectedTooLarge.Inc()
				http.Error(w, "request entity is too large; limit is "+strconv.FormatInt(lim.MaxBodyBytes, 10)+" bytes", http.StatusRequestEntityTooLarge)
				return
			case err != nil:
				http.Error(w, "reading the request body: "+err.Error(), http.StatusBadRequest)
				return
			case b.buf.Len() == 0:
				r.Body = http.NoBody
			default:
				b.rd.Reset(b.buf.Bytes())
				r.Body = b
			}
			// A body of unknown length reserved the maximum; keep only what it really holds.
			if n := max(int64(b.buf.Len()), 1); n < reserved {
				l.budget.Release(reserved - n)
				reserved = n
			}
		}
		next.ServeHTTP(w, r)
	})
}

// A handler that does not know RequestBody reads the body the ordinary way.
var _ io.ReadCloser = (*body)(nil)
