package admission_test

// In-process latency under concurrency: 64 goroutines (SetParallelism 32 × GOMAXPROCS 2 on the project's machines)
// post AdmissionReviews through the whole chain Register builds (limits, decode, checks, encode) with an httptest
// recorder, and each request's latency is recorded; p50/p99 are reported beside ns/op. The same for a bare
// controller-runtime admission.Webhook that allows everything. Run:
//
//	go test -run '^$' -bench 'Parallel64' -benchtime 20000x ./pkg/admission/

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	crwebhook "sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/apeirora/apeiro-cmk/pkg/admission"
	"github.com/apeirora/apeiro-cmk/pkg/admission/admissiontest"
)

func benchParallel(b *testing.B, h http.Handler, path string, body []byte) {
	b.Helper()
	if rec := admissiontest.Post(h, path, body); rec.Code != http.StatusOK {
		b.Fatalf("HTTP %d: %s", rec.Code, rec.Body)
	}
	var mu sync.Mutex
	var all []time.Duration
	b.SetParallelism(32)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		local := make([]time.Duration, 0, 1024)
		for pb.Next() {
			start := time.Now()
			_ = admissiontest.Post(h, path, body)
			local = append(local, time.Since(start))
		}
		mu.Lock()
		all = append(all, local...)
		mu.Unlock()
	})
	b.StopTimer()
	slices.Sort(all)
	if len(all) > 0 {
		q := func(p float64) float64 { return float64(all[int(p*float64(len(all)-1))].Microseconds()) }
		b.ReportMetric(q(0.50), "p50-µs")
		b.ReportMetric(q(0.99), "p99-µs")
	}
}

func BenchmarkHTTPRegisterServiceEncryptionKey100kParallel64(b *testing.B) {
	mux := http.NewServeMux()
	admission.Register(admissiontest.MuxRegistrar{ServeMux: mux}, bigHandlers(b), admission.Limits{})
	benchParallel(b, mux, admission.PathValidateServiceEncryption, bigKeyReq().Body())
}

func BenchmarkHTTPBaselineAllowedParallel64(b *testing.B) {
	mux := http.NewServeMux()
	mux.Handle(admission.PathValidateServiceEncryption, &crwebhook.Webhook{
		Handler: crwebhook.HandlerFunc(func(context.Context, crwebhook.Request) crwebhook.Response { return crwebhook.Allowed("") }),
	})
	benchParallel(b, mux, admission.PathValidateServiceEncryption, bigKeyReq().Body())
}
