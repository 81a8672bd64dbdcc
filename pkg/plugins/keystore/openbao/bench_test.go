package openbao_test

import (
	"context"
	"encoding/base64"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/openbao"
)

// Benchmarks against the Vault dev server (in-memory storage, loopback HTTP): the numbers are the plugin's overhead
// plus one local server's, not a production cluster's latency. Each reports ops/s (from ns/op) and p99-ms.
// Recorded in docs/performance.md.

// measure runs op b.N times (or in parallel) and reports the 99th percentile latency.
func measure(b *testing.B, parallel bool, op func() error) {
	var mu sync.Mutex
	var lat []time.Duration
	run := func() {
		t0 := time.Now()
		if err := op(); err != nil {
			b.Error(err)
			return
		}
		d := time.Since(t0)
		mu.Lock()
		lat = append(lat, d)
		mu.Unlock()
	}
	b.ResetTimer()
	if parallel {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				run()
			}
		})
	} else {
		for i := 0; i < b.N; i++ {
			run()
		}
	}
	b.StopTimer()
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[(len(lat)*99)/100].Microseconds())/1000, "p99-ms")
}

func BenchmarkTransit(b *testing.B) {
	p := startPeerB(b)
	ctx := context.Background()
	w := openbao.NewWrapper(p.configB(b))
	ops := newOpsB(b, p.yaml)
	key := setupTenantKeyB(b, ctx, w, ops, "acme")
	acme := tenantCfg("acme")
	dk := make([]byte, 32)
	aad := map[string]string{"tenant": "acme", "namespace": "bench", "name": "key"}
	ad := base64.StdEncoding.EncodeToString([]byte(`{"name":"key","namespace":"bench","tenant":"acme"}`))
	pt := base64.StdEncoding.EncodeToString(dk)
	l := p.srv.Root.Logical()

	enc, err := l.WriteWithContext(ctx, "transit/acme/encrypt/"+key, map[string]any{"plaintext": pt, "associated_data": ad})
	if err != nil {
		b.Fatal(err)
	}
	ct := enc.Data["ciphertext"].(string)
	wrapped, err := w.Wrap(ctx, acme, key, dk, aad)
	if err != nil {
		b.Fatal(err)
	}

	cases := []struct {
		name string
		op   func() error
	}{
		// One transit call each: the server's cost as the plugin's client sees it.
		{"encrypt", func() error {
			_, err := l.WriteWithContext(ctx, "transit/acme/encrypt/"+key, map[string]any{"plaintext": pt, "associated_data": ad})
			return err
		}},
		{"decrypt", func() error {
			_, err := l.WriteWithContext(ctx, "transit/acme/decrypt/"+key, map[string]any{"ciphertext": ct, "associated_data": ad})
			return err
		}},
		// Through the Wrapper: Wrap = mount state + key existence + encrypt; Unwrap = mount state + decrypt.
		{"wrap", func() error { _, err := w.Wrap(ctx, acme, key, dk, aad); return err }},
		{"unwrap", func() error { _, err := w.Unwrap(ctx, acme, key, wrapped, aad); return err }},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) { measure(b, false, tc.op) })
		b.Run(tc.name+"-parallel", func(b *testing.B) { measure(b, true, tc.op) })
	}
}
