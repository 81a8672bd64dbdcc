package devstack

import (
	"bytes"
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

// WebhookConfigName is the name of both webhook configurations when they are built in Go (the fallback).
const WebhookConfigName = "apeiro-cmk-webhook"

// RenderWebhookConfigurations reads every Validating/MutatingWebhookConfiguration in the YAML files directly under
// deployBase (deploy/base; CRDs in subdirectories are not read) and points each webhook at baseURL + its service
// path, trusting caPEM. When deployBase holds none, it builds them from the webhook contract in docs/TEAM-NOTES.md
// so the stack works before deploy/ exists. The second result says where they came from.
func RenderWebhookConfigurations(deployBase, baseURL string, caPEM []byte) ([]client.Object, string, error) {
	objs, err := readWebhookConfigurations(deployBase)
	if err != nil {
		return nil, "", err
	}
	source := deployBase
	if len(objs) == 0 {
		objs = builtinWebhookConfigurations()
		source = "built-in path list (no webhook configurations in " + deployBase + ")"
	}
	for _, o := range objs {
		switch w := o.(type) {
		case *admissionregistrationv1.ValidatingWebhookConfiguration:
			for i := range w.Webhooks {
				if err := pointAt(&w.Webhooks[i].ClientConfig, baseURL, caPEM); err != nil {
					return nil, "", fmt.Errorf("%s/%s webhook %s: %w", "ValidatingWebhookConfiguration", w.Name, w.Webhooks[i].Name, err)
				}
			}
		case *admissionregistrationv1.MutatingWebhookConfiguration:
			for i := range w.Webhooks {
				if err := pointAt(&w.Webhooks[i].ClientConfig, baseURL, caPEM); err != nil {
					return nil, "", fmt.Errorf("%s/%s webhook %s: %w", "MutatingWebhookConfiguration", w.Name, w.Webhooks[i].Name, err)
				}
			}
		}
	}
	return objs, source, nil
}

// pointAt replaces a service reference by a URL on the local webhook process.
func pointAt(cc *admissionregistrationv1.WebhookClientConfig, baseURL string, caPEM []byte) error {
	path := ""
	switch {
	case cc.Service != nil && cc.Service.Path != nil:
		path = *cc.Service.Path
	case cc.URL != nil:
		// Already a URL (an overlay for out-of-cluster use): keep its path.
		u := *cc.URL
		if i := strings.Index(strings.TrimPrefix(u, "https://"), "/"); i >= 0 {
			path = strings.TrimPrefix(u, "https://")[i:]
		}
	}
	if path == "" {
		return errors.New("clientConfig has no path")
	}
	url := strings.TrimSuffix(baseURL, "/") + path
	cc.URL = &url
	cc.Service = nil
	cc.CABundle = append([]byte(nil), caPEM...)
	return nil
}

func readWebhookConfigurations(dir string) ([]client.Object, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", dir, err)
	}
	var files []string
	for _, e := range entries {
		if e.IsDir() || !(strings.HasSuffix(e.Name(), ".yaml") || strings.HasSuffix(e.Name(), ".yml")) {
			continue
		}
		if e.Name() == "kustomization.yaml" || e.Name() == "kustomization.yml" {
			continue
		}
		files = append(files, filepath.Join(dir, e.Name()))
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
			case tm.APIVersion == "admissionregistration.k8s.io/v1" && tm.Kind == "ValidatingWebhookConfiguration":
				obj = &admissionregistrationv1.ValidatingWebhookConfiguration{}
			case tm.APIVersion == "admissionregistration.k8s.io/v1" && tm.Kind == "MutatingWebhookConfiguration":
				obj = &admissionregistrationv1.MutatingWebhookConfiguration{}
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

// SplitYAML returns the non-empty documents of a multi-document YAML file.
func SplitYAML(path string) ([][]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	var docs [][]byte
	for _, d := range splitDocs(b) {
		if len(bytes.TrimSpace(stripComments(d))) > 0 {
			docs = append(docs, d)
		}
	}
	return docs, nil
}

// splitDocs splits at lines that are exactly "---" (optionally followed by spaces or a comment).
func splitDocs(b []byte) [][]byte {
	var docs [][]byte
	var cur []byte
	for _, line := range bytes.SplitAfter(b, []byte("\n")) {
		t := bytes.TrimRight(line, " \t\r\n")
		if bytes.Equal(t, []byte("---")) || bytes.HasPrefix(t, []byte("--- #")) {
			docs = append(docs, cur)
			cur = nil
			continue
		}
		cur = append(cur, line...)
	}
	return append(docs, cur)
}

func stripComments(b []byte) []byte {
	var out []byte
	for _, line := range bytes.SplitAfter(b, []byte("\n")) {
		if bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			continue
		}
		out = append(out, line...)
	}
	return out
}

// builtinWebhookConfigurations mirrors the webhook contract (docs/TEAM-NOTES.md) for use before deploy/base exists.
func builtinWebhookConfigurations() []client.Object {
	type hook struct {
		name, group, resource, path string
		scope                       admissionregistrationv1.ScopeType
		ops                         []admissionregistrationv1.OperationType
	}
	cud := []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update, admissionregistrationv1.Delete}
	cu := cud[:2]
	validating := []hook{
		{"vtenant.cmk.apeiro.io", "cmk.apeiro.io", "tenants", "/validate-cmk-apeiro-io-v1alpha1-tenant", admissionregistrationv1.ClusterScope, cud},
		{"vaccount.cmk.apeiro.io", "cmk.apeiro.io", "accounts", "/validate-cmk-apeiro-io-v1alpha1-account", admissionregistrationv1.NamespacedScope, cud},
		{"vserviceencryptionkey.cmk.apeiro.io", "cmk.apeiro.io", "serviceencryptionkeys", "/validate-cmk-apeiro-io-v1alpha1-serviceencryptionkey", admissionregistrationv1.NamespacedScope, cu},
		{"vwebhooknotification.cmk.apeiro.io", "cmk.apeiro.io", "webhooknotifications", "/validate-cmk-apeiro-io-v1alpha1-webhooknotification", admissionregistrationv1.NamespacedScope, cu},
		{"vopenkcmtenant.cmk.apeiro.io", "operations.openkcm.io", "tenants", "/validate-operations-openkcm-io-v1alpha1-tenant", admissionregistrationv1.NamespacedScope, cu},
	}
	mutating := []hook{
		{"mtenant.cmk.apeiro.io", "cmk.apeiro.io", "tenants", "/mutate-cmk-apeiro-io-v1alpha1-tenant", admissionregistrationv1.ClusterScope, cu},
		{"maccount.cmk.apeiro.io", "cmk.apeiro.io", "accounts", "/mutate-cmk-apeiro-io-v1alpha1-account", admissionregistrationv1.NamespacedScope, cu},
		{"mserviceencryptionkey.cmk.apeiro.io", "cmk.apeiro.io", "serviceencryptionkeys", "/mutate-cmk-apeiro-io-v1alpha1-serviceencryptionkey", admissionregistrationv1.NamespacedScope, cu},
		{"mwebhooknotification.cmk.apeiro.io", "cmk.apeiro.io", "webhooknotifications", "/mutate-cmk-apeiro-io-v1alpha1-webhooknotification", admissionregistrationv1.NamespacedScope, cu},
	}
	fail := admissionregistrationv1.Fail
	none := admissionregistrationv1.SideEffectClassNone
	equivalent := admissionregistrationv1.Equivalent
	timeout := int32(5)
	rule := func(h hook) []admissionregistrationv1.RuleWithOperations {
		scope := h.scope
		return []admissionregistrationv1.RuleWithOperations{{
			Operations: h.ops,
			Rule:       admissionregistrationv1.Rule{APIGroups: []string{h.group}, APIVersions: []string{"v1alpha1"}, Resources: []string{h.resource}, Scope: &scope},
		}}
	}
	cc := func(h hook) admissionregistrationv1.WebhookClientConfig {
		path := h.path
		return admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{
			Namespace: "apeiro-cmk-system", Name: "apeiro-cmk-webhook", Path: &path}}
	}
	v := &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: WebhookConfigName}}
	v.SetGroupVersionKind(admissionregistrationv1.SchemeGroupVersion.WithKind("ValidatingWebhookConfiguration"))
	for _, h := range validating {
		v.Webhooks = append(v.Webhooks, admissionregistrationv1.ValidatingWebhook{
			Name: h.name, ClientConfig: cc(h), Rules: rule(h), FailurePolicy: &fail, MatchPolicy: &equivalent,
			SideEffects: &none, TimeoutSeconds: &timeout, AdmissionReviewVersions: []string{"v1"},
		})
	}
	m := &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: WebhookConfigName}}
	m.SetGroupVersionKind(admissionregistrationv1.SchemeGroupVersion.WithKind("MutatingWebhookConfiguration"))
	for _, h := range mutating {
		m.Webhooks = append(m.Webhooks, admissionregistrationv1.MutatingWebhook{
			Name: h.name, ClientConfig: cc(h), Rules: rule(h), FailurePolicy: &fail, MatchPolicy: &equivalent,
			SideEffects: &none, TimeoutSeconds: &timeout, AdmissionReviewVersions: []string{"v1"},
		})
	}
	return []client.Object{v, m}
}
