// Package alerts is the alert handler that runs beside the admission server: it takes lifecycle events (Kubernetes
// Events our controllers emit on our objects), turns them into Alertmanager v2 alerts (batched, resolved when the
// condition clears) and delivers them, signed, to the owning tenant's matching WebHookNotification targets (retries
// with backoff and jitter, per-target concurrency and rate caps, dead-letter with an alert, delivery state on the
// object's status). Everything is bounded: queues, attempts, time and memory per delivery. docs/alerts.md is the
// operator's view.
package alerts

import (
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
)

// Severity of an alert.
type Severity string

const (
	SeverityInfo     Severity = "info"
	SeverityWarning  Severity = "warning"
	SeverityCritical Severity = "critical"
)

// Kubernetes Event reasons the handler understands. Controllers emit them on Accounts, ServiceEncryptionKeys and
// Tenants; every other reason is ignored.
const (
	ReasonL1KeyUnreachable         = "L1KeyUnreachable"
	ReasonAccountReady             = "AccountReady"
	ReasonKeyRotated               = "KeyRotated"
	ReasonRotationFailed           = "RotationFailed"
	ReasonCertificateRenewalFailed = "CertificateRenewalFailed"
	ReasonCertificateRenewed       = "CertificateRenewed"
	ReasonKeyCreated               = "KeyCreated"
	ReasonKeyDeleted               = "KeyDeleted"

	// AlertWebhookDeadLetter is the alert raised when a tenant webhook delivery is dropped after its last attempt.
	AlertWebhookDeadLetter = "WebHookDeliveryFailed"
)

// Rule says what one reason means.
type Rule struct {
	// WebhookType is the WebHookNotification event type ("" when tenants cannot subscribe to it).
	WebhookType cmkv1.EventType
	Severity    Severity
	// Alertname of the Alertmanager alert.
	Alertname string
	// Condition: the alert stays firing (re-sent before it expires) until an event that Resolves it arrives.
	// Otherwise the alert is a notice that resolves by itself after the notice lifetime.
	Condition bool
	// Resolves lists the alertnames this event clears for the same object.
	Resolves []string
}

// Rules maps every understood reason to its meaning.
var Rules = map[string]Rule{
	ReasonL1KeyUnreachable:         {WebhookType: cmkv1.EventL1KeyUnreachable, Severity: SeverityCritical, Alertname: "L1KeyUnreachable", Condition: true},
	ReasonAccountReady:             {WebhookType: cmkv1.EventAccountReady, Severity: SeverityInfo, Alertname: "AccountReady", Resolves: []string{"L1KeyUnreachable"}},
	ReasonRotationFailed:           {WebhookType: cmkv1.EventKeyRotationFailed, Severity: SeverityCritical, Alertname: "KeyRotationFailed", Condition: true},
	ReasonKeyRotated:               {WebhookType: cmkv1.EventKeyRotated, Severity: SeverityInfo, Alertname: "KeyRotated", Resolves: []string{"KeyRotationFailed"}},
	ReasonCertificateRenewalFailed: {WebhookType: cmkv1.EventCertificateRenewalFailed, Severity: SeverityCritical, Alertname: "CertificateRenewalFailed", Condition: true},
	ReasonCertificateRenewed:       {Severity: SeverityInfo, Alertname: "CertificateRenewed", Resolves: []string{"CertificateRenewalFailed"}},
	ReasonKeyCreated:               {WebhookType: cmkv1.EventKeyCreated, Severity: SeverityInfo, Alertname: "KeyCreated"},
	ReasonKeyDeleted:               {WebhookType: cmkv1.EventKeyDeleted, Severity: SeverityInfo, Alertname: "KeyDeleted"},
}

// ObjectRef names the object an event is about.
type ObjectRef struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
}

// Event is one lifecycle event, already attributed to its tenant.
type Event struct {
	// ID is unique per event (the Kubernetes Event's UID plus its count); receivers deduplicate on it.
	ID     string
	Reason string
	// Tenant owns the object (its tenant label); "" means unattributed: Alertmanager only, never a tenant webhook.
	Tenant    string
	Namespace string
	Account   string
	Key       string
	Object    ObjectRef
	Message   string
	Time      time.Time
}

// Limits on event fields; longer values are cut (messages) or refused (names).
const (
	maxNameLen    = 253
	maxMessageLen = 2048
	maxIDLen      = 128
)

// Validate refuses events the handler cannot route.
func (e *Event) Validate() error {
	if _, ok := Rules[e.Reason]; !ok {
		return fmt.Errorf("unknown event reason %q", e.Reason)
	}
	if e.ID == "" || len(e.ID) > maxIDLen {
		return errors.New("event id must be 1 to 128 characters")
	}
	for _, s := range []string{e.Tenant, e.Namespace, e.Account, e.Key, e.Object.Kind, e.Object.Name, e.Object.Namespace} {
		if len(s) > maxNameLen {
			return errors.New("event names must be at most 253 characters")
		}
	}
	if e.Object.Name == "" || e.Object.Kind == "" {
		return errors.New("event object kind and name are required")
	}
	if e.Time.IsZero() {
		return errors.New("event time is required")
	}
	e.Message = truncateUTF8(e.Message, maxMessageLen)
	return nil
}

// truncateUTF8 cuts s to at most n bytes without splitting a rune.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// Rule returns the event's rule (Validate first).
func (e *Event) Rule() Rule { return Rules[e.Reason] }
