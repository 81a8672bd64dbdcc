package devstack

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/apeirora/apeiro-cmk/internal/controlplane"
)

// TokenReviewPath is where the webhook binary serves the API server's TokenReview authentication webhook (with
// --identity-config; cmd/webhook).
const TokenReviewPath = "/tokenreview"

// tokenWebhook is what Options.TokenReviewWebhook fixes before the control plane starts: the API server reads its
// authentication webhook kubeconfig once, so the webhook's port and serving CA cannot change afterwards (also not
// across RestartWebhook).
type tokenWebhook struct {
	port int
	ca   *controlplane.CA
	// KubeconfigPath is the authentication webhook kubeconfig handed to kube-apiserver.
	kubeconfigPath string
}

// prepareTokenWebhook picks the webhook's port and serving CA up front and writes the kubeconfig that points the
// API server's token authentication at https://127.0.0.1:<port>/tokenreview. It returns the kube-apiserver flags.
func (s *Stack) prepareTokenWebhook() ([]string, error) {
	if !s.opts.TokenReviewWebhook {
		return nil, nil
	}
	if err := os.MkdirAll(s.opts.WorkDir, 0o700); err != nil {
		return nil, err
	}
	ports, err := controlplane.FreePorts(1)
	if err != nil {
		return nil, err
	}
	ca, err := controlplane.NewCA("apeiro-cmk-webhook-dev-ca", 7*24*time.Hour)
	if err != nil {
		return nil, err
	}
	s.tw = &tokenWebhook{port: ports[0], ca: ca, kubeconfigPath: filepath.Join(s.opts.WorkDir, "authn-webhook.kubeconfig")}
	// The API server is the client; it needs no credentials of its own (restrict callers with the webhook's
	// --client-ca-file in production).
	kubeconfig := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: apeiro-cmk-identity
  cluster:
    server: https://127.0.0.1:%d%s
    certificate-authority-data: %s
users:
- name: kube-apiserver
  user: {}
contexts:
- name: webhook
  context: {cluster: apeiro-cmk-identity, user: kube-apiserver}
current-context: webhook
`, s.tw.port, TokenReviewPath, base64.StdEncoding.EncodeToString(ca.CertPEM))
	if err := os.WriteFile(s.tw.kubeconfigPath, []byte(kubeconfig), 0o600); err != nil {
		return nil, err
	}
	return []string{
		"--authentication-token-webhook-config-file=" + s.tw.kubeconfigPath,
		"--authentication-token-webhook-version=v1",
		// Short, so a test sees a role change (a new token) quickly; production keeps the default 2m.
		"--authentication-token-webhook-cache-ttl=5s",
	}, nil
}

// webhookCA returns the CA for the webhook's serving certificate: the fixed one when the API server authenticates
// tokens through the webhook, a new one otherwise.
func (s *Stack) webhookCA() (*controlplane.CA, error) {
	if s.tw != nil {
		return s.tw.ca, nil
	}
	return controlplane.NewCA("apeiro-cmk-webhook-dev-ca", 7*24*time.Hour)
}

// webhookPorts returns the webhook, metrics and health ports; the webhook port is the fixed one when set.
func (s *Stack) webhookPorts() ([]int, error) {
	if s.tw == nil {
		return controlplane.FreePorts(3)
	}
	p, err := controlplane.FreePorts(2)
	if err != nil {
		return nil, err
	}
	return []int{s.tw.port, p[0], p[1]}, nil
}
