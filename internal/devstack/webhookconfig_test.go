package devstack

import (
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/apeirora/apeiro-cmk/pkg/admission"
)

// servedPaths are the endpoints the webhook binary serves that deploy/base must register (the upstream
// operations.openkcm.io Tenant endpoint is registered by the optional deploy/components/openkcm-tenant).
func servedPaths() []string {
	var paths []string
	for p := range admission.NewHandlers(admission.Handlers{}).Endpoints() {
		if p != admission.PathValidateOpenKCMTenant {
			paths = append(paths, p)
		}
	}
	return paths
}

func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

func clientConfigs(objs []client.Object) map[string]admissionregistrationv1.WebhookClientConfig {
	out := map[string]admissionregistrationv1.WebhookClientConfig{}
	for _, o := range objs {
		switch w := o.(type) {
		case *admissionregistrationv1.ValidatingWebhookConfiguration:
			for _, h := range w.Webhooks {
				out[h.Name] = h.ClientConfig
			}
		case *admissionregistrationv1.MutatingWebhookConfiguration:
			for _, h := range w.Webhooks {
				out[h.Name] = h.ClientConfig
			}
		}
	}
	return out
}

func TestRenderWebhookConfigurations(t *testing.T) {
	const base = "https://127.0.0.1:12345"
	ca := []byte("-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n")
	objs, source, err := RenderWebhookConfigurations(filepath.Join(repoRoot(t), "deploy", "base"), base, ca)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(source, filepath.Join("deploy", "base")) {
		t.Fatalf("source %q", source)
	}
	ccs := clientConfigs(objs)
	seen := map[string]bool{}
	for name, cc := range ccs {
		if cc.Service != nil {
			t.Errorf("%s still has a service reference", name)
		}
		if cc.URL == nil || !strings.HasPrefix(*cc.URL, base+"/") {
			t.Errorf("%s: url %v does not start with %s/", name, cc.URL, base)
			continue
		}
		if string(cc.CABundle) != string(ca) {
			t.Errorf("%s: caBundle not set", name)
		}
		seen[strings.TrimPrefix(*cc.URL, base)] = true
	}
	for _, p := range servedPaths() {
		if !seen[p] {
			t.Errorf("deploy/base registers no webhook for served path %s", p)
		}
	}
	for p := range seen {
		if !slices.Contains(servedPaths(), p) {
			t.Errorf("deploy/base calls %s, which the webhook does not serve", p)
		}
	}
	if _, _, err := RenderWebhookConfigurations(t.TempDir(), base, ca); err == nil {
		t.Error("a directory without webhook configurations was accepted")
	}
}

func TestPointAtKeepsPathOfURL(t *testing.T) {
	u := "https://elsewhere.example:8443/validate-x"
	cc := admissionregistrationv1.WebhookClientConfig{URL: &u}
	must(t, pointAt(&cc, "https://127.0.0.1:1", []byte("ca")))
	if *cc.URL != "https://127.0.0.1:1/validate-x" {
		t.Fatalf("got %s", *cc.URL)
	}
	if err := pointAt(&admissionregistrationv1.WebhookClientConfig{}, "https://127.0.0.1:1", nil); err == nil {
		t.Fatal("a client config without a path was accepted")
	}
}

func TestSplitYAML(t *testing.T) {
	f := filepath.Join(t.TempDir(), "m.yaml")
	must(t, os.WriteFile(f, []byte("# header\n---\na: 1\n---\n# only a comment\n---\nb: 2\n--- # trailing\nc: 3\n"), 0o644))
	docs, err := SplitYAML(f)
	must(t, err)
	if len(docs) != 3 {
		t.Fatalf("got %d documents: %q", len(docs), docs)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
