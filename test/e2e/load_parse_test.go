package e2e

import (
	"bufio"
	"math"
	"strings"
	"testing"
)

// TestParseAdmissionHistogram checks the /metrics reader and the bucket interpolation the load test reports with,
// on a fixed exposition (no cluster needed).
func TestParseAdmissionHistogram(t *testing.T) {
	const metrics = `# HELP apiserver_admission_webhook_admission_duration_seconds [STABLE] Admission webhook latency
# TYPE apiserver_admission_webhook_admission_duration_seconds histogram
apiserver_admission_webhook_admission_duration_seconds_bucket{name="vtenant.cmk.apeiro.io",operation="CREATE",rejected="false",type="validating",le="0.005"} 50
apiserver_admission_webhook_admission_duration_seconds_bucket{name="vtenant.cmk.apeiro.io",operation="CREATE",rejected="false",type="validating",le="0.025"} 90
apiserver_admission_webhook_admission_duration_seconds_bucket{name="vtenant.cmk.apeiro.io",operation="CREATE",rejected="false",type="validating",le="0.1"} 100
apiserver_admission_webhook_admission_duration_seconds_bucket{name="vtenant.cmk.apeiro.io",operation="CREATE",rejected="false",type="validating",le="+Inf"} 100
apiserver_admission_webhook_admission_duration_seconds_count{name="vtenant.cmk.apeiro.io",operation="CREATE",rejected="false",type="validating"} 100
apiserver_admission_webhook_admission_duration_seconds_bucket{name="vtenant.cmk.apeiro.io",operation="CREATE",rejected="true",type="validating",le="0.005"} 0
apiserver_admission_webhook_admission_duration_seconds_bucket{name="vtenant.cmk.apeiro.io",operation="CREATE",rejected="true",type="validating",le="0.025"} 0
apiserver_admission_webhook_admission_duration_seconds_bucket{name="vtenant.cmk.apeiro.io",operation="CREATE",rejected="true",type="validating",le="0.1"} 100
apiserver_admission_webhook_admission_duration_seconds_bucket{name="vtenant.cmk.apeiro.io",operation="CREATE",rejected="true",type="validating",le="+Inf"} 100
apiserver_admission_webhook_admission_duration_seconds_count{name="vtenant.cmk.apeiro.io",operation="CREATE",rejected="true",type="validating"} 100
apiserver_admission_webhook_admission_duration_seconds_sum{name="vtenant.cmk.apeiro.io",operation="CREATE",rejected="true",type="validating"} 7
apiserver_request_total{code="201"} 5
`
	h := parseAdmissionHistogram(bufio.NewScanner(strings.NewReader(metrics)))
	if len(h) != 1 {
		t.Fatalf("webhooks: %v", h)
	}
	got := h["vtenant.cmk.apeiro.io"]
	if got.count != 200 || got.buckets[0.005] != 50 || got.buckets[0.1] != 200 || got.buckets[math.Inf(1)] != 200 {
		t.Fatalf("summed histogram: %+v", got)
	}
	empty := histogram{buckets: map[float64]float64{0.005: 0, 0.025: 0, 0.1: 0, math.Inf(1): 0}}
	for _, tc := range []struct {
		q, want float64
	}{
		{0.25, 0.005},                      // 50 of 200 are at or below 5 ms: the bucket's upper edge
		{0.40, 0.005 + 0.020*(80-50)/40},   // inside the 5-25 ms bucket
		{0.99, 0.025 + 0.075*(198-90)/110}, // inside the 25-100 ms bucket
	} {
		d := got.minus(empty)
		if q := d.quantile(tc.q); math.Abs(q-tc.want) > 1e-9 {
			t.Errorf("quantile(%v) = %v, want %v", tc.q, q, tc.want)
		}
	}
	if q := got.minus(got).quantile(0.99); !math.IsNaN(q) {
		t.Errorf("quantile of an empty difference = %v, want NaN", q)
	}
}
