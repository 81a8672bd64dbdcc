package devstack

import (
	"path/filepath"
	"slices"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
)

// TestReadAdmissionPolicies: the stack installs every policy of deploy/base with its binding, and the namespace
// label policy covers the subresources that can carry labels.
func TestReadAdmissionPolicies(t *testing.T) {
	objs, err := ReadAdmissionPolicies(filepath.Join(repoRoot(t), "deploy", "base"))
	must(t, err)
	policies := map[string]*admissionregistrationv1.ValidatingAdmissionPolicy{}
	bound := map[string]bool{}
	for _, o := range objs {
		switch p := o.(type) {
		case *admissionregistrationv1.ValidatingAdmissionPolicy:
			policies[p.Name] = p
		case *admissionregistrationv1.ValidatingAdmissionPolicyBinding:
			bound[p.Spec.PolicyName] = true
		}
	}
	for _, want := range []string{"apeiro-cmk-namespace-tenant-label", "apeiro-cmk-no-tenant-objects-in-system-namespace", "apeiro-cmk-metadata-size"} {
		if policies[want] == nil || !bound[want] {
			t.Errorf("policy %s missing or unbound (policies %v, bindings %v)", want, len(policies), bound)
		}
	}
	ns := policies["apeiro-cmk-namespace-tenant-label"]
	if ns == nil {
		return
	}
	var resources []string
	for _, r := range ns.Spec.MatchConstraints.ResourceRules {
		resources = append(resources, r.Resources...)
	}
	for _, r := range []string{"namespaces", "namespaces/status", "namespaces/finalize"} {
		if !slices.Contains(resources, r) {
			t.Errorf("namespace label policy does not match %s (matches %v)", r, resources)
		}
	}
}
