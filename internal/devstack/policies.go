package devstack

import (
	"context"
	"fmt"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// ReadAdmissionPolicies returns every ValidatingAdmissionPolicy and ValidatingAdmissionPolicyBinding in the YAML
// files directly under deployBase (deploy/base), so the local stack enforces exactly the in-process policies a
// cluster installation enforces. Policies are not webhooks: they stay installed when the webhook configurations are
// removed, as they would on a cluster whose webhook is down.
func ReadAdmissionPolicies(deployBase string) ([]client.Object, error) {
	return readAdmissionObjects(deployBase, map[string]func() client.Object{
		"ValidatingAdmissionPolicy":        func() client.Object { return &admissionregistrationv1.ValidatingAdmissionPolicy{} },
		"ValidatingAdmissionPolicyBinding": func() client.Object { return &admissionregistrationv1.ValidatingAdmissionPolicyBinding{} },
	})
}

// InstallAdmissionPolicies applies every policy and binding of deployBase and fails when the API server reports a
// policy's expressions as not compiling (status.typeChecking warnings are reported, not fatal).
func InstallAdmissionPolicies(ctx context.Context, c client.Client, deployBase string) (int, error) {
	objs, err := ReadAdmissionPolicies(deployBase)
	if err != nil {
		return 0, err
	}
	for _, o := range objs {
		if err := Apply(ctx, c, o.DeepCopyObject().(client.Object)); err != nil {
			return 0, fmt.Errorf("installing %T %s: %w", o, o.GetName(), err)
		}
	}
	return len(objs), nil
}
