package alerts

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"

	"github.com/apeirora/apeiro-cmk/pkg/alerts/amclient"
)

// AMOptions configures the Alertmanager side.
type AMOptions struct {
	// Poster reaches Alertmanager (amclient.Client). Required.
	Poster amclient.Poster
	// GeneratorBase prefixes each alert's generatorURL, which then names the object's API path
	// (default https://kubernetes.default.svc).
	GeneratorBase string
	// QueueSize bounds alerts waiting for Alertmanager (default 10000). A full queue blocks Enqueue: backpressure.
	QueueSize int
	// BatchSize bounds alerts per POST (default 64).
	BatchSize int
	// Linger is how long the sender waits for more alerts to batch after the first (default 200 ms).
	Linger time.Duration
	// ResendInterval: firing conditions are re-sent this often with endsAt = now + 3 intervals, so they stay
	// active while the handler lives and expire by themselves if it dies (default 1 min).
	ResendInterval time.Duration
	// NoticeLifetime is endsAt - startsAt of notices (events that are not conditions) (default 5 min).
	NoticeLifetime time.Duration
	// MaxBackoff caps the retry delay while Alertmanager is unreachable (default 30 s).
	MaxBackoff time.Duration
	// RequestTimeout bounds one POST (default 10 s).
	RequestTimeout time.Duration
	Log            logr.Logger
	Metrics        *Metrics
	now            func() time.Time
}

// AMSink batches alerts to Alertmanager through a bounded FIFO queue. While Alertmanager is unreachable the head
// batch is retried with capped exponential backoff and jitter and nothing is dropped; once the queue is full,
// Enqueue blocks. A batch Alertmanager refuses with 4xx is dropped (retrying cannot help) and counted.
type AMSink struct {
	o AMOptions

	mu       sync.Mutex
	notEmpty *sync.Cond
	notFull  *sync.Cond
	queue    []amclient.Alert
	closed   bool
	active   map[string]amclient.Alert // firing conditions by identity
	lastSeen map[string]time.Time      // newest event time per identity: older events never undo newer ones
}

// NewAMSink applies defaults.
func NewAMSink(o AMOptions) *AMSink {
	if o.GeneratorBase == "" {
		o.GeneratorBase = "https://kubernetes.default.svc"
	}
	o.GeneratorBase = strings.TrimSuffix(o.GeneratorBase, "/")
	if o.QueueSize <= 0 {
		o.QueueSize = 10000
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 64
	}
	if o.Linger <= 0 {
		o.Linger = 200 * time.Millisecond
	}
	if o.ResendInterval <= 0 {
		o.ResendInterval = time.Minute
	}
	if o.NoticeLifetime <= 0 {
		o.NoticeLifetime = 5 * time.Minute
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 30 * time.Second
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 10 * time.Second
	}
	if o.now == nil {
		o.now = time.Now
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	s := &AMSink{o: o, active: map[string]amclient.Alert{}, lastSeen: map[string]time.Time{}}
	s.notEmpty = sync.NewCond(&s.mu)
	s.notFull = sync.NewCond(&s.mu)
	return s
}

// maxLastSeen bounds the per-alert "newest event" memory.
const maxLastSeen = 100000

// ErrClosed is returned by Enqueue after the sink stopped.
var ErrClosed = errors.New("alert handler stopped")

// identity of an alert: alertname plus the object it is about.
func identity(alertname string, e *Event) string {
	return alertname + "\x00" + e.Tenant + "\x00" + e.Namespace + "\x00" + e.Account + "\x00" + e.Key + "\x00" + e.Object.Kind + "\x00" + e.Object.Name
}

// plural resource names for generatorURL.
var plurals = map[string]string{"Account": "accounts", "ServiceEncryptionKey": "serviceencryptionkeys", "Tenant": "tenants", "WebHookNotification": "webhooknotifications"}

func (s *AMSink) alert(alertname string, sev Severity, e *Event) amclient.Alert {
	labels := map[string]string{"alertname": alertname, "severity": string(sev), "source": "apeiro-cmk"}
	// Empty values are left out: Alertmanager treats an empty label as absent.
	for k, v := range map[string]string{"tenant": e.Tenant, "namespace": e.Namespace, "account": e.Account, "key": e.Key,
		"kind": e.Object.Kind, "name": e.Object.Name} {
		if v != "" {
			labels[k] = v
		}
	}
	gen := s.o.GeneratorBase + "/apis/cmk.apeiro.io/v1alpha1"
	if e.Object.Namespace != "" {
		gen += "/namespaces/" + url.PathEscape(e.Object.Namespace)
	}
	if p, ok := plurals[e.Object.Kind]; ok {
		gen += "/" + p + "/" + url.PathEscape(e.Object.Name)
	}
	return amclient.Alert{
		Labels:       labels,
		Annotations:  map[string]string{"summary": alertname + " on " + e.Object.Kind + " " + e.Object.Name, "description": e.Message, "event_id": e.ID},
		StartsAt:     e.Time.UTC(),
		GeneratorURL: gen,
	}
}

// Handle turns one event into alerts: a condition fires (and stays firing), a resolving event ends the conditions
// it clears for the same object, and every event that is not a condition is also a notice. It blocks while the
// queue is full.
func (s *AMSink) Handle(ctx context.Context, e *Event) error {
	r := e.Rule()
	now := s.o.now().UTC()
	var out []amclient.Alert
	s.mu.Lock()
	for _, name := range r.Resolves {
		id := identity(name, e)
		if !s.newer(id, e.Time) {
			continue
		}
		// Only a condition this process keeps firing needs an explicit end; one fired before a restart and not
		// re-read expires in Alertmanager by itself within three resend intervals.
		a, ok := s.active[id]
		if !ok {
			continue
		}
		delete(s.active, id)
		a.EndsAt = now
		out = append(out, a)
	}
	id := identity(r.Alertname, e)
	if s.newer(id, e.Time) {
		a := s.alert(r.Alertname, r.Severity, e)
		if r.Condition {
			a.EndsAt = now.Add(3 * s.o.ResendInterval)
			s.active[id] = a
			out = append(out, a)
		} else if a.EndsAt = a.StartsAt.Add(s.o.NoticeLifetime); a.EndsAt.After(now) {
			// A notice already over (an old Event re-read after a restart) is not worth an alert.
			out = append(out, a)
		}
	}
	s.o.Metrics.amActive.Set(float64(len(s.active)))
	s.mu.Unlock()
	return s.Enqueue(ctx, out...)
}

// newer records t for id and reports whether it is not older than what was seen (callers hold s.mu).
func (s *AMSink) newer(id string, t time.Time) bool {
	if last, ok := s.lastSeen[id]; ok && t.Before(last) {
		return false
	}
	if len(s.lastSeen) >= maxLastSeen {
		// Bounded memory: forget old entries except for firing conditions (losing only the protection against
		// late, out-of-order events for objects that have been quiet).
		for k := range s.lastSeen {
			if _, firing := s.active[k]; !firing {
				delete(s.lastSeen, k)
			}
		}
	}
	s.lastSeen[id] = t
	return true
}

// Notice sends a self-resolving alert (dead letters use it).
func (s *AMSink) Notice(ctx context.Context, alertname string, sev Severity, e *Event) error {
	a := s.alert(alertname, sev, e)
	a.EndsAt = a.StartsAt.Add(s.o.NoticeLifetime)
	return s.Enqueue(ctx, a)
}

// Enqueue appends alerts, blocking while the queue is full.
func (s *AMSink) Enqueue(ctx context.Context, alerts ...amclient.Alert) error {
	if len(alerts) == 0 {
		return nil
	}
	stop := context.AfterFunc(ctx, func() {
		s.mu.Lock()
		s.notFull.Broadcast()
		s.mu.Unlock()
	})
	defer stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range alerts {
		for len(s.queue) >= s.o.QueueSize && !s.closed && ctx.Err() == nil {
			s.o.Metrics.amBlocked.Inc()
			s.notFull.Wait()
		}
		if s.closed {
			return ErrClosed
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		s.queue = append(s.queue, a)
		s.o.Metrics.amQueue.Set(float64(len(s.queue)))
		s.notEmpty.Signal()
	}
	return nil
}

// Pending is the number of queued alerts.
func (s *AMSink) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue)
}

// Run sends until ctx ends; the queue's remaining alerts are abandoned then (they live only in memory).
func (s *AMSink) Run(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() {
		s.mu.Lock()
		s.closed = true
		s.notEmpty.Broadcast()
		s.notFull.Broadcast()
		s.mu.Unlock()
	})
	defer stop()
	go s.resendLoop(ctx)
	backoff := time.Duration(0)
	for {
		batch := s.next(ctx)
		if batch == nil {
			return nil
		}
		pctx, cancel := context.WithTimeout(ctx, s.o.RequestTimeout)
		err := s.o.Poster.PostAlerts(pctx, batch)
		cancel()
		switch {
		case err == nil:
			s.o.Metrics.amSent.Add(float64(len(batch)))
			s.drop(len(batch))
			backoff = 0
		case !amclient.Retryable(err):
			s.o.Log.Error(err, "alertmanager refused a batch; dropping it", "alerts", len(batch))
			s.o.Metrics.amDropped.Add(float64(len(batch)))
			s.drop(len(batch))
		default:
			s.o.Metrics.amFailures.Inc()
			backoff = nextBackoff(backoff, 250*time.Millisecond, s.o.MaxBackoff)
			s.o.Log.V(1).Info("alertmanager unreachable; retrying", "error", err.Error(), "pending", s.Pending(), "retryIn", backoff)
			if !sleep(ctx, backoff) {
				return nil
			}
		}
	}
}

// next waits for alerts, lingers briefly to fill a batch, and returns a copy of the head (nil when closed).
func (s *AMSink) next(ctx context.Context) []amclient.Alert {
	s.mu.Lock()
	for len(s.queue) == 0 && !s.closed {
		s.notEmpty.Wait()
	}
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	short := len(s.queue) < s.o.BatchSize
	s.mu.Unlock()
	if short && !sleep(ctx, s.o.Linger) {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := min(len(s.queue), s.o.BatchSize)
	return append([]amclient.Alert(nil), s.queue[:n]...)
}

func (s *AMSink) drop(n int) {
	s.mu.Lock()
	s.queue = append(s.queue[:0:0], s.queue[n:]...)
	s.o.Metrics.amQueue.Set(float64(len(s.queue)))
	s.notFull.Broadcast()
	s.mu.Unlock()
}

// resendLoop keeps firing conditions active in Alertmanager.
func (s *AMSink) resendLoop(ctx context.Context) {
	t := time.NewTicker(s.o.ResendInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		ends := s.o.now().UTC().Add(3 * s.o.ResendInterval)
		var out []amclient.Alert
		for id, a := range s.active {
			a.EndsAt = ends
			s.active[id] = a
			out = append(out, a)
		}
		room := s.o.QueueSize - len(s.queue)
		s.mu.Unlock()
		if len(out) > room { // never block on a refresh: the next tick tries again
			out = out[:max(room, 0)]
		}
		_ = s.Enqueue(ctx, out...)
	}
}

// nextBackoff doubles prev (starting at base) up to max and applies full jitter to the result's upper half.
func nextBackoff(prev, base, max time.Duration) time.Duration {
	d := prev * 2
	if d < base {
		d = base
	}
	if d > max {
		d = max
	}
	return d/2 + rand.N(d/2+1)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
