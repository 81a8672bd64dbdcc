package e2e

import (
	"bytes"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/apeirora/apeiro-cmk/internal/controlplane"
	"github.com/apeirora/apeiro-cmk/internal/devstack"
)

// certManagerStubs are schemaless stand-ins for cert-manager's CRDs, so the cert-manager overlay's Certificate and
// Issuer objects can be dry-run on the suite's own control plane (cert-manager's own schema is not checked).
const certManagerStubs = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: certificates.cert-manager.io
spec:
  group: cert-manager.io
  names: {kind: Certificate, listKind: CertificateList, plural: certificates, singular: certificate}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: issuers.cert-manager.io
spec:
  group: cert-manager.io
  names: {kind: Issuer, listKind: IssuerList, plural: issuers, singular: issuer}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
`

// TestDeployOverlaysDryRun proves every deploy/overlays/<name> is accepted by a real API server:
// `kubectl kustomize` and then `kubectl apply --dry-run=server`. It works on a copy of deploy/ with a throw-away
// serving pair in static-certs/tls (git-ignored in the repository). The webhook configurations are renamed with an
// -e2e-dryrun suffix: this stack's own configurations have the same names but point at a URL, and a dry-run
// patch of them would merge service and url into an invalid object.
func TestDeployOverlaysDryRun(t *testing.T) {
	needCluster(t)
	ctx := testContext(t)
	overlays, _ := filepath.Glob(filepath.Join(env.root, "deploy", "overlays", "*", "kustomization.yaml"))
	sort.Strings(overlays)
	if len(overlays) == 0 {
		t.Fatal("no deploy/overlays/*/kustomization.yaml")
	}
	deploy := filepath.Join(t.TempDir(), "deploy")
	if err := copyTree(filepath.Join(env.root, "deploy"), deploy); err != nil {
		t.Fatal(err)
	}
	if err := writeStaticCerts(filepath.Join(deploy, "overlays", "static-certs", "tls")); err != nil {
		t.Fatal(err)
	}
	overlays = append(overlays, componentOverlays(t, deploy)...) // certrenew_test.go
	// Namespaced objects cannot be dry-run into a namespace that a dry run "created".
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "apeiro-cmk-system"}}
	if err := env.client.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}

	for _, k := range overlays {
		dir := filepath.Dir(k)
		name := filepath.Base(dir)
		t.Run(name, func(t *testing.T) {
			build := runKubectl(ctx, "kustomize", filepath.Join(deploy, "overlays", name))
			if build.err != nil {
				t.Fatalf("kubectl kustomize deploy/overlays/%s: %s", name, build.output())
			}
			rendered, kinds, err := renameWebhookConfigurations(build.stdout)
			if err != nil {
				t.Fatal(err)
			}
			if kinds["cert-manager.io"] {
				ensureCertManagerKinds(t)
			}
			f := filepath.Join(t.TempDir(), name+".yaml")
			if err := os.WriteFile(f, rendered, 0o644); err != nil {
				t.Fatal(err)
			}
			res := runKubectl(ctx, "apply", "--dry-run=server", "-f", f)
			if res.err != nil {
				t.Fatalf("kubectl apply --dry-run=server of deploy/overlays/%s: %s", name, res.output())
			}
			t.Logf("%s", strings.TrimSpace(res.stdout))
			if get := runKubectl(ctx, "get", "validatingwebhookconfiguration", "apeiro-cmk-webhook-e2e-dryrun"); get.err == nil {
				t.Errorf("the dry run stored a webhook configuration")
			}
		})
	}
}

// ensureCertManagerKinds installs the stubs when the cluster has no cert-manager.io API (own cluster only).
func ensureCertManagerKinds(t *testing.T) {
	t.Helper()
	res := runKubectl(testContext(t), "api-resources", "--api-group=cert-manager.io", "-o", "name")
	if res.err == nil && strings.Contains(res.stdout, "certificates.cert-manager.io") {
		return
	}
	if env.stack == nil {
		t.Skip("the cluster has no cert-manager.io API; install cert-manager to dry-run this overlay")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "cert-manager-stubs.yaml"), []byte(certManagerStubs), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := devstack.InstallCRDs(testContext(t), env.client, dir, time.Minute); err != nil {
		t.Fatal(err)
	}
}

// renameWebhookConfigurations appends -e2e-dryrun to every webhook configuration's name and returns the API groups
// of all objects.
func renameWebhookConfigurations(stream string) ([]byte, map[string]bool, error) {
	groups := map[string]bool{}
	var out bytes.Buffer
	for _, doc := range strings.Split(stream, "\n---\n") {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var obj map[string]any
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			return nil, nil, fmt.Errorf("kustomize output: %w", err)
		}
		apiVersion, _ := obj["apiVersion"].(string)
		if g, _, ok := strings.Cut(apiVersion, "/"); ok {
			groups[g] = true
		}
		if kind, _ := obj["kind"].(string); kind == "ValidatingWebhookConfiguration" || kind == "MutatingWebhookConfiguration" {
			meta, _ := obj["metadata"].(map[string]any)
			meta["name"] = fmt.Sprint(meta["name"]) + "-e2e-dryrun"
		}
		b, err := yaml.Marshal(obj)
		if err != nil {
			return nil, nil, err
		}
		out.WriteString("---\n")
		out.Write(b)
	}
	return out.Bytes(), groups, nil
}

// writeStaticCerts writes ca.crt, tls.crt and tls.key as deploy/overlays/static-certs/sync-certs.sh would.
func writeStaticCerts(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	ca, err := controlplane.NewCA("apeiro-cmk-e2e-ca", time.Hour)
	if err != nil {
		return err
	}
	kp, err := ca.IssueServing("apeiro-cmk-webhook.apeiro-cmk-system.svc", []net.IP{net.ParseIP("127.0.0.1")},
		[]string{"apeiro-cmk-webhook.apeiro-cmk-system.svc"}, time.Hour)
	if err != nil {
		return err
	}
	if err := kp.WriteFiles(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "ca.crt"), ca.CertPEM, 0o644)
}

func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
}
