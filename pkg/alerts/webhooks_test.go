package alerts

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/netguard"
)

// receiver is a local HTTPS webhook receiver that verifies signatures like a tenant's would.
type receiver struct {
	srv    *httptest.Server
	tls    *tls.Config
	secret []byte

	mu       sync.Mutex
	got      []Payload
	raw      [][]byte
	badSigs  int
	unsigned int
}

func newReceiverB(b *testing.B, secret []byte) *receiver { return newReceiver(b, secret, nil) }

func newReceiver(t testing.TB, secret []byte, h http.HandlerFunc) *receiver {
	r := &receiver{secret: secret}
	mux := http.NewServeMux()
	mux.HandleFunc("/hook", func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(req.Body, 1<<20))
		r.mu.Lock()
		defer r.mu.Unlock()
		sig := req.Header.Get(HeaderSignature)
		switch {
		case sig == "":
			r.unsigned++
		case Verify(r.secret, req.Header.Get(HeaderTimestamp), sig, body, time.Now(), 5*time.Minute) != nil:
			r.badSigs++
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var p Payload
		_ = json.Unmarshal(body, &p)
		r.got = append(r.got, p)
		r.raw = append(r.raw, body)
		w.WriteHeader(http.StatusNoContent)
	})
	if h != nil {
		mux.HandleFunc("/hostile", h)
	}
	r.srv = httptest.NewTLSServer(mux)
	t.Cleanup(r.srv.Close)
	r.tls = &tls.Config{RootCAs: r.srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}
	return r
}

// stat reads one of the receiver's counters under its lock.
func (r *receiver) stat(p *int) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return *p
}

func (r *receiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

type fakeSecrets struct {
	mu   sync.Mutex
	keys map[string][]byte
}

func (f *fakeSecrets) set(name string, v []byte) {
	f.mu.Lock()
	f.keys[name] = v
	f.mu.Unlock()
}

func (f *fakeSecrets) SigningKey(_ context.Context, _ string, sel cmkv1.SecretKeySelector) ([]byte, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.keys[sel.Name]
	if !ok {
		return nil, "", errors.New("secret not found")
	}
	return v, string(v), nil
}

func whn(ns, name, tenant, url string, secret string, format cmkv1.NotificationFormat, events ...cmkv1.EventType) *cmkv1.WebHookNotification {
	w := &cmkv1.WebHookNotification{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(ns + "/" + name),
		Labels: map[string]string{cmkv1.TenantLabel: tenant}},
		Spec: cmkv1.WebHookNotificationSpec{URL: url, EventTypes: events, Format: format}}
	if secret != "" {
		w.Spec.SigningSecretRef = &cmkv1.SecretKeySelector{Name: secret, Key: "key"}
	}
	return w
}

func ev(id, reason, tenant string) *Event {
	return &Event{ID: id, Reason: reason, Tenant: tenant, Namespace: tenant + "-ns", Account: "main",
		Object: ObjectRef{Kind: "Account", Namespace: tenant + "-ns", Name: "main"}, Message: "m <!channel>", Time: time.Now()}
}

func testDispatcher(t *testing.T, tc *tls.Config, secrets SecretGetter, o WebhookOptions) (*Dispatcher, func() []string) {
	t.Helper()
	var mu sync.Mutex
	var dead []string
	if o.Client == nil {
		o.Client = netguard.NewClient(netguard.ClientOptions{TLSConfig: tc, AllowLoopback: true, MaxRedirects: -1, Timeout: 2 * time.Second, MaxResponseBytes: 64 << 10})
	}
	o.Secrets = secrets
	o.BaseBackoff, o.MaxBackoff = 10*time.Millisecond, 50*time.Millisecond
	if o.Attempts == 0 {
		o.Attempts = 3
	}
	o.Rate = 1000
	o.Burst = 1000
	next := o.DeadLetter
	o.DeadLetter = func(ctx context.Context, e *Event, nn types.NamespacedName, reason string) {
		mu.Lock()
		dead = append(dead, nn.Name+": "+reason)
		mu.Unlock()
		if next != nil {
			next(ctx, e, nn, reason)
		}
	}
	d := NewDispatcher(o)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go d.Run(ctx)
	return d, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), dead...)
	}
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSignedDeliveryOnlyToOwningTenant: signed deliveries in both formats reach the owning tenant's subscribed
// targets and nobody else's.
func TestSignedDeliveryOnlyToOwningTenant(t *testing.T) {
	secret := []byte("s3cret-signing-key")
	r := newReceiver(t, secret, nil)
	secrets := &fakeSecrets{keys: map[string][]byte{"sig": secret}}
	d, dead := testDispatcher(t, r.tls, secrets, WebhookOptions{})
	other := newReceiver(t, secret, nil)
	d.Upsert(whn("acme-ns", "json", "acme", r.srv.URL+"/hook", "sig", cmkv1.FormatJSON, cmkv1.EventKeyRotated, cmkv1.EventL1KeyUnreachable))
	d.Upsert(whn("acme-ns", "slack", "acme", r.srv.URL+"/hook", "sig", cmkv1.FormatSlack, cmkv1.EventKeyRotated))
	d.Upsert(whn("acme-ns", "unsubscribed", "acme", other.srv.URL+"/hook", "sig", cmkv1.FormatJSON, cmkv1.EventAccountReady))
	d.Upsert(whn("globex-ns", "globex", "globex", other.srv.URL+"/hook", "sig", cmkv1.FormatJSON, cmkv1.EventKeyRotated, cmkv1.EventL1KeyUnreachable))

	ctx := context.Background()
	d.Dispatch(ctx, ev("e1", ReasonKeyRotated, "acme"))
	d.Dispatch(ctx, ev("e2", ReasonL1KeyUnreachable, "acme"))
	d.Dispatch(ctx, ev("e3", ReasonL1KeyUnreachable, "")) // unattributed: nobody
	waitFor(t, "3 deliveries", 5*time.Second, func() bool { return r.count() == 3 })
	time.Sleep(100 * time.Millisecond)
	if other.count() != 0 || r.stat(&r.badSigs) != 0 || r.stat(&r.unsigned) != 0 || len(dead()) != 0 {
		t.Fatalf("other=%d badSigs=%d unsigned=%d dead=%v", other.count(), r.stat(&r.badSigs), r.stat(&r.unsigned), dead())
	}
	var slack int
	for _, raw := range r.raw {
		if strings.Contains(string(raw), `"blocks"`) {
			slack++
			if strings.Contains(string(raw), "<!channel>") {
				t.Errorf("Slack payload not escaped: %s", raw)
			}
		}
	}
	if slack != 1 {
		t.Errorf("%d Slack payloads, want 1", slack)
	}
	st, _ := d.State(types.NamespacedName{Namespace: "acme-ns", Name: "json"})
	if st.Delivered != 2 || st.LastSuccess.IsZero() || st.ConsecutiveFailures != 0 {
		t.Errorf("state %+v", st)
	}
}

// TestMissingOrRotatedSecret: a missing signing secret is reported and nothing is sent unsigned; a rotated secret
// is noticed and the next delivery is signed with the new key.
func TestMissingOrRotatedSecret(t *testing.T) {
	r := newReceiver(t, []byte("key-one"), nil)
	secrets := &fakeSecrets{keys: map[string][]byte{}}
	d, dead := testDispatcher(t, r.tls, secrets, WebhookOptions{Attempts: 2})
	nn := types.NamespacedName{Namespace: "acme-ns", Name: "h"}
	d.Upsert(whn("acme-ns", "h", "acme", r.srv.URL+"/hook", "sig", cmkv1.FormatJSON, cmkv1.EventKeyRotated))
	d.Dispatch(context.Background(), ev("e1", ReasonKeyRotated, "acme"))
	waitFor(t, "dead letter", 5*time.Second, func() bool { st, _ := d.State(nn); return st.DeadLettered == 1 })
	st, _ := d.State(nn)
	if r.count() != 0 || r.stat(&r.unsigned) != 0 || !strings.Contains(st.SecretProblem, "not sending unsigned") || len(dead()) != 1 {
		t.Fatalf("received=%d unsigned=%d state=%+v dead=%v", r.count(), r.stat(&r.unsigned), st, dead())
	}
	secrets.set("sig", []byte("key-one"))
	d.Dispatch(context.Background(), ev("e2", ReasonKeyRotated, "acme"))
	waitFor(t, "delivery", 5*time.Second, func() bool { return r.count() == 1 })
	secrets.set("sig", []byte("key-two"))
	r.mu.Lock()
	r.secret = []byte("key-two")
	r.mu.Unlock()
	d.Dispatch(context.Background(), ev("e3", ReasonKeyRotated, "acme"))
	waitFor(t, "delivery with rotated key", 5*time.Second, func() bool { return r.count() == 2 })
	st, _ = d.State(nn)
	if st.SecretProblem != "" || st.SecretRotatedAt.IsZero() || st.ConsecutiveFailures != 0 {
		t.Fatalf("state after rotation %+v", st)
	}
	w := whn("acme-ns", "h", "acme", "https://x.example.com", "sig", cmkv1.FormatJSON, cmkv1.EventKeyRotated)
	ApplyState(w, st)
	if c := findCond(w, ConditionSigningSecret); c == nil || c.Reason != "Rotated" {
		t.Errorf("conditions %+v", w.Status.Conditions)
	}
}

func findCond(w *cmkv1.WebHookNotification, typ string) *metav1.Condition {
	for i := range w.Status.Conditions {
		if w.Status.Conditions[i].Type == typ {
			return &w.Status.Conditions[i]
		}
	}
	return nil
}

// TestHostileReceivers: hanging, failing, huge and redirecting receivers cost bounded time and end in a recorded
// failure.
func TestHostileReceivers(t *testing.T) {
	for name, h := range map[string]http.HandlerFunc{
		// Reading the body lets the server notice the client hanging up (and end the handler).
		"hang": func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body); <-r.Context().Done() },
		"500":  func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) },
		"huge": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "3221225472")
			w.WriteHeader(200)
			buf := make([]byte, 64<<10)
			for i := 0; i < 1<<10; i++ {
				if _, err := w.Write(buf); err != nil {
					return
				}
			}
		},
		"hugechunked": func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(200)
			buf := make([]byte, 64<<10)
			for i := 0; i < 1<<14; i++ {
				if _, err := w.Write(buf); err != nil {
					return
				}
			}
		},
		"redirectloop": func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/hostile", http.StatusTemporaryRedirect)
		},
	} {
		t.Run(name, func(t *testing.T) {
			r := newReceiver(t, nil, h)
			d, dead := testDispatcher(t, r.tls, nil, WebhookOptions{Client: netguard.NewClient(netguard.ClientOptions{
				TLSConfig: r.tls, AllowLoopback: true, MaxRedirects: -1, Timeout: 300 * time.Millisecond, MaxResponseBytes: 64 << 10})})
			nn := types.NamespacedName{Namespace: "acme-ns", Name: "h"}
			d.Upsert(whn("acme-ns", "h", "acme", r.srv.URL+"/hostile", "", cmkv1.FormatJSON, cmkv1.EventKeyRotated))
			start := time.Now()
			d.Dispatch(context.Background(), ev("e1", ReasonKeyRotated, "acme"))
			waitFor(t, "recorded failure", 10*time.Second, func() bool { st, _ := d.State(nn); return st.DeadLettered == 1 || st.Delivered == 1 })
			st, _ := d.State(nn)
			t.Logf("%s: %v, reason %q", name, time.Since(start), st.LastFailureReason)
			if st.DeadLettered != 1 || st.LastFailureReason == "" || st.ConsecutiveFailures != 1 || len(dead()) != 1 {
				t.Fatalf("state %+v dead %v", st, dead())
			}
		})
	}
}

// TestSSRFThroughWebHookNotification: a target whose public-looking name resolves to loopback, or that redirects
// to an internal address, is refused at dial time and recorded as a failure, with no retry.
func TestSSRFThroughWebHookNotification(t *testing.T) {
	var hits int
	var mu sync.Mutex
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits++
		mu.Unlock()
		http.Redirect(w, r, "https://169.254.169.254/latest/meta-data/", http.StatusFound)
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	tc := &tls.Config{RootCAs: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}
	rebind := fakeResolver{"hooks.rebind.example.com.": {netip.MustParseAddr("127.0.0.1")}}
	// Production settings: no loopback allowance.
	d, dead := testDispatcher(t, tc, nil, WebhookOptions{Client: netguard.NewClient(netguard.ClientOptions{TLSConfig: tc, Resolver: rebind, MaxRedirects: -1})})
	for name, u := range map[string]string{
		"rebind":   "https://hooks.rebind.example.com:" + port + "/hook",
		"loopback": srv.URL + "/hook",
		"cluster":  "https://kubernetes.default/hook",
	} {
		d.Upsert(whn("acme-ns", name, "acme", u, "", cmkv1.FormatJSON, cmkv1.EventKeyRotated))
	}
	d.Dispatch(context.Background(), ev("e1", ReasonKeyRotated, "acme"))
	waitFor(t, "three refusals", 5*time.Second, func() bool { return len(dead()) == 3 })
	for _, r := range dead() {
		if !strings.Contains(r, "outbound address policy") {
			t.Errorf("reason %q", r)
		}
	}
	// Redirects are never followed, not even to a public address: the receiver itself is reached (loopback allowed
	// for the test) but its redirect to the metadata address is not.
	d2, dead2 := testDispatcher(t, tc, nil, WebhookOptions{})
	d2.Upsert(whn("acme-ns", "redirect", "acme", srv.URL+"/hook", "", cmkv1.FormatJSON, cmkv1.EventKeyRotated))
	d2.Dispatch(context.Background(), ev("e2", ReasonKeyRotated, "acme"))
	waitFor(t, "redirect refusal", 5*time.Second, func() bool { return len(dead2()) == 1 })
	mu.Lock()
	defer mu.Unlock()
	if hits != 1 || !strings.Contains(dead2()[0], "302") {
		t.Errorf("hits=%d dead=%v", hits, dead2())
	}
}

type fakeResolver map[string][]netip.Addr

func (f fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := f[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// TestQueueFullDeadLetters: a target whose receiver is slow fills its bounded queue; further events for it are
// dead-lettered after EnqueueWait instead of stalling everyone.
func TestQueueFullDeadLetters(t *testing.T) {
	block := make(chan struct{})
	r := newReceiver(t, nil, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		select {
		case <-block:
		case <-r.Context().Done():
		}
	})
	defer close(block)
	d, dead := testDispatcher(t, r.tls, nil, WebhookOptions{QueuePerTarget: 2, Concurrency: 1, EnqueueWait: 20 * time.Millisecond, Attempts: 1})
	d.Upsert(whn("acme-ns", "slow", "acme", r.srv.URL+"/hostile", "", cmkv1.FormatJSON, cmkv1.EventKeyRotated))
	start := time.Now()
	for i := range 6 {
		d.Dispatch(context.Background(), ev("e"+string(rune('0'+i)), ReasonKeyRotated, "acme"))
	}
	if time.Since(start) > time.Second {
		t.Fatalf("dispatch stalled for %v", time.Since(start))
	}
	if len(dead()) < 3 || !strings.Contains(dead()[0], "queue") {
		t.Fatalf("dead letters %v", dead())
	}
}

func TestSignVerify(t *testing.T) {
	body := []byte(`{"a":1}`)
	now := time.Unix(1700000000, 0)
	ts, sig := Sign([]byte("k"), now, body)
	if err := Verify([]byte("k"), ts, sig, body, now, time.Minute); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]func() error{
		"wrong key": func() error { return Verify([]byte("x"), ts, sig, body, now, time.Minute) },
		"tampered":  func() error { return Verify([]byte("k"), ts, sig, []byte(`{"a":2}`), now, time.Minute) },
		"old":       func() error { return Verify([]byte("k"), ts, sig, body, now.Add(time.Hour), time.Minute) },
		"bad prefix": func() error {
			return Verify([]byte("k"), ts, strings.TrimPrefix(sig, "sha256="), body, now, time.Minute)
		},
		"bad ts": func() error { return Verify([]byte("k"), "x", sig, body, now, time.Minute) },
	} {
		if c() == nil {
			t.Errorf("%s: verified", name)
		}
	}
}

func FuzzVerify(f *testing.F) {
	f.Add("1700000000", "sha256=00", []byte("{}"))
	f.Fuzz(func(t *testing.T, ts, sig string, body []byte) {
		now := time.Unix(1700000000, 0)
		if Verify([]byte("k"), ts, sig, body, now, time.Hour) == nil {
			// Only a genuine signature may verify.
			if _, want := Sign([]byte("k"), mustUnix(ts), body); want != strings.ToLower(sig) {
				t.Fatalf("forged signature verified: %q %q", ts, sig)
			}
		}
	})
}

func mustUnix(s string) time.Time {
	sec, _ := strconv.ParseInt(s, 10, 64)
	return time.Unix(sec, 0)
}

func FuzzBody(f *testing.F) {
	f.Add("KeyRotated", "acme", "m <b>&", true)
	f.Fuzz(func(t *testing.T, reason, tenant, msg string, slack bool) {
		e := &Event{ID: "x", Reason: reason, Tenant: tenant, Object: ObjectRef{Kind: "Account", Name: "a"}, Message: msg, Time: time.Unix(1, 0)}
		if e.Validate() != nil {
			return
		}
		format := cmkv1.FormatJSON
		if slack {
			format = cmkv1.FormatSlack
		}
		b, err := Body(format, e)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("payload is not JSON: %v", err)
		}
		if slack && strings.ContainsAny(m["text"].(string), "<>") {
			t.Fatalf("unescaped Slack text %q", m["text"])
		}
	})
}

// TestStateContinuesFromStatus: a target loaded after a restart continues its counters and failure streak.
func TestStateContinuesFromStatus(t *testing.T) {
	d := NewDispatcher(WebhookOptions{})
	w := whn("acme-ns", "h", "acme", "https://hooks.example.com/x", "", cmkv1.FormatJSON, cmkv1.EventKeyRotated)
	ts := metav1.NewTime(time.Unix(1700000000, 0))
	w.Status = cmkv1.WebHookNotificationStatus{Delivered: 7, DeadLettered: 2, ConsecutiveFailures: 2, LastFailureTime: &ts, LastFailureReason: "receiver answered 500"}
	d.Upsert(w)
	st, ok := d.State(types.NamespacedName{Namespace: "acme-ns", Name: "h"})
	if !ok || st.Delivered != 7 || st.DeadLettered != 2 || st.ConsecutiveFailures != 2 || !st.LastFailure.Equal(ts.Time) {
		t.Fatalf("state %+v", st)
	}
}
