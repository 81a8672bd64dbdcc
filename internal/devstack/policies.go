package devstack

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// ReadAdmissionPolicies returns every ValidatingAdmissionPolicy and ValidatingAdmissionPolicyBinding in the YAML
// files directly under deployBase (deploy/base), so the local stack enforces exactly the in-process policies a
// cluster installation enforces. Policies are not webhooks: they stay installed when the webhook configurations are
// removed, as they would on a cluster whose webhook is down.
func ReadAdmissionPolicies(deployBase string) ([]client.Object, error) {
	entries, err := os.ReadDir(deployBase)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", deployBase, err)
	}
	var files []string
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || n == "kustomization.yaml" || !(strings.HasSuffix(n, ".yaml") || strings.HasSuffix(n, ".yml")) {
			continue
		}
		files = append(files, filepath.Join(deployBase, n))
	}
	sort.Strings(files)
	var out []client.Object
	for _, f := range files {
		docs, err := SplitYAML(f)
		if err != nil {
			return nil, err
		}
		for _, doc := range docs {
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal(doc, &tm); err != nil {
				return nil, fmt.Errorf("%s: %w", f, err)
			}
			var obj client.Object
			switch {
			case tm.APIVersion == "admissionregistration.k8s.io/v1" && tm.Kind == "ValidatingAdmissionPolicy":
				obj = &admissionregistrationv1.ValidatingAdmissionPolicy{}
			case tm.APIVersion == "admissionregistration.k8s.io/v1" && tm.Kind == "ValidatingAdmissionPolicyBinding":
				obj = &admissionregistrationv1.ValidatingAdmissionPolicyBinding{}
			default:
				continue
			}
			if err := yaml.UnmarshalStrict(doc, obj); err != nil {
				return nil, fmt.Errorf("%s: %s: %w", f, tm.Kind, err)
			}
			out = append(out, obj)
		}
	}
	return out, nil
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
