package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/apeirora/apeiro-cmk/pkg/admission"
	"github.com/apeirora/apeiro-cmk/pkg/hierarchy"
)

// review is one prepared AdmissionReview: where it goes, its body, and the verdict our webhook must give.
type review struct {
	Name    string
	Path    string
	Body    []byte
	Allowed bool
}

// The mix: a create of each kind, once allowed and once denied for a precise reason, so half of all requests are
// denials (which build a message with field causes) and every check of the create path runs: ownership, live
// tenant/account state, hierarchy walk, region policy, keystore probe (answered from its cache when warm).
var mix = []struct {
	name, path, manifest string
	allowed              bool
	// deny alters the mutated object so that validation must deny it.
	deny func(u *unstructured.Unstructured)
}{
	{"tenant-create", admission.PathValidateTenant, `
apiVersion: cmk.apeiro.io/v1alpha1
kind: Tenant
metadata: {name: bench-tenant}
spec: {type: Nested, parent: acme, region: eu-central}`, true, nil},
	{"tenant-create-dangling-parent", admission.PathValidateTenant, `
apiVersion: cmk.apeiro.io/v1alpha1
kind: Tenant
metadata: {name: bench-tenant-denied}
spec: {type: Nested, parent: acme, region: eu-central}`, false, func(u *unstructured.Unstructured) {
		_ = unstructured.SetNestedField(u.Object, "no-such-tenant", "spec", "parent")
		l := u.GetLabels()
		if l != nil && l[admission.ParentLabel] != "" {
			l[admission.ParentLabel] = "no-such-tenant"
			u.SetLabels(l)
		}
	}},
	{"account-create", admission.PathValidateAccount, `
apiVersion: cmk.apeiro.io/v1alpha1
kind: Account
metadata: {name: bench-account, namespace: acme-eu}
spec: {keystore: local, keyRef: acme-eu-l1, region: eu-central}`, true, nil},
	{"account-create-unassigned-namespace", admission.PathValidateAccount, `
apiVersion: cmk.apeiro.io/v1alpha1
kind: Account
metadata: {name: bench-account-denied, namespace: acme-eu}
spec: {keystore: local, keyRef: acme-eu-l1, region: eu-central}`, false, func(u *unstructured.Unstructured) {
		u.SetNamespace("no-tenant") // a namespace of no tenant (examples/00-world)
	}},
	{"key-create", admission.PathValidateServiceEncryption, `
apiVersion: cmk.apeiro.io/v1alpha1
kind: ServiceEncryptionKey
metadata: {name: bench-key, namespace: acme-eu-payments}
spec: {algorithm: AES256, accountRef: {namespace: acme-eu, name: main}}`, true, nil},
	{"key-create-cross-tenant", admission.PathValidateServiceEncryption, `
apiVersion: cmk.apeiro.io/v1alpha1
kind: ServiceEncryptionKey
metadata: {name: bench-key-denied, namespace: acme-eu-payments}
spec: {algorithm: AES256, accountRef: {namespace: acme-eu, name: main}}`, false, func(u *unstructured.Unstructured) {
		_ = unstructured.SetNestedField(u.Object, "globex", "spec", "accountRef", "namespace")
		l := u.GetLabels()
		l[admission.AccountRefLabel] = admission.AccountRefValue(hierarchy.AccountKey{Namespace: "globex", Name: "main"})
		u.SetLabels(l)
	}},
}

// buildReviews turns the mix into AdmissionReview bodies. Each object is first created as a server-side dry run
// through the API server, so it carries exactly what the mutating webhooks stamp (ownership and reference labels),
// as the validating webhook receives it in production.
func buildReviews(ctx context.Context, c client.Client, user authenticationv1.UserInfo) ([]review, error) {
	var out []review
	for i, m := range mix {
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(strings.TrimSpace(m.manifest)), &u.Object); err != nil {
			return nil, fmt.Errorf("%s: %w", m.name, err)
		}
		if err := c.Create(ctx, u, client.DryRunAll); err != nil {
			return nil, fmt.Errorf("%s: dry-run create through the API server: %w", m.name, err)
		}
		for _, f := range []string{"uid", "resourceVersion", "creationTimestamp", "managedFields", "generation"} {
			unstructured.RemoveNestedField(u.Object, "metadata", f)
		}
		if m.deny != nil {
			m.deny(u)
		}
		raw, err := json.Marshal(u.Object)
		if err != nil {
			return nil, err
		}
		gvk := u.GroupVersionKind()
		ar := admissionv1.AdmissionReview{
			TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
			Request: &admissionv1.AdmissionRequest{
				UID:             types.UID(fmt.Sprintf("00000000-0000-4000-8000-%012d", i)),
				Kind:            metav1.GroupVersionKind{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind},
				Resource:        metav1.GroupVersionResource{Group: gvk.Group, Version: gvk.Version, Resource: strings.ToLower(gvk.Kind) + "s"},
				RequestKind:     &metav1.GroupVersionKind{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind},
				RequestResource: &metav1.GroupVersionResource{Group: gvk.Group, Version: gvk.Version, Resource: strings.ToLower(gvk.Kind) + "s"},
				Name:            u.GetName(),
				Namespace:       u.GetNamespace(),
				Operation:       admissionv1.Create,
				UserInfo:        user,
				Object:          runtime.RawExtension{Raw: raw},
				DryRun:          new(false),
				Options:         runtime.RawExtension{Raw: []byte(`{"apiVersion":"meta.k8s.io/v1","kind":"CreateOptions"}`)},
			},
		}
		body, err := json.Marshal(ar)
		if err != nil {
			return nil, err
		}
		out = append(out, review{Name: m.name, Path: m.path, Body: body, Allowed: m.allowed})
	}
	return out, nil
}
