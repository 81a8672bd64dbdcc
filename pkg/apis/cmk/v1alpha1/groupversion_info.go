/*
Copyright 2026 The apeiro-cmk authors.

Licensed under the Apache License, Version 2.0.
*/

// Package v1alpha1 holds the cmk.apeiro.io API: Tenant, Account, ServiceEncryptionKey and WebHookNotification.
//
// Ownership of namespaced objects is never taken from a field the writer controls: the mutating webhook stamps the
// TenantLabel from the namespace's TenantLabel (or the kcp workspace) and the validating webhook rejects mismatches.
//
// +kubebuilder:object:generate=true
// +groupName=cmk.apeiro.io
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group version used to register these objects.
	GroupVersion = schema.GroupVersion{Group: "cmk.apeiro.io", Version: "v1alpha1"}

	// SchemeBuilder registers the types with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the types in this group-version to the given scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

const (
	// TenantLabel marks a namespace as belonging to a tenant, and is stamped on every namespaced object of this API
	// by the mutating webhook. Its value is a Tenant name.
	TenantLabel = "cmk.apeiro.io/tenant"

	// ConditionReady is true when an object is fully usable.
	ConditionReady = "Ready"
	// ConditionKeyReachable is true when the Account's L1 key was proven to exist and answer.
	ConditionKeyReachable = "KeyReachable"
)
