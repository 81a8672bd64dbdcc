package main

import (
	"math"
	"testing"
	"time"
)

// The log histogram reports every quantile within its 2 % bucket width.
func TestHistQuantiles(t *testing.T) {
	var h hist
	for i := 1; i <= 10000; i++ {
		h.add(time.Duration(i) * time.Microsecond) // 1 µs … 10 ms, uniform
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 5 * time.Millisecond}, {0.99, 9900 * time.Microsecond}, {0.999, 9990 * time.Microsecond}, {1, 10 * time.Millisecond}} {
		got := h.quantile(tc.q)
		if rel := math.Abs(float64(got-tc.want)) / float64(tc.want); rel > 0.021 {
			t.Errorf("q%.3f = %s, want %s ± 2%%", tc.q, got, tc.want)
		}
	}
	var other hist
	other.add(time.Second)
	h.merge(&other)
	if h.n != 10001 || h.max != time.Second || h.quantile(1) != time.Second {
		t.Errorf("merge: n=%d max=%s", h.n, h.max)
	}
	var empty hist
	if empty.quantile(0.99) != 0 || len(empty.points()) != 0 {
		t.Error("empty histogram")
	}
}

// The server-side quantile interpolates inside Prometheus buckets as histogram_quantile does.
func TestServerHistQuantile(t *testing.T) {
	before := serverHist{0.001: 10, 0.002: 10, math.Inf(1): 10}
	after := serverHist{0.001: 60, 0.002: 110, math.Inf(1): 110}
	d := after.minus(before) // 50 below 1 ms, 50 between 1 and 2 ms
	if got := d.quantile(0.5); math.Abs(got-0.001) > 1e-9 {
		t.Errorf("p50 %g, want 0.001", got)
	}
	if got := d.quantile(0.99); math.Abs(got-0.00198) > 1e-9 {
		t.Errorf("p99 %g, want 0.00198", got)
	}
	if got := (serverHist{}).quantile(0.99); got != 0 {
		t.Errorf("empty: %g", got)
	}
}
