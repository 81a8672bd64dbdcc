package alerts

import "github.com/prometheus/client_golang/prometheus"

// Metrics of the alert handler. Label values are bounded: outcome is a fixed set; no tenant or URL labels (their
// number is unbounded and URLs can carry tokens).
type Metrics struct {
	events     *prometheus.CounterVec
	amQueue    prometheus.Gauge
	amActive   prometheus.Gauge
	amSent     prometheus.Counter
	amFailures prometheus.Counter
	amDropped  prometheus.Counter
	amBlocked  prometheus.Counter
	whQueue    prometheus.Gauge
	whResults  *prometheus.CounterVec
	whTargets  prometheus.Gauge
	whDuration prometheus.Histogram
}

// NewMetrics creates the metrics and registers them with reg (nil: unregistered, for tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		events:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "apeiro_alerts_events_total", Help: "Lifecycle events taken in, by reason and outcome (handled, ignored, invalid)."}, []string{"reason", "outcome"}),
		amQueue:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "apeiro_alerts_alertmanager_queue", Help: "Alerts waiting for Alertmanager."}),
		amActive:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "apeiro_alerts_alertmanager_active_conditions", Help: "Firing conditions kept active in Alertmanager."}),
		amSent:     prometheus.NewCounter(prometheus.CounterOpts{Name: "apeiro_alerts_alertmanager_sent_total", Help: "Alerts Alertmanager accepted."}),
		amFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "apeiro_alerts_alertmanager_post_failures_total", Help: "Failed (retried) posts to Alertmanager."}),
		amDropped:  prometheus.NewCounter(prometheus.CounterOpts{Name: "apeiro_alerts_alertmanager_dropped_total", Help: "Alerts Alertmanager refused with 4xx."}),
		amBlocked:  prometheus.NewCounter(prometheus.CounterOpts{Name: "apeiro_alerts_alertmanager_backpressure_total", Help: "Times an event waited for room in the full Alertmanager queue."}),
		whQueue:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "apeiro_alerts_webhook_queue", Help: "Deliveries waiting in tenant webhook queues."}),
		whResults:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "apeiro_alerts_webhook_deliveries_total", Help: "Tenant webhook delivery outcomes (delivered, retried, dead_letter, queue_full)."}, []string{"outcome"}),
		whTargets:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "apeiro_alerts_webhook_targets", Help: "WebHookNotification targets loaded."}),
		whDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "apeiro_alerts_webhook_attempt_seconds", Help: "Duration of one webhook delivery attempt.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 12)}),
	}
	if reg != nil {
		reg.MustRegister(m.events, m.amQueue, m.amActive, m.amSent, m.amFailures, m.amDropped, m.amBlocked, m.whQueue, m.whResults, m.whTargets, m.whDuration)
	}
	return m
}
