package e2e

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/apeirora/apeiro-cmk/internal/controlplane"
	"github.com/apeirora/apeiro-cmk/internal/devstack"
	cmkv1alpha1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
)

// TestClientCertVerification runs the deploy/components/client-cert-verification setup on a control plane of its
// own: the webhook gets the component's --client-ca-file flag, and kube-apiserver an admission control config file
// whose kubeconfig gives it a client certificate for webhook calls. The API server's calls then pass, while any
// other caller of the webhook port, without a certificate or with one from another CA, fails the TLS handshake and
// learns nothing.
func TestClientCertVerification(t *testing.T) {
	needOwnCluster(t)
	ctx := testContext(t)
	dir := t.TempDir()
	caFlag := componentClientCAFlag(t)

	ca, err := controlplane.NewCA("apeiro-cmk-apiserver-client-ca", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	apiserverCert, err := ca.IssueClient("kube-apiserver-webhook-client", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, caFile := filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key"), filepath.Join(dir, "client-ca.crt")
	if err := apiserverCert.WriteFiles(certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	writeClientCertFile(t, caFile, string(ca.CertPEM))
	// The user "*" applies to every webhook the API server calls; on a cluster it is the service's DNS name
	// (docs/deployment.md, "Client certificates"). Loopback webhooks here get a new port per start.
	kubeconfig := filepath.Join(dir, "webhook-client.kubeconfig")
	writeClientCertFile(t, kubeconfig, fmt.Sprintf(`apiVersion: v1
kind: Config
users:
  - name: "*"
    user:
      client-certificate: %s
      client-key: %s
`, certFile, keyFile))
	admissionConfig := filepath.Join(dir, "admission.yaml")
	var plugins strings.Builder
	for _, p := range []string{"ValidatingAdmissionWebhook", "MutatingAdmissionWebhook"} {
		fmt.Fprintf(&plugins, `  - name: %s
    configuration:
      apiVersion: apiserver.config.k8s.io/v1
      kind: WebhookAdmissionConfiguration
      kubeConfigFile: %s
`, p, kubeconfig)
	}
	writeClientCertFile(t, admissionConfig, "apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\nplugins:\n"+plugins.String())

	s, err := devstack.Up(ctx, devstack.Options{
		KubeBin: env.kubeBin, WebhookBin: env.webhookBin, Root: env.root, WorkDir: filepath.Join(dir, "stack"),
		APIServerArgs: []string{"--admission-control-config-file=" + admissionConfig},
		WebhookArgs:   []string{caFlag + caFile, inUseGraceArg},
	})
	if err != nil {
		t.Fatalf("bringing up a stack whose webhook requires client certificates: %v", err)
	}
	t.Cleanup(func() { _ = s.Down() })

	t.Run("the API server's calls pass", func(t *testing.T) {
		// Up already waited for a webhook denial through the API server; a real write shows mutation works too.
		tn := tenantObj("clientcert-acme", cmkv1alpha1.TenantTypeRoot, "", "")
		if err := s.Client.Create(ctx, tn); err != nil {
			t.Fatalf("create through the API server: %v", err)
		}
		got := &cmkv1alpha1.Tenant{}
		if err := s.Client.Get(ctx, client.ObjectKeyFromObject(tn), got); err != nil {
			t.Fatal(err)
		}
		if got.Labels[cmkv1alpha1.TenantLabel] != tn.Name {
			t.Fatalf("the mutating webhook did not run: labels %v", got.Labels)
		}
		err := s.Client.Create(ctx, tenantObj("clientcert-orphan", cmkv1alpha1.TenantTypeNested, "clientcert-missing", ""), client.DryRunAll)
		if !devstack.IsWebhookDenial(err) {
			t.Fatalf("want the validating webhook's denial, got %v", err)
		}
	})

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.WebhookCAPEM)
	other, err := controlplane.NewCA("someone-else", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	otherCert, err := other.IssueClient("pod", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		cert    *controlplane.KeyPair
		maxTLS  uint16
		refused bool
	}{
		{name: "no client certificate (TLS 1.3)", refused: true},
		{name: "no client certificate (TLS 1.2)", maxTLS: tls.VersionTLS12, refused: true},
		{name: "certificate of another CA", cert: otherCert, refused: true},
		{name: "the API server's certificate", cert: apiserverCert},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12, MaxVersion: tc.maxTLS}
			if tc.cert != nil {
				pair, err := tls.X509KeyPair(tc.cert.CertPEM, tc.cert.KeyPEM)
				if err != nil {
					t.Fatal(err)
				}
				cfg.Certificates = []tls.Certificate{pair}
			}
			hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
			review := `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"1","kind":{"group":"cmk.apeiro.io","version":"v1alpha1","kind":"Tenant"},"operation":"DELETE","name":"clientcert-acme"}}`
			resp, err := hc.Post(s.WebhookURL+"/validate-cmk-apeiro-io-v1alpha1-tenant", "application/json", bytes.NewBufferString(review))
			if tc.refused {
				if err == nil {
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					t.Fatalf("answered %s without a valid client certificate: %s", resp.Status, body)
				}
				if !strings.Contains(err.Error(), "tls") && !strings.Contains(err.Error(), "reset") && !strings.Contains(err.Error(), "EOF") {
					t.Fatalf("want a TLS-level refusal, got %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("the API server's certificate was refused: %v", err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %s", resp.Status)
			}
		})
	}
}

// componentClientCAFlag returns the webhook flag deploy/components/client-cert-verification adds (up to the "="),
// so the test runs exactly what the component configures.
func componentClientCAFlag(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(env.root, "deploy", "components", "client-cert-verification", "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		Patches []struct {
			Patch string `json:"patch"`
		} `json:"patches"`
	}
	if err := yaml.Unmarshal(b, &k); err != nil {
		t.Fatal(err)
	}
	for _, p := range k.Patches {
		var ops []struct {
			Path  string `json:"path"`
			Value any    `json:"value"`
		}
		if err := yaml.Unmarshal([]byte(p.Patch), &ops); err != nil {
			t.Fatal(err)
		}
		for _, op := range ops {
			if v, ok := op.Value.(string); ok && strings.HasPrefix(v, "--client-ca-file=") && strings.HasSuffix(op.Path, "/args/-") {
				return "--client-ca-file="
			}
		}
	}
	t.Fatal("deploy/components/client-cert-verification does not add --client-ca-file to the webhook's args")
	return ""
}

func writeClientCertFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
