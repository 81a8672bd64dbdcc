package admission

import (
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// Every metric of the admission path lives in this file. The limits in front of it (requests refused before a
// handler ran) are counted by pkg/server.

var (
	// Buckets fine enough to read a p99 below 10 ms (controller-runtime's defaults step by a factor of ten).
	latencyBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}

	requestDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "apeiro_cmk_admission_duration_seconds",
		Help:    "Time to answer an admission request (decode, checks, encode; after the body was read), by endpoint, operation and verdict.",
		Buckets: latencyBuckets,
	}, []string{"webhook", "operation", "verdict", "dry_run"})

	panicsRecovered = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "apeiro_cmk_admission_panics_total",
		Help: "Admission handler panics recovered and answered 500.",
	})

	// liveReads counts the callers of BatchedReader.Get by how their read was served: "started" (a GET of its own,
	// nothing was in flight), "queued" (it opened the next GET behind one in flight) or "joined" (it shared that
	// next GET). joined ÷ all is the share of API server round trips saved.
	liveReads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "apeiro_cmk_live_reads_total",
		Help: "Live reads of referenced objects requested by admission checks, by how they were served (started, queued, joined, reused).",
	}, []string{"how"})
)

func init() {
	metrics.Registry.MustRegister(requestDuration, panicsRecovered, liveReads)
}

// Label values are bounded: endpoint, one of five operations, four verdicts, dry run or not — never tenant or object
// names, and never a string the client chose (an unknown operation is "other").
var (
	operations = [...]string{"CREATE", "UPDATE", "DELETE", "CONNECT", "other"}
	verdicts   = [...]string{"allowed", "denied", "errored", "patched"}
)

// endpointMetrics resolves the histogram of one endpoint per label combination once, on first use, so the hot path
// does no label hashing or map lookup.
type endpointMetrics struct {
	path string
	obs  [len(operations)][len(verdicts)][2]atomic.Pointer[prometheus.Observer]
}

func newEndpointMetrics(path string) *endpointMetrics { return &endpointMetrics{path: path} }

func (m *endpointMetrics) observe(req admission.Request, resp admission.Response, start time.Time) {
	op := len(operations) - 1
	switch req.Operation {
	case admissionv1.Create:
		op = 0
	case admissionv1.Update:
		op = 1
	case admissionv1.Delete:
		op = 2
	case admissionv1.Connect:
		op = 3
	}
	v := 0
	switch {
	case resp.Result != nil && resp.Result.Code >= 400 && resp.Result.Code != http.StatusForbidden:
		v = 2
	case !resp.Allowed:
		v = 1
	case len(resp.Patches) > 0:
		v = 3
	}
	dry := 0
	if req.DryRun != nil && *req.DryRun {
		dry = 1
	}
	slot := &m.obs[op][v][dry]
	o := slot.Load()
	if o == nil {
		ob := requestDuration.WithLabelValues(m.path, operations[op], verdicts[v], [...]string{"false", "true"}[dry])
		o = &ob
		slot.Store(o)
	}
	(*o).Observe(time.Since(start).Seconds())
}
