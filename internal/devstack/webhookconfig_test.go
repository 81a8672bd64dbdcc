package devstack

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// contractPaths is the webhook path list of docs/TEAM-NOTES.md.
var contractPaths = []string{
	"/mutate-cmk-apeiro-io-v1alpha1-tenant", "/validate-cmk-apeiro-io-v1alpha1-tenant",
	"/mutate-cmk-apeiro-io-v1alpha1-account", "/validate-cmk-apeiro-io-v1alpha1-account",
	"/mutate-cmk-apeiro-io-v1alpha1-serviceencryptionkey", "/validate-cmk-apeiro-io-v1alpha1-serviceencryptionkey",
	"/validate-cmk-apeiro-io-v1alpha1-webhooknotification",
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
	tests := []struct {
		name      string
		dir       func(t *testing.T) string
		wantBuilt bool
	}{
		{"repository deploy/base", func(t *testing.T) string {
			d := filepath.Join(repoRoot(t), "deploy", "base")
			if _, err := os.Stat(filepath.Join(d, "webhooks.yaml")); err != nil {
				t.Skip("deploy/base/webhooks.yaml not there yet")
			}
			return d
		}, false},
		{"missing directory falls back to the contract", func(t *testing.T) string { return filepath.Join(t.TempDir(), "nope") }, true},
		{"directory without webhooks falls back", func(t *testing.T) string {
			d := t.TempDir()
			must(t, os.WriteFile(filepath.Join(d, "ns.yaml"), []byte("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n"), 0o644))
			return d
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := tt.dir(t)
			objs, source, err := RenderWebhookConfigurations(dir, base, ca)
			if err != nil {
				t.Fatal(err)
			}
			if built := strings.HasPrefix(source, "built-in"); built != tt.wantBuilt {
				t.Fatalf("source %q, want built-in=%v", source, tt.wantBuilt)
			}
			ccs := clientConfigs(objs)
			if len(ccs) == 0 {
				t.Fatal("no webhooks rendered")
			}
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
			for _, p := range contractPaths {
				if !seen[p] {
					t.Errorf("no webhook calls contract path %s", p)
				}
			}
		})
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
