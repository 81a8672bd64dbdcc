/*
Copyright 2026 The apeiro-cmk authors.

Licensed under the Apache License, Version 2.0.
*/

package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// EventType is a key lifecycle event a tenant can subscribe to.
// +kubebuilder:validation:Enum=KeyCreated;KeyRotated;KeyRotationFailed;KeyDeleted;L1KeyUnreachable;AccountReady;CertificateRenewalFailed
type EventType string

// Event types a WebHookNotification can subscribe to (the alert handler maps Kubernetes Event reasons to these).
const (
	EventKeyCreated               EventType = "KeyCreated"
	EventKeyRotated               EventType = "KeyRotated"
	EventKeyRotationFailed        EventType = "KeyRotationFailed"
	EventKeyDeleted               EventType = "KeyDeleted"
	EventL1KeyUnreachable         EventType = "L1KeyUnreachable"
	EventAccountReady             EventType = "AccountReady"
	EventCertificateRenewalFailed EventType = "CertificateRenewalFailed"
)

// NotificationFormat is the payload shape sent to the webhook.
// +kubebuilder:validation:Enum=Slack;JSON
type NotificationFormat string

const (
	FormatSlack NotificationFormat = "Slack"
	FormatJSON  NotificationFormat = "JSON"
)

// WebHookNotificationSpec is a tenant's webhook target for lifecycle events.
type WebHookNotificationSpec struct {
	// URL receiving the events; HTTPS only. Addresses in loopback, link-local and private ranges are refused by
	// the validating webhook and again at dispatch time (SSRF protection).
	// +kubebuilder:validation:MinLength=9
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="self.startsWith('https://') && isURL(self)",message="spec.url must be an https URL"
	URL string `json:"url"`
	// EventTypes to deliver.
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	EventTypes []EventType `json:"eventTypes"`
	// Format of the payload.
	// +optional
	// +kubebuilder:default=JSON
	Format NotificationFormat `json:"format,omitempty"`
	// SigningSecretRef points at the HMAC-SHA256 key used to sign each delivery (header X-Apeiro-Signature).
	// +optional
	SigningSecretRef *SecretKeySelector `json:"signingSecretRef,omitempty"`
}

// WebHookNotificationStatus is the observed state of a webhook target, written by the alert handler.
type WebHookNotificationStatus struct {
	// Conditions of the target ("Delivering": the last delivery succeeded; "SigningSecretReady": the secret named by
	// spec.signingSecretRef exists and holds the key).
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// LastSuccessTime is when a delivery last succeeded.
	// +optional
	LastSuccessTime *metav1.Time `json:"lastSuccessTime,omitempty"`
	// LastFailureTime is when a delivery last ended in failure (after its last attempt).
	// +optional
	LastFailureTime *metav1.Time `json:"lastFailureTime,omitempty"`
	// LastFailureReason says why (HTTP status, timeout, refused address, missing signing secret). Never contains
	// the secret, the payload or the response body.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	LastFailureReason string `json:"lastFailureReason,omitempty"`
	// ConsecutiveFailures counts failed deliveries since the last success.
	// +optional
	ConsecutiveFailures int32 `json:"consecutiveFailures,omitempty"`
	// Delivered counts successful deliveries.
	// +optional
	Delivered int64 `json:"delivered,omitempty"`
	// DeadLettered counts deliveries dropped after their last attempt (or because the target's queue was full).
	// +optional
	DeadLettered int64 `json:"deadLettered,omitempty"`
}

// WebHookNotification is a tenant's webhook for key lifecycle events (for example a Slack channel).
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=whn
// +kubebuilder:printcolumn:name="URL",type=string,JSONPath=`.spec.url`
// +kubebuilder:printcolumn:name="Format",type=string,JSONPath=`.spec.format`
type WebHookNotification struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   WebHookNotificationSpec   `json:"spec"`
	Status WebHookNotificationStatus `json:"status,omitempty"`
}

// WebHookNotificationList is a list of WebHookNotifications.
//
// +kubebuilder:object:root=true
type WebHookNotificationList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []WebHookNotification `json:"items"`
}

func init() {
	SchemeBuilder.Register(&WebHookNotification{}, &WebHookNotificationList{})
}
