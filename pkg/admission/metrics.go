package admission

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

var (
	// Buckets fine enough to read a p99 below 10 ms (controller-runtime's defaults step by a factor of ten).
	latencyBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}

	requestDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "apeiro_cmk_admission_duration_seconds",
		Help:    "Time to answer an admission request, by endpoint, operation and verdict.",
		Buckets: latencyBuckets,
	}, []string{"webhook", "operation", "verdict", "dry_run"})

	requestsRejected = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "apeiro_cmk_admission_rejected_requests_total",
		Help: "Requests refused before reaching a handler, by reason.",
	}, []string{"reason"})
)

func init() {
	metrics.Registry.MustRegister(requestDuration, requestsRejected)
}

// instrument records latency and verdict. Labels are bounded: endpoint, operation, verdict — never tenant or object
// names.
func instrument(path string, fn admission.HandlerFunc) admission.HandlerFunc {
	return func(ctx context.Context, req admission.Request) admission.Response {
		start := time.Now()
		resp := fn(ctx, req)
		verdict := "allowed"
		switch {
		case resp.Result != nil && resp.Result.Code >= 400 && resp.Result.Code != http.StatusForbidden:
			verdict = "errored"
		case !resp.Allowed:
			verdict = "denied"
		case len(resp.Patches) > 0:
			verdict = "patched"
		}
		dry := "false"
		if req.DryRun != nil && *req.DryRun {
			dry = "true"
		}
		requestDuration.WithLabelValues(path, string(req.Operation), verdict, dry).Observe(time.Since(start).Seconds())
		return resp
	}
}
