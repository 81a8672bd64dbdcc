/*
Copyright 2026 The apeiro-cmk authors.

Licensed under the Apache License, Version 2.0.
*/

package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// KeystoreType names the keystore backend that holds an Account's L1 key.
// +kubebuilder:validation:Enum=aws;openbao;thales;local
type KeystoreType string

const (
	// KeystoreAWS is AWS KMS, reached with IRSA (web identity federation), never with static credentials.
	KeystoreAWS KeystoreType = "aws"
	// KeystoreOpenBao is the platform-provided OpenBao transit engine.
	KeystoreOpenBao KeystoreType = "openbao"
	// KeystoreThales is a Thales Luna HSM reached through PKCS#11.
	KeystoreThales KeystoreType = "thales"
	// KeystoreLocal is the embedded software keystore (development and tests).
	KeystoreLocal KeystoreType = "local"
)

// SecretKeySelector points at one key of a Secret in the object's own namespace.
type SecretKeySelector struct {
	// Name of the Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// Key inside the Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Key string `json:"key"`
}

// AccountAuth says how the keystore plugin authenticates for this Account. Static credentials are never inline:
// AWS uses IRSA, OpenBao a Kubernetes-auth role or a token Secret, Thales a PIN Secret.
type AccountAuth struct {
	// IRSARoleARN is the IAM role assumed through the pod's projected service-account token (aws only).
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="self.matches('^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}$')",message="irsaRoleARN must be an IAM role ARN"
	IRSARoleARN string `json:"irsaRoleARN,omitempty"`
	// OpenBaoRole is the OpenBao Kubernetes-auth role (openbao only).
	// +optional
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9_.-]+$`
	OpenBaoRole string `json:"openBaoRole,omitempty"`
	// SecretRef points at a token (openbao) or PIN (thales) in a Secret of the Account's namespace.
	// +optional
	SecretRef *SecretKeySelector `json:"secretRef,omitempty"`
}

// AccountSpec is a tenant's keystore account and its L1 key.
//
// +kubebuilder:validation:XValidation:rule="self.keystore != 'aws' || self.keyRef.matches('^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:(key/[A-Za-z0-9-]{1,128}|alias/[A-Za-z0-9/_-]{1,256})$')",message="spec.keyRef of an aws Account must be a KMS key or alias ARN"
// +kubebuilder:validation:XValidation:rule="self.keystore != 'thales' || self.keyRef.startsWith('pkcs11:')",message="spec.keyRef of a thales Account must be a PKCS#11 URI (pkcs11:...)"
// +kubebuilder:validation:XValidation:rule="!(self.keystore in ['openbao', 'local']) || self.keyRef.matches('^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$')",message="spec.keyRef of an openbao or local Account must be a key name ([A-Za-z0-9_.-], at most 128)"
// +kubebuilder:validation:XValidation:rule="self.keystore != 'aws' || (has(self.auth) && has(self.auth.irsaRoleARN) && !has(self.auth.secretRef))",message="an aws Account authenticates with spec.auth.irsaRoleARN only (no static credentials)"
// +kubebuilder:validation:XValidation:rule="self.keystore != 'openbao' || (has(self.auth) && (has(self.auth.openBaoRole) || has(self.auth.secretRef)))",message="an openbao Account needs spec.auth.openBaoRole or spec.auth.secretRef"
// +kubebuilder:validation:XValidation:rule="self.keystore != 'thales' || (has(self.auth) && has(self.auth.secretRef))",message="a thales Account needs spec.auth.secretRef (the PIN)"
type AccountSpec struct {
	// Keystore is the backend holding the L1 key. Immutable.
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec.keystore is immutable"
	Keystore KeystoreType `json:"keystore"`
	// KeyRef is the L1 key reference: a KMS key ARN (aws), a transit key name (openbao), a PKCS#11 URI (thales) or
	// a key name (local). Immutable: moving to another key is a new Account.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec.keyRef is immutable"
	KeyRef string `json:"keyRef"`
	// Region of the key.
	// +kubebuilder:validation:MinLength=2
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Region string `json:"region"`
	// Auth says how to authenticate against the keystore.
	// +optional
	Auth *AccountAuth `json:"auth,omitempty"`
}

// AccountStatus is the observed state of an Account.
//
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.keyFirstAnsweredTime) || (has(self.keyFirstAnsweredTime) && self.keyFirstAnsweredTime == oldSelf.keyFirstAnsweredTime)",message="status.keyFirstAnsweredTime is set once and never cleared or changed"
type AccountStatus struct {
	// ObservedGeneration is the generation last probed.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// LastProbeTime is when the L1 key was last probed.
	// +optional
	LastProbeTime *metav1.Time `json:"lastProbeTime,omitempty"`
	// KeyFirstAnsweredTime is when the L1 key first answered a probe. It is set once and never cleared: from then on
	// the Account has had a working key, so a key that goes missing is reported as lost (Ready=False, KeyNotFound,
	// event L1KeyUnreachable) and never re-created by the platform — new material under the old name would leave
	// everything wrapped under the old key unrecoverable while looking healthy.
	// +optional
	KeyFirstAnsweredTime *metav1.Time `json:"keyFirstAnsweredTime,omitempty"`
	// Conditions: Ready and KeyReachable.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// Account is a tenant's keystore account holding an L1 key. It is Ready only after the key was proven to exist and
// answer.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=cmkacct
// +kubebuilder:printcolumn:name="Keystore",type=string,JSONPath=`.spec.keystore`
// +kubebuilder:printcolumn:name="Region",type=string,JSONPath=`.spec.region`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Account struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   AccountSpec   `json:"spec"`
	Status AccountStatus `json:"status,omitempty"`
}

// AccountList is a list of Accounts.
//
// +kubebuilder:object:root=true
type AccountList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Account `json:"items"`
}

func init() {
	SchemeBuilder.Register(&Account{}, &AccountList{})
}
