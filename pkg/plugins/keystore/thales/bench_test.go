package thales_test

import (
	"slices"
	"sync"
	"testing"
	"time"

	operationsv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/operations/v1"

	"github.com/apeirora/apeiro-cmk/internal/testpeers/softhsm"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/thales"
)

// Benchmarks against SoftHSM2 (software token, same PKCS#11 calls as a Luna partition; a network HSM adds its
// round trip). Every operation runs inside the token: AES-256-GCM with the L1 key. Recorded in docs/performance.md.

// latencies collects per-operation durations to report p99 next to ns/op.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) { l.mu.Lock(); l.d = append(l.d, d); l.mu.Unlock() }

func (l *latencies) report(b *testing.B) {
	if len(l.d) == 0 {
		return
	}
	slices.Sort(l.d)
	b.ReportMetric(float64(l.d[len(l.d)*99/100].Microseconds()), "p99-µs")
}

func BenchmarkWrapper(b *testing.B) {
	tok := softhsm.Start(b, softhsm.Main)
	o := ops(b, tok)
	a := access(b, tok, "bench")
	id := createKey(b, o, a, operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256)
	cfg, _ := thales.ParseConfig(pluginYAML(tok))
	w := thales.NewWrapper(cfg)
	ctx := testCtx(b)
	aad := map[string]string{"tenant": "bench", "serviceEncryptionKey": "k"}
	for _, size := range []struct {
		name string
		n    int
	}{{"wrap-32B", 32}, {"encrypt-1KiB", 1024}} {
		pt := make([]byte, size.n)
		wr, err := w.Wrap(ctx, a, id, pt, aad)
		if err != nil {
			b.Fatal(err)
		}
		run := func(name string, parallel bool, op func() error) {
			b.Run(name, func(b *testing.B) {
				var l latencies
				one := func() {
					start := time.Now()
					if err := op(); err != nil {
						b.Error(err)
					}
					l.add(time.Since(start))
				}
				if parallel {
					b.SetParallelism(2)
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							one()
						}
					})
				} else {
					for b.Loop() {
						one()
					}
				}
				l.report(b)
			})
		}
		seal := func() error { _, err := w.Wrap(ctx, a, id, pt, aad); return err }
		open := func() error { _, err := w.Unwrap(ctx, a, id, wr, aad); return err }
		run(size.name+"/seal", false, seal)
		run(size.name+"/open", false, open)
		run(size.name+"/seal-parallel", true, seal)
		run(size.name+"/open-parallel", true, open)
	}
}
