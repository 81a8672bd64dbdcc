package certrenew

import (
	"context"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// EventClient lists the one call EventSink makes.
type EventClient interface {
	CreateEvent(ctx context.Context, ev *corev1.Event) error
}

type coreEvents struct{ cs kubernetes.Interface }

func (c coreEvents) CreateEvent(ctx context.Context, ev *corev1.Event) error {
	_, err := c.cs.CoreV1().Events(ev.Namespace).Create(ctx, ev, metav1.CreateOptions{})
	return err
}

// EventSink writes core/v1 Events. Events are written synchronously (no broadcaster): a renewal is rare, and the
// alerting path must be able to rely on the Event existing once Check returned.
type EventSink struct {
	Client EventClient
	// Component is the Event source (default apeiro-cmk-certrenew).
	Component string
	// DefaultNamespace is used when a sink's object has no namespace (file sinks).
	DefaultNamespace string
}

// NewEventSink writes Events through a clientset.
func NewEventSink(cs kubernetes.Interface, defaultNamespace string) *EventSink {
	return &EventSink{Client: coreEvents{cs}, DefaultNamespace: defaultNamespace}
}

const maxEventMessage = 1024

func (s *EventSink) emit(ctx context.Context, t Target, typ, reason, msg string) {
	if s == nil || s.Client == nil {
		return
	}
	ref := t.Sink.Ref()
	if ref.Namespace == "" {
		ref.Namespace = s.DefaultNamespace
	}
	if ref.Name == "" || ref.Namespace == "" {
		return
	}
	if len(msg) > maxEventMessage {
		msg = msg[:maxEventMessage-3] + "..."
	}
	comp := s.Component
	if comp == "" {
		comp = "apeiro-cmk-certrenew"
	}
	now := metav1.NewTime(time.Now())
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{
			Name:      fmt.Sprintf("%s.%x", ref.Name, time.Now().UnixNano()),
			Namespace: ref.Namespace,
			Labels:    map[string]string{"cmk.apeiro.io/certificate-target": t.Name, "cmk.apeiro.io/tenant": t.Tenant},
		},
		InvolvedObject: ref,
		Reason:         reason,
		Message:        msg,
		Type:           typ,
		Source:         corev1.EventSource{Component: comp},
		FirstTimestamp: now,
		LastTimestamp:  now,
		Count:          1,
	}
	ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_ = s.Client.CreateEvent(ectx, ev) // best effort: the metric and the log carry the failure too
}

// Metrics are the renewal loop's Prometheus metrics.
type Metrics struct {
	renewals *prometheus.CounterVec
	expiry   *prometheus.GaugeVec
	next     *prometheus.GaugeVec
}

// NewMetrics registers:
//
//	apeiro_certrenew_renewals_total{target,result="success|failure"}
//	apeiro_certrenew_certificate_not_after_seconds{target}   (unix time the current certificate expires)
//	apeiro_certrenew_next_renewal_seconds{target}            (unix time of the next planned renewal)
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		renewals: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "apeiro_certrenew_renewals_total",
			Help: "Certificate renewals by target and result."}, []string{"target", "result"}),
		expiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "apeiro_certrenew_certificate_not_after_seconds",
			Help: "Expiry (unix seconds) of the current certificate."}, []string{"target"}),
		next: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "apeiro_certrenew_next_renewal_seconds",
			Help: "Planned renewal time (unix seconds)."}, []string{"target"}),
	}
	for _, c := range []prometheus.Collector{m.renewals, m.expiry, m.next} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *Metrics) result(target, result string) {
	if m != nil {
		m.renewals.WithLabelValues(target, result).Inc()
	}
}

func (m *Metrics) observe(target string, c *x509.Certificate, due time.Time) {
	if m != nil {
		m.expiry.WithLabelValues(target).Set(float64(c.NotAfter.Unix()))
		m.next.WithLabelValues(target).Set(float64(due.Unix()))
	}
}
