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
// path, trusting caPEM, so the local stack registers exactly what a cluster installation registers. The second result
// says where they came from.
func RenderWebhookConfigurations(deployBase, baseURL string, caPEM []byte) ([]client.Object, string, error) {
	objs, err := readWebhookConfigurations(deployBase)
	if err != nil {
		return nil, "", err
	}
	if len(objs) == 0 {
		return nil, "", fmt.Errorf("no webhook configurations in %s", deployBase)
	}
	source := deployBase
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
	return readAdmissionObjects(dir, map[string]func() client.Object{
		"ValidatingWebhookConfiguration": func() client.Object { return &admissionregistrationv1.ValidatingWebhookConfiguration{} },
		"MutatingWebhookConfiguration":   func() client.Object { return &admissionregistrationv1.MutatingWebhookConfiguration{} },
	})
}

// readAdmissionObjects returns the objects of the given admissionregistration.k8s.io/v1 kinds (kind → new empty
// object) found in the YAML files directly under dir, in file-name order, strictly decoded; kustomization files and
// other kinds are skipped, and a missing dir holds no objects.
func readAdmissionObjects(dir string, kinds map[string]func() client.Object) ([]client.Object, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", dir, err)
	}
	var files []string
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || n == "kustomization.yaml" || n == "kustomization.yml" || !(strings.HasSuffix(n, ".yaml") || strings.HasSuffix(n, ".yml")) {
			continue
		}
		files = append(files, filepath.Join(dir, n))
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
			newObj, ok := kinds[tm.Kind]
			if tm.APIVersion != "admissionregistration.k8s.io/v1" || !ok {
				continue
			}
			obj := newObj()
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
