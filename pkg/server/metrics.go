package server

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// requestsRejected counts requests the Limiter refused before any handler ran. The name predates the move of the
// limits into this package and is kept for existing dashboards and alerts.
var requestsRejected = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "apeiro_cmk_admission_rejected_requests_total",
	Help: "Requests refused before reaching a handler, by reason.",
}, []string{"reason"})

// The two label values, resolved once: the hot path does no label lookup.
var (
	rejectedTooLarge = requestsRejected.WithLabelValues("too_large")
	rejectedBusy     = requestsRejected.WithLabelValues("busy")
)

func init() {
	metrics.Registry.MustRegister(requestsRejected)
}
