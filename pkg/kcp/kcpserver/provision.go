package kcpserver

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	tenancyv1alpha1 "github.com/kcp-dev/kcp/sdk/apis/tenancy/v1alpha1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/apeirora/apeiro-cmk/pkg/kcp"
)

var (
	crdGVR       = apiextensionsv1.SchemeGroupVersion.WithResource("customresourcedefinitions")
	configMapGVR = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
	namespaceGVR = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
)

// Client returns a dynamic client for the workspace at path.
func Client(base *rest.Config, path string) (dynamic.Interface, error) {
	return dynamic.NewForConfig(kcp.ForCluster(base, path))
}

// CreateWorkspace creates the workspace name under parent (a path) with the given annotations, waits until it is
// Ready and returns its path. An existing workspace is reused.
func CreateWorkspace(ctx context.Context, base *rest.Config, parent, name string, annotations map[string]string) (string, error) {
	dc, err := Client(base, parent)
	if err != nil {
		return "", err
	}
	ws := &tenancyv1alpha1.Workspace{
		TypeMeta:   metav1.TypeMeta{APIVersion: tenancyv1alpha1.SchemeGroupVersion.String(), Kind: "Workspace"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations},
	}
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(ws)
	if err != nil {
		return "", err
	}
	ri := dc.Resource(kcp.WorkspacesGVR)
	if _, err := ri.Create(ctx, &unstructured.Unstructured{Object: obj}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("creating workspace %s:%s: %w", parent, name, err)
	}
	path := parent + ":" + name
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		u, err := ri.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		phase, _, _ := unstructured.NestedString(u.Object, "status", "phase")
		return phase == "Ready", nil
	})
	if err != nil {
		return "", fmt.Errorf("workspace %s did not become Ready: %w", path, err)
	}
	return path, nil
}

// ApplyCRDs creates the CRDs in the given files in the workspace at path and waits until they are Established.
func ApplyCRDs(ctx context.Context, base *rest.Config, path string, files ...string) error {
	dc, err := Client(base, path)
	if err != nil {
		return err
	}
	var names []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		var u unstructured.Unstructured
		if err := yaml.Unmarshal(b, &u.Object); err != nil {
			return fmt.Errorf("%s: %w", filepath.Base(f), err)
		}
		if _, err := dc.Resource(crdGVR).Create(ctx, &u, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating CRD %s in %s: %w", u.GetName(), path, err)
		}
		names = append(names, u.GetName())
	}
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		for _, n := range names {
			u, err := dc.Resource(crdGVR).Get(ctx, n, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			var crd apiextensionsv1.CustomResourceDefinition
			if runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &crd) != nil {
				return false, nil
			}
			established := false
			for _, c := range crd.Status.Conditions {
				if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
					established = true
				}
			}
			if !established {
				return false, nil
			}
		}
		return true, nil
	})
}

// EnsureNamespace creates namespace ns in the workspace at path (existing is fine).
func EnsureNamespace(ctx context.Context, base *rest.Config, path, ns string) error {
	dc, err := Client(base, path)
	if err != nil {
		return err
	}
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": ns}}}
	if _, err := dc.Resource(namespaceGVR).Create(ctx, u, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s in %s: %w", ns, path, err)
	}
	return nil
}

// PutMeshConfig creates or replaces the mesh configuration ConfigMap (data key config.yaml) in the workspace at path.
func PutMeshConfig(ctx context.Context, base *rest.Config, path, ns, name, config string) error {
	dc, err := Client(base, path)
	if err != nil {
		return err
	}
	if err := EnsureNamespace(ctx, base, path, ns); err != nil {
		return err
	}
	ri := dc.Resource(configMapGVR).Namespace(ns)
	u, err := ri.Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		u = &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap",
			"metadata": map[string]any{"name": name, "namespace": ns}, "data": map[string]any{kcp.MeshConfigKey: config}}}
		_, err = ri.Create(ctx, u, metav1.CreateOptions{})
	case err == nil:
		_ = unstructured.SetNestedField(u.Object, config, "data", kcp.MeshConfigKey)
		_, err = ri.Update(ctx, u, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("writing the mesh configuration %s/%s in %s: %w", ns, name, path, err)
	}
	return nil
}

// Create creates obj (any typed or unstructured object) in the workspace at path and returns the stored object.
func Create(ctx context.Context, base *rest.Config, path string, gvr schema.GroupVersionResource, obj any, opts metav1.CreateOptions) (*unstructured.Unstructured, error) {
	dc, err := Client(base, path)
	if err != nil {
		return nil, err
	}
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{Object: m}
	var ri dynamic.ResourceInterface = dc.Resource(gvr)
	if ns := u.GetNamespace(); ns != "" {
		ri = dc.Resource(gvr).Namespace(ns)
	}
	return ri.Create(ctx, u, opts)
}

// CRDFiles lists the product CRDs under root (deploy/base/crds).
func CRDFiles(root string) ([]string, error) {
	m, err := filepath.Glob(filepath.Join(root, "deploy", "base", "crds", "*.yaml"))
	if err != nil || len(m) == 0 {
		return nil, fmt.Errorf("no CRDs under %s/deploy/base/crds", root)
	}
	return m, nil
}

// IsDenied reports whether err is an admission denial by a webhook whose message contains all of want.
func IsDenied(err error, want ...string) bool {
	if err == nil || !apierrors.IsForbidden(err) && !apierrors.IsInvalid(err) {
		return false
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			return false
		}
	}
	return true
}
