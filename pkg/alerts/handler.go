package alerts

import (
	"context"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/types"
)

// Handler routes events to Alertmanager and to tenant webhooks.
type Handler struct {
	// AM is the Alertmanager sink (nil: no Alertmanager configured).
	AM *AMSink
	// Webhooks is the tenant webhook dispatcher (nil: none).
	Webhooks *Dispatcher
	Log      logr.Logger
	Metrics  *Metrics
}

// Handle validates e and routes it. It blocks while the Alertmanager queue is full (backpressure) and returns the
// context's error if ctx ends first; tenant webhooks never block it for longer than their EnqueueWait.
func (h *Handler) Handle(ctx context.Context, e *Event) error {
	return h.handle(ctx, e, true)
}

// Replay routes an event seen again after a restart: Alertmanager state is rebuilt, tenant webhooks get it only
// when toWebhooks (the event is recent enough to be possibly undelivered).
func (h *Handler) Replay(ctx context.Context, e *Event, toWebhooks bool) error {
	return h.handle(ctx, e, toWebhooks)
}

func (h *Handler) handle(ctx context.Context, e *Event, toWebhooks bool) error {
	if err := e.Validate(); err != nil {
		h.metrics().events.WithLabelValues("other", "invalid").Inc()
		return fmt.Errorf("event refused: %w", err)
	}
	h.metrics().events.WithLabelValues(e.Reason, "handled").Inc()
	if h.AM != nil {
		if err := h.AM.Handle(ctx, e); err != nil {
			return err
		}
	}
	if h.Webhooks != nil && toWebhooks {
		h.Webhooks.Dispatch(ctx, e)
	}
	return nil
}

func (h *Handler) metrics() *Metrics {
	if h.Metrics == nil {
		h.Metrics = NewMetrics(nil)
	}
	return h.Metrics
}

// DeadLetter raises a WebHookDeliveryFailed alert for a dropped tenant delivery (wire it as
// WebhookOptions.DeadLetter). It does not wait for room in a full Alertmanager queue for longer than a second: a
// dead letter is already recorded on the target's status and in the metrics.
func (h *Handler) DeadLetter(ctx context.Context, e *Event, target types.NamespacedName, reason string) {
	if h.AM == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	ev := &Event{ID: e.ID, Reason: e.Reason, Tenant: e.Tenant, Namespace: target.Namespace,
		Object:  ObjectRef{Kind: "WebHookNotification", Namespace: target.Namespace, Name: target.Name},
		Message: fmt.Sprintf("%s event %s could not be delivered: %s", e.Reason, e.ID, reason), Time: time.Now()}
	if err := h.AM.Notice(ctx, AlertWebhookDeadLetter, SeverityWarning, ev); err != nil {
		h.Log.V(1).Info("dead-letter alert not queued", "error", err.Error())
	}
}
