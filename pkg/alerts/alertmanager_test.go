package alerts

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"

	amtest "github.com/apeirora/apeiro-cmk/internal/testpeers/alertmanager"
	"github.com/apeirora/apeiro-cmk/pkg/alerts/amclient"
	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
)

func amSink(t *testing.T, url string, o AMOptions) (*AMSink, *amclient.Client) {
	t.Helper()
	c, err := amclient.New(amclient.Options{URL: url, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	o.Poster = c
	o.Log = testr.New(t)
	o.MaxBackoff = 500 * time.Millisecond
	s := NewAMSink(o)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go s.Run(ctx)
	return s, c
}

func activeAlerts(t *testing.T, c *amclient.Client, filters ...string) []amclient.Gettable {
	t.Helper()
	got, err := c.GetAlerts(context.Background(), filters...)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestAlertmanagerFiresAndResolves: against a real Alertmanager, an unreachable L1 key fires a critical alert with
// tenant/account/severity labels, startsAt/endsAt and a generatorURL, delivered to Alertmanager's receiver; the
// Account becoming ready resolves it. A dead-lettered tenant delivery raises its own alert.
func TestAlertmanagerFiresAndResolves(t *testing.T) {
	am := amtest.Start(t)
	sink, c := amSink(t, am.URL, AMOptions{ResendInterval: time.Second, Linger: 20 * time.Millisecond})
	failing := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) }))
	defer failing.Close()
	h := &Handler{AM: sink, Log: testr.New(t)}
	d, _ := testDispatcher(t, tlsOf(failing), nil, WebhookOptions{Attempts: 2, DeadLetter: h.DeadLetter})
	h.Webhooks = d
	d.Upsert(whn("acme-ns", "broken", "acme", failing.URL, "", cmkv1.FormatJSON, cmkv1.EventL1KeyUnreachable))

	ctx := context.Background()
	down := &Event{ID: "u1", Reason: ReasonL1KeyUnreachable, Tenant: "acme", Namespace: "acme-ns", Account: "main",
		Object: ObjectRef{Kind: "Account", Namespace: "acme-ns", Name: "main"}, Message: "L1 key stopped answering", Time: time.Now()}
	if err := h.Handle(ctx, down); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "firing alert in alertmanager", 20*time.Second, func() bool {
		return len(activeAlerts(t, c, `alertname="L1KeyUnreachable"`, `tenant="acme"`)) == 1
	})
	a := activeAlerts(t, c, `alertname="L1KeyUnreachable"`)[0]
	if a.Labels["severity"] != "critical" || a.Labels["account"] != "main" || a.Labels["namespace"] != "acme-ns" ||
		a.GeneratorURL != "https://kubernetes.default.svc/apis/cmk.apeiro.io/v1alpha1/namespaces/acme-ns/accounts/main" ||
		a.StartsAt.IsZero() || !a.EndsAt.After(a.StartsAt) {
		t.Errorf("alert %+v", a)
	}
	am.WaitReceived(ctx, t, 20*time.Second, "firing", func(l map[string]string) bool { return l["alertname"] == "L1KeyUnreachable" })
	// The resend keeps it firing beyond its first endsAt (3 s).
	time.Sleep(4 * time.Second)
	if len(activeAlerts(t, c, `alertname="L1KeyUnreachable"`)) != 1 {
		t.Fatal("condition expired although it still holds")
	}
	// The tenant's broken webhook got the event, failed twice and was dead-lettered with an alert.
	waitFor(t, "dead-letter alert", 20*time.Second, func() bool {
		return len(activeAlerts(t, c, `alertname="WebHookDeliveryFailed"`, `tenant="acme"`, `name="broken"`)) == 1
	})

	up := *down
	up.ID, up.Reason, up.Message, up.Time = "r1", ReasonAccountReady, "L1 key answers again", time.Now()
	if err := h.Handle(ctx, &up); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "resolved", 20*time.Second, func() bool {
		return len(activeAlerts(t, c, `alertname="L1KeyUnreachable"`)) == 0
	})
	am.WaitReceived(ctx, t, 20*time.Second, "resolved", func(l map[string]string) bool { return l["alertname"] == "L1KeyUnreachable" })
	// An older event arriving late (e.g. replayed after a restart) does not re-open the condition.
	if err := h.Handle(ctx, down); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if n := len(activeAlerts(t, c, `alertname="L1KeyUnreachable"`)); n != 0 {
		t.Fatalf("stale event re-opened the condition (%d active)", n)
	}
}

func tlsOf(s *httptest.Server) *tls.Config {
	return &tls.Config{RootCAs: s.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}
}

// TestAlertmanagerOutageDuringBurst: Alertmanager goes down during a burst; every event is delivered after it
// comes back, because the queue holds them (it is larger than the burst) and the sender retries with backoff.
func TestAlertmanagerOutageDuringBurst(t *testing.T) {
	am := amtest.Start(t)
	const burst = 600
	sink, c := amSink(t, am.URL, AMOptions{QueueSize: 1000, BatchSize: 100})
	h := &Handler{AM: sink}
	ctx := context.Background()
	send := func(from, to int) {
		for i := from; i < to; i++ {
			e := &Event{ID: fmt.Sprint("b", i), Reason: ReasonKeyRotated, Tenant: "acme", Namespace: "acme-ns", Account: "main",
				Key: fmt.Sprint("key-", i), Object: ObjectRef{Kind: "ServiceEncryptionKey", Namespace: "acme-ns", Name: fmt.Sprint("key-", i)}, Time: time.Now()}
			if err := h.Handle(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
	}
	send(0, burst/3)
	waitFor(t, "first part delivered", 30*time.Second, func() bool { return receivedKeys(am) == burst/3 })
	am.Stop()
	send(burst/3, burst)
	time.Sleep(2 * time.Second) // several failed posts
	if sink.Pending() == 0 {
		t.Fatal("nothing pending during the outage")
	}
	am.Restart()
	waitFor(t, "queue drained", 60*time.Second, func() bool { return sink.Pending() == 0 })
	// Alertmanager keeps alerts in memory only, so after its restart it lists what was queued during the outage;
	// its receiver has been handed every one of the burst.
	waitFor(t, "every outage alert listed", 20*time.Second, func() bool {
		return len(activeAlerts(t, c, `alertname="KeyRotated"`)) == burst-burst/3
	})
	waitFor(t, "every alert delivered to the receiver", 60*time.Second, func() bool { return receivedKeys(am) == burst })
}

func receivedKeys(am *amtest.Server) int {
	keys := map[string]bool{}
	for _, n := range am.Received() {
		for _, a := range n.Alerts {
			if a.Labels["alertname"] == "KeyRotated" {
				keys[a.Labels["key"]] = true
			}
		}
	}
	return len(keys)
}

// TestQueueBackpressure: with Alertmanager unreachable, a full queue blocks Handle until the caller gives up,
// and nothing already queued is lost.
func TestQueueBackpressure(t *testing.T) {
	var posts atomic.Int32
	s := NewAMSink(AMOptions{QueueSize: 5, Linger: time.Millisecond, MaxBackoff: 50 * time.Millisecond, Poster: posterFunc(func(context.Context, []amclient.Alert) error {
		posts.Add(1)
		return errors.New("connection refused")
	})})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	for i := range 5 {
		if err := s.Enqueue(ctx, amclient.Alert{Labels: map[string]string{"i": fmt.Sprint(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	short, c2 := context.WithTimeout(ctx, 100*time.Millisecond)
	defer c2()
	if err := s.Enqueue(short, amclient.Alert{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("full queue: %v", err)
	}
	if s.Pending() != 5 || posts.Load() == 0 {
		t.Fatalf("pending %d posts %d", s.Pending(), posts.Load())
	}
}

type posterFunc func(context.Context, []amclient.Alert) error

func (f posterFunc) PostAlerts(ctx context.Context, a []amclient.Alert) error { return f(ctx, a) }
