/*
Copyright 2026 The apeiro-cmk authors.

Licensed under the Apache License, Version 2.0.
*/

package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TenantType is the place of a tenant in its hierarchy.
// +kubebuilder:validation:Enum=Root;Nested;Shadow
type TenantType string

const (
	// TenantTypeRoot is the top of a tenant tree; it has neither parent nor shadow target.
	TenantTypeRoot TenantType = "Root"
	// TenantTypeNested has exactly one parent (a Root or another Nested tenant).
	TenantTypeNested TenantType = "Nested"
	// TenantTypeShadow is a shadow (regional or migration replica) of a Root or Nested tenant; it has no children.
	TenantTypeShadow TenantType = "Shadow"
)

// OIDCProvider is the tenant's identity provider, in the shape of upstream OpenKCM's Tenant.
type OIDCProvider struct {
	// Issuer is the OIDC issuer URL; HTTPS only.
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:XValidation:rule="self.startsWith('https://') && isURL(self)",message="issuer must be an https URL"
	Issuer string `json:"issuer"`
	// JWKSURI is the URL of the provider's JSON Web Key Set; HTTPS only.
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:XValidation:rule="self.startsWith('https://') && isURL(self)",message="jwks_uri must be an https URL"
	JWKSURI string `json:"jwks_uri"`
	// Audiences accepted in tokens of this tenant. They must be known to the Platform Mesh configuration of the region.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=253
	Audiences []string `json:"audiences,omitempty"`
}

// TenantSpec describes a tenant and its place in the hierarchy.
//
// +kubebuilder:validation:XValidation:rule="self.type != 'Root' || (!has(self.parent) && !has(self.shadowOf))",message="a Root tenant has neither spec.parent nor spec.shadowOf"
// +kubebuilder:validation:XValidation:rule="self.type != 'Nested' || (has(self.parent) && !has(self.shadowOf))",message="a Nested tenant needs spec.parent and no spec.shadowOf"
// +kubebuilder:validation:XValidation:rule="self.type != 'Shadow' || (has(self.shadowOf) && !has(self.parent))",message="a Shadow tenant needs spec.shadowOf and no spec.parent"
type TenantSpec struct {
	// Type is Root, Nested or Shadow. Immutable.
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec.type is immutable"
	Type TenantType `json:"type"`
	// Parent is the name of the parent Tenant of a Nested tenant. Immutable.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec.parent is immutable"
	Parent string `json:"parent,omitempty"`
	// ShadowOf is the name of the Tenant a Shadow tenant replicates. Immutable.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec.shadowOf is immutable"
	ShadowOf string `json:"shadowOf,omitempty"`
	// Region is the Platform Mesh region the tenant lives in (for example eu-central).
	// +kubebuilder:validation:MinLength=2
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Region string `json:"region"`
	// OIDCProvider of the tenant's users.
	// +optional
	OIDCProvider *OIDCProvider `json:"oidcProvider,omitempty"`
}

// TenantStatus is the observed state of a Tenant.
type TenantStatus struct {
	// ObservedGeneration is the generation last processed.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Depth of the tenant in its tree (a Root is 1; a Shadow has its target's depth).
	// +optional
	Depth int32 `json:"depth,omitempty"`
	// Conditions of the tenant.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// Tenant is a customer of the key management service. Tenants are cluster-scoped: the name is the tenant ID, and
// namespaces are assigned to a tenant with the cmk.apeiro.io/tenant label.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=cmkt
// +kubebuilder:validation:XValidation:rule="self.metadata.name.size() <= 63",message="a tenant name is at most 63 characters (it is used as a label value)"
// +kubebuilder:validation:XValidation:rule="!has(self.spec.parent) || self.spec.parent != self.metadata.name",message="a tenant cannot be its own parent"
// +kubebuilder:validation:XValidation:rule="!has(self.spec.shadowOf) || self.spec.shadowOf != self.metadata.name",message="a tenant cannot shadow itself"
// +kubebuilder:printcolumn:name="Type",type=string,JSONPath=`.spec.type`
// +kubebuilder:printcolumn:name="Parent",type=string,JSONPath=`.spec.parent`
// +kubebuilder:printcolumn:name="ShadowOf",type=string,JSONPath=`.spec.shadowOf`
// +kubebuilder:printcolumn:name="Region",type=string,JSONPath=`.spec.region`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Tenant struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   TenantSpec   `json:"spec"`
	Status TenantStatus `json:"status,omitempty"`
}

// TenantList is a list of Tenants.
//
// +kubebuilder:object:root=true
type TenantList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Tenant `json:"items"`
}

func init() {
	SchemeBuilder.Register(&Tenant{}, &TenantList{})
}
