/*
Copyright 2026 The apeiro-cmk authors.

Licensed under the Apache License, Version 2.0.
*/

package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// KeyAlgorithm of a service encryption key (the plugin-sdk KeyAlgorithm values).
// +kubebuilder:validation:Enum=AES256;RSA3072;RSA4096
type KeyAlgorithm string

const (
	AlgorithmAES256  KeyAlgorithm = "AES256"
	AlgorithmRSA3072 KeyAlgorithm = "RSA3072"
	AlgorithmRSA4096 KeyAlgorithm = "RSA4096"
)

// AccountReference names an Account. An empty namespace means the key's own namespace.
type AccountReference struct {
	// Name of the Account.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// Namespace of the Account; defaults to the key's namespace (the mutating webhook fills it in).
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace,omitempty"`
}

// RotationPolicy of a key.
type RotationPolicy struct {
	// Enabled turns automatic rotation on.
	Enabled bool `json:"enabled"`
	// PeriodDays between rotations.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=3650
	PeriodDays int32 `json:"periodDays,omitempty"`
}

// ServiceEncryptionKeySpec is a service's request for a key under an Account.
//
// +kubebuilder:validation:XValidation:rule="!has(self.rotation) || !self.rotation.enabled || has(self.rotation.periodDays)",message="spec.rotation.periodDays is required when rotation is enabled"
type ServiceEncryptionKeySpec struct {
	// AccountRef is the Account whose L1 key protects this key. It must belong to the same tenant hierarchy
	// (see docs/hierarchy.md). Immutable.
	// +kubebuilder:validation:XValidation:rule="self.name == oldSelf.name",message="spec.accountRef.name is immutable"
	// +kubebuilder:validation:XValidation:rule="!has(oldSelf.__namespace__) || (has(self.__namespace__) && self.__namespace__ == oldSelf.__namespace__)",message="spec.accountRef.namespace is immutable"
	AccountRef AccountReference `json:"accountRef"`
	// Algorithm of the key. Immutable.
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec.algorithm is immutable"
	Algorithm KeyAlgorithm `json:"algorithm"`
	// Rotation policy.
	// +optional
	Rotation *RotationPolicy `json:"rotation,omitempty"`
	// WorkloadIdentities are the SPIFFE IDs allowed to request this key directly.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="self.all(id, id.matches('^spiffe://[a-z0-9._-]+(/[A-Za-z0-9._-]+)+$'))",message="every workload identity must be a SPIFFE ID (spiffe://<trust-domain>/<path>)"
	WorkloadIdentities []string `json:"workloadIdentities,omitempty"`
}

// ServiceEncryptionKeyStatus is the observed state of a key.
type ServiceEncryptionKeyStatus struct {
	// ObservedGeneration is the generation last processed.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// KeyID is the keystore's identifier of the key.
	// +optional
	KeyID string `json:"keyID,omitempty"`
	// Conditions of the key.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// ServiceEncryptionKey is a service's key under a tenant's Account.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=sek
// +kubebuilder:printcolumn:name="Account",type=string,JSONPath=`.spec.accountRef.name`
// +kubebuilder:printcolumn:name="Algorithm",type=string,JSONPath=`.spec.algorithm`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ServiceEncryptionKey struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ServiceEncryptionKeySpec   `json:"spec"`
	Status ServiceEncryptionKeyStatus `json:"status,omitempty"`
}

// ServiceEncryptionKeyList is a list of ServiceEncryptionKeys.
//
// +kubebuilder:object:root=true
type ServiceEncryptionKeyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ServiceEncryptionKey `json:"items"`
}

func init() {
	SchemeBuilder.Register(&ServiceEncryptionKey{}, &ServiceEncryptionKeyList{})
}
