package alerts

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	amtest "github.com/apeirora/apeiro-cmk/internal/testpeers/alertmanager"
	"github.com/apeirora/apeiro-cmk/pkg/alerts/amclient"
	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/netguard"
)

func benchEvent(i int) *Event {
	return &Event{ID: fmt.Sprint("bench-", i), Reason: ReasonKeyRotated, Tenant: "acme", Namespace: "acme-ns", Account: "main",
		Key: fmt.Sprint("key-", i), Object: ObjectRef{Kind: "ServiceEncryptionKey", Namespace: "acme-ns", Name: fmt.Sprint("key-", i)},
		Message: "key material re-wrapped under L1 key \"l1\" version \"2\" (was \"1\")", Time: time.Now()}
}

// BenchmarkAlertmanagerThroughput: events per second from Handle to a real Alertmanager's acceptance (batched).
func BenchmarkAlertmanagerThroughput(b *testing.B) {
	am := amtest.Start(b)
	c, _ := amclient.New(amclient.Options{URL: am.URL})
	s := NewAMSink(AMOptions{Poster: c, QueueSize: 100000, Linger: 5 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	h := &Handler{AM: s}
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if err := h.Handle(ctx, benchEvent(i)); err != nil {
			b.Fatal(err)
		}
	}
	for s.Pending() > 0 {
		time.Sleep(time.Millisecond)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
}

// BenchmarkWebhookThroughput: signed JSON deliveries per second to one local HTTPS receiver (rate cap lifted,
// concurrency 8).
func BenchmarkWebhookThroughput(b *testing.B) {
	secret := []byte("k")
	r := newReceiverB(b, secret)
	d := NewDispatcher(WebhookOptions{
		Client:  netguard.NewClient(netguard.ClientOptions{TLSConfig: r.tls, AllowLoopback: true, MaxRedirects: -1}),
		Secrets: &fakeSecrets{keys: map[string][]byte{"sig": secret}}, Rate: 1e9, Burst: 1 << 20, Concurrency: 8, QueuePerTarget: 1 << 16,
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.Run(ctx)
	d.Upsert(whn("acme-ns", "h", "acme", r.srv.URL+"/hook", "sig", cmkv1.FormatJSON, cmkv1.EventKeyRotated))
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		d.Dispatch(ctx, benchEvent(i))
	}
	for d.Pending() > 0 {
		time.Sleep(time.Millisecond)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
	if r.stat(&r.badSigs) != 0 {
		b.Fatal("bad signatures")
	}
}

// BenchmarkQueueMemory reports the heap held per pending event: Alertmanager queue entries (the alert with its
// labels and annotations) and tenant webhook queue entries (the event, shared by every target it goes to).
func BenchmarkQueueMemory(b *testing.B) {
	const n = 10000
	for _, kind := range []string{"alertmanager", "webhook"} {
		b.Run(kind, func(b *testing.B) {
			for range b.N {
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				var keep any
				switch kind {
				case "alertmanager":
					s := NewAMSink(AMOptions{QueueSize: n, Poster: posterFunc(func(context.Context, []amclient.Alert) error { return nil })})
					for i := range n {
						if err := s.Handle(context.Background(), benchEvent(i)); err != nil {
							b.Fatal(err)
						}
					}
					keep = s
				case "webhook":
					q := make(chan *Event, n)
					for i := range n {
						q <- benchEvent(i)
					}
					keep = q
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "bytes/event")
				runtime.KeepAlive(keep)
			}
		})
	}
}
