package alerts

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/time/rate"
	"k8s.io/apimachinery/pkg/types"

	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/netguard"
)

// SecretGetter reads a signing key. version changes when the Secret changes (rotation).
type SecretGetter interface {
	SigningKey(ctx context.Context, namespace string, sel cmkv1.SecretKeySelector) (key []byte, version string, err error)
}

// StatusWriter persists a target's delivery state on its WebHookNotification status.
type StatusWriter interface {
	WriteStatus(ctx context.Context, target types.NamespacedName, uid types.UID, st DeliveryState) error
}

// DeliveryState is what the handler knows about one target's deliveries.
type DeliveryState struct {
	LastSuccess         time.Time
	LastFailure         time.Time
	LastFailureReason   string
	ConsecutiveFailures int32
	Delivered           int64
	DeadLettered        int64
	// SecretProblem is set while the signing Secret is missing or lacks the key; SecretRotatedAt when its content
	// changed while the handler was running.
	SecretProblem   string
	SecretRotatedAt time.Time
	secretVersion   string
}

// WebhookOptions configures the Dispatcher.
type WebhookOptions struct {
	// Client sends the requests; it must come from netguard.NewClient (HTTPS only, addresses checked at dial
	// time, redirects not followed). Required.
	Client *http.Client
	// Secrets reads signing keys. Required when a target names a signing secret.
	Secrets SecretGetter
	// Status persists delivery state (nil: kept in memory only).
	Status StatusWriter
	// DeadLetter is told about every delivery dropped after its last attempt (the handler raises an alert).
	DeadLetter func(ctx context.Context, e *Event, target types.NamespacedName, reason string)
	// QueuePerTarget bounds deliveries waiting per target (default 256).
	QueuePerTarget int
	// Concurrency is the number of deliveries in flight per target (default 2).
	Concurrency int
	// Rate and Burst cap requests per second per target (default 5 and 10).
	Rate  float64
	Burst int
	// Attempts per delivery before it is dead-lettered (default 5).
	Attempts int
	// BaseBackoff and MaxBackoff shape the exponential backoff with jitter between attempts (default 1 s, 60 s).
	BaseBackoff, MaxBackoff time.Duration
	// EnqueueWait is how long an event waits for room in a full target queue before it is dead-lettered for that
	// target; a slow tenant receiver never stalls other tenants (default 1 s).
	EnqueueWait time.Duration
	// StatusInterval coalesces status writes per target (default 2 s).
	StatusInterval time.Duration
	Log            logr.Logger
	Metrics        *Metrics
}

// Dispatcher delivers events to tenants' WebHookNotification targets.
type Dispatcher struct {
	o       WebhookOptions
	mu      sync.Mutex
	targets map[types.NamespacedName]*target
	runCtx  context.Context
	pending atomic.Int64
}

type targetSpec struct {
	uid    types.UID
	tenant string
	url    string
	events []cmkv1.EventType
	format cmkv1.NotificationFormat
	secret *cmkv1.SecretKeySelector
}

type target struct {
	nn      types.NamespacedName
	spec    atomic.Pointer[targetSpec]
	queue   chan *Event
	limiter *rate.Limiter
	cancel  context.CancelFunc

	mu    sync.Mutex
	state DeliveryState
	dirty bool
}

// NewDispatcher applies defaults.
func NewDispatcher(o WebhookOptions) *Dispatcher {
	if o.QueuePerTarget <= 0 {
		o.QueuePerTarget = 256
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 2
	}
	if o.Rate <= 0 {
		o.Rate = 5
	}
	if o.Burst <= 0 {
		o.Burst = 10
	}
	if o.Attempts <= 0 {
		o.Attempts = 5
	}
	if o.BaseBackoff <= 0 {
		o.BaseBackoff = time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = time.Minute
	}
	if o.EnqueueWait <= 0 {
		o.EnqueueWait = time.Second
	}
	if o.StatusInterval <= 0 {
		o.StatusInterval = 2 * time.Second
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	return &Dispatcher{o: o, targets: map[types.NamespacedName]*target{}}
}

// Upsert loads or updates a target from its object; a new UID (deleted and re-created) starts afresh.
func (d *Dispatcher) Upsert(w *cmkv1.WebHookNotification) {
	nn := types.NamespacedName{Namespace: w.Namespace, Name: w.Name}
	spec := &targetSpec{uid: w.UID, tenant: w.Labels[cmkv1.TenantLabel], url: w.Spec.URL, events: slices.Clone(w.Spec.EventTypes),
		format: w.Spec.Format}
	if w.Spec.SigningSecretRef != nil {
		s := *w.Spec.SigningSecretRef
		spec.secret = &s
	}
	if spec.format == "" {
		spec.format = cmkv1.FormatJSON
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if t, ok := d.targets[nn]; ok {
		if t.spec.Load().uid == w.UID {
			t.spec.Store(spec)
			return
		}
		t.cancel()
		delete(d.targets, nn)
	}
	t := &target{nn: nn, queue: make(chan *Event, d.o.QueuePerTarget), limiter: rate.NewLimiter(rate.Limit(d.o.Rate), d.o.Burst)}
	t.spec.Store(spec)
	// Continue from the recorded state, so counters and the failure streak survive a restart of the handler.
	st := &w.Status
	t.state = DeliveryState{LastFailureReason: st.LastFailureReason, ConsecutiveFailures: st.ConsecutiveFailures,
		Delivered: st.Delivered, DeadLettered: st.DeadLettered}
	if st.LastSuccessTime != nil {
		t.state.LastSuccess = st.LastSuccessTime.Time
	}
	if st.LastFailureTime != nil {
		t.state.LastFailure = st.LastFailureTime.Time
	}
	d.targets[nn] = t
	d.o.Metrics.whTargets.Set(float64(len(d.targets)))
	if d.runCtx != nil {
		d.start(t)
	}
}

// Delete forgets a target; its queued deliveries are abandoned (the tenant removed it).
func (d *Dispatcher) Delete(nn types.NamespacedName) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if t, ok := d.targets[nn]; ok {
		if t.cancel != nil {
			t.cancel()
		}
		delete(d.targets, nn)
	}
	d.o.Metrics.whTargets.Set(float64(len(d.targets)))
}

func (d *Dispatcher) start(t *target) {
	ctx, cancel := context.WithCancel(d.runCtx)
	t.cancel = cancel
	for range d.o.Concurrency {
		go d.worker(ctx, t)
	}
}

// Run starts the workers and the status writer and blocks until ctx ends.
func (d *Dispatcher) Run(ctx context.Context) error {
	d.mu.Lock()
	d.runCtx = ctx
	for _, t := range d.targets {
		d.start(t)
	}
	d.mu.Unlock()
	tick := time.NewTicker(d.o.StatusInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			// Last write with a short budget so the final state is not lost on a clean shutdown.
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			d.FlushStatus(fctx)
			cancel()
			return nil
		case <-tick.C:
			d.FlushStatus(ctx)
		}
	}
}

// Pending is the number of deliveries queued or in flight.
func (d *Dispatcher) Pending() int64 { return d.pending.Load() }

// Dispatch queues e for every matching target of the event's tenant. It never sends to another tenant's target,
// and an event without a tenant goes nowhere.
func (d *Dispatcher) Dispatch(ctx context.Context, e *Event) {
	typ := e.Rule().WebhookType
	if e.Tenant == "" || typ == "" {
		return
	}
	d.mu.Lock()
	var match []*target
	for _, t := range d.targets {
		s := t.spec.Load()
		if s.tenant == e.Tenant && slices.Contains(s.events, typ) {
			match = append(match, t)
		}
	}
	d.mu.Unlock()
	for _, t := range match {
		d.pending.Add(1)
		d.o.Metrics.whQueue.Inc()
		select {
		case t.queue <- e:
			continue
		default:
		}
		timer := time.NewTimer(d.o.EnqueueWait)
		select {
		case t.queue <- e:
		case <-timer.C:
			d.done()
			d.o.Metrics.whResults.WithLabelValues("queue_full").Inc()
			d.deadLetter(ctx, t, e, fmt.Sprintf("delivery queue of %d events is full", d.o.QueuePerTarget))
		case <-ctx.Done():
			d.done()
		}
		timer.Stop()
	}
}

func (d *Dispatcher) done() {
	d.pending.Add(-1)
	d.o.Metrics.whQueue.Dec()
}

func (d *Dispatcher) worker(ctx context.Context, t *target) {
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-t.queue:
			d.deliver(ctx, t, e)
			d.done()
		}
	}
}

// deliver makes up to Attempts attempts, then records the outcome.
func (d *Dispatcher) deliver(ctx context.Context, t *target, e *Event) {
	var reason string
	backoff := time.Duration(0)
	for attempt := 1; attempt <= d.o.Attempts; attempt++ {
		if attempt > 1 {
			backoff = nextBackoff(backoff, d.o.BaseBackoff, d.o.MaxBackoff)
			if !sleep(ctx, backoff) {
				return
			}
		}
		if err := t.limiter.Wait(ctx); err != nil {
			return
		}
		start := time.Now()
		err, retry := d.attempt(ctx, t, e)
		d.o.Metrics.whDuration.Observe(time.Since(start).Seconds())
		if err == nil {
			d.o.Metrics.whResults.WithLabelValues("delivered").Inc()
			t.update(func(s *DeliveryState) {
				s.LastSuccess = time.Now()
				s.ConsecutiveFailures = 0
				s.Delivered++
			})
			return
		}
		if ctx.Err() != nil {
			return
		}
		reason = err.Error()
		if !retry {
			break
		}
		d.o.Metrics.whResults.WithLabelValues("retried").Inc()
	}
	d.o.Metrics.whResults.WithLabelValues("dead_letter").Inc()
	d.deadLetter(ctx, t, e, reason)
}

func (d *Dispatcher) deadLetter(ctx context.Context, t *target, e *Event, reason string) {
	reason = truncateUTF8(reason, 1000)
	t.update(func(s *DeliveryState) {
		s.LastFailure = time.Now()
		s.LastFailureReason = reason
		s.ConsecutiveFailures++
		s.DeadLettered++
	})
	d.o.Log.Info("tenant webhook delivery dead-lettered", "webhook", t.nn.String(), "event", e.ID, "reason", reason)
	if d.o.DeadLetter != nil {
		d.o.DeadLetter(ctx, e, t.nn, reason)
	}
}

func (t *target) update(f func(*DeliveryState)) {
	t.mu.Lock()
	f(&t.state)
	t.dirty = true
	t.mu.Unlock()
}

// State returns a target's delivery state (tests, status).
func (d *Dispatcher) State(nn types.NamespacedName) (DeliveryState, bool) {
	d.mu.Lock()
	t, ok := d.targets[nn]
	d.mu.Unlock()
	if !ok {
		return DeliveryState{}, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.state, true
}

// attempt sends once; retry tells whether another attempt can help.
func (d *Dispatcher) attempt(ctx context.Context, t *target, e *Event) (err error, retry bool) {
	spec := t.spec.Load()
	body, err := Body(spec.format, e)
	if err != nil {
		return fmt.Errorf("encoding payload: %w", err), false
	}
	var key []byte
	if spec.secret != nil {
		if d.o.Secrets == nil {
			return errors.New("no signing secret reader configured; not sending unsigned"), false
		}
		k, version, err := d.o.Secrets.SigningKey(ctx, t.nn.Namespace, *spec.secret)
		if err != nil {
			msg := fmt.Sprintf("signing secret %q key %q unusable (%v); not sending unsigned", spec.secret.Name, spec.secret.Key, err)
			t.update(func(s *DeliveryState) { s.SecretProblem = msg })
			return errors.New(msg), true
		}
		t.update(func(s *DeliveryState) {
			s.SecretProblem = ""
			if s.secretVersion != "" && s.secretVersion != version {
				s.SecretRotatedAt = time.Now()
			}
			s.secretVersion = version
		})
		key = k
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, spec.url, bytes.NewReader(body))
	if err != nil {
		return errors.New("invalid webhook URL"), false
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "apeiro-cmk-alerts/1")
	req.Header.Set(HeaderDelivery, e.ID)
	req.Header.Set(HeaderEvent, string(e.Rule().WebhookType))
	if key != nil {
		ts, sig := Sign(key, time.Now(), body)
		req.Header.Set(HeaderTimestamp, ts)
		req.Header.Set(HeaderSignature, sig)
	}
	resp, err := d.o.Client.Do(req)
	if err != nil {
		return describe(err)
	}
	// Drain the answer so a keep-alive connection can be reused. The client stops at its response limit: a
	// receiver answering with more than that (or declaring more) is misbehaving and the delivery fails, whatever
	// its status code, so "3 GB" costs at most the limit in reading.
	_, rerr := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if errors.Is(rerr, netguard.ErrResponseTooLarge) {
		return errors.New("response body too large"), false
	}
	switch c := resp.StatusCode; {
	case c >= 200 && c < 300:
		return nil, false
	case c >= 300 && c < 400:
		return fmt.Errorf("receiver answered %d (redirects are not followed)", c), false
	case c == http.StatusRequestTimeout || c == http.StatusTooManyRequests || c >= 500:
		return fmt.Errorf("receiver answered %d", c), true
	default:
		return fmt.Errorf("receiver answered %d", c), false
	}
}

// describe turns a client error into a reason without the URL (webhook URLs often carry tokens in their path).
func describe(err error) (error, bool) {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var ne *netguard.Error
	switch {
	case errors.As(err, &ne), errors.Is(err, netguard.ErrBlockedAddress):
		return fmt.Errorf("refused by the outbound address policy: %v", err), false
	case errors.Is(err, netguard.ErrResponseTooLarge):
		return errors.New("response body too large"), false
	case errors.Is(err, context.DeadlineExceeded):
		return errors.New("timed out"), true
	}
	var nerr net.Error
	if errors.As(err, &nerr) && nerr.Timeout() {
		return errors.New("timed out"), true
	}
	return fmt.Errorf("request failed: %v", err), true
}

// FlushStatus writes the state of every target that changed since the last write.
func (d *Dispatcher) FlushStatus(ctx context.Context) {
	if d.o.Status == nil {
		return
	}
	d.mu.Lock()
	ts := make([]*target, 0, len(d.targets))
	for _, t := range d.targets {
		ts = append(ts, t)
	}
	d.mu.Unlock()
	for _, t := range ts {
		t.mu.Lock()
		if !t.dirty {
			t.mu.Unlock()
			continue
		}
		st := t.state
		t.dirty = false
		t.mu.Unlock()
		if err := d.o.Status.WriteStatus(ctx, t.nn, t.spec.Load().uid, st); err != nil {
			d.o.Log.V(1).Info("writing webhook status failed; will retry", "webhook", t.nn.String(), "error", err.Error())
			t.mu.Lock()
			t.dirty = true
			t.mu.Unlock()
		}
	}
}
