package devstack

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/apeirora/apeiro-cmk/internal/controlplane"
)

// Replica is a second webhook process next to the stack's own, as a Deployment with two replicas runs them: same
// binary, flags, serving certificate and API server, its own ports and in-memory state.
type Replica struct {
	Process *controlplane.Process
	// URL is https://127.0.0.1:<port>; it serves with the stack's certificate (trusted by WebhookCAPEM).
	URL string
}

// StartReplica starts another webhook process with the stack's settings and waits until it is ready. It is not
// registered: point the webhook configurations at it (or at a balancer in front of both) with RegisterAt. The
// caller stops it.
func (s *Stack) StartReplica(ctx context.Context, name string) (*Replica, error) {
	ports, err := controlplane.FreePorts(3)
	if err != nil {
		return nil, err
	}
	health := fmt.Sprintf("127.0.0.1:%d", ports[2])
	args := append([]string{
		"--kubeconfig=" + s.ControlPlane.KubeconfigPath,
		"--cert-dir=" + filepath.Join(s.opts.WorkDir, "webhook-certs"),
		"--webhook-host=127.0.0.1",
		fmt.Sprintf("--webhook-port=%d", ports[0]),
		fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", ports[1]),
		"--health-probe-bind-address=" + health,
		"--region-source=sis",
	}, s.opts.WebhookArgs...)
	env := append([]string{"APEIRO_LOCAL_KEYSTORE_DIR=" + filepath.Join(s.opts.WorkDir, "keystore-local")}, s.opts.WebhookEnv...)
	p, err := controlplane.StartProcess(name, s.opts.WebhookBin, args, filepath.Join(s.opts.WorkDir, name+".log"), env...)
	if err != nil {
		return nil, err
	}
	hc := &http.Client{Timeout: 2 * time.Second}
	err = controlplane.WaitReady(ctx, s.opts.StartTimeout, p, func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+health+"/readyz", nil)
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
			return fmt.Errorf("/readyz: %s: %s", resp.Status, strings.TrimSpace(string(b)))
		}
		return nil
	})
	if err != nil {
		_ = p.Stop(s.opts.StopGrace)
		return nil, fmt.Errorf("devstack: waiting for webhook replica %s: %w", name, err)
	}
	return &Replica{Process: p, URL: fmt.Sprintf("https://127.0.0.1:%d", ports[0])}, nil
}

// RegisterAt points every webhook configuration of deploy/base at baseURL (which must serve with a certificate
// signed by WebhookCAPEM) and waits until the webhook answers through it. InstallWebhookConfigurations points them
// back at the stack's own process.
func (s *Stack) RegisterAt(ctx context.Context, baseURL string) error {
	cfgs, _, err := RenderWebhookConfigurations(filepath.Join(s.opts.Root, "deploy", "base"), baseURL, s.WebhookCAPEM)
	if err != nil {
		return fmt.Errorf("devstack: %w", err)
	}
	for _, o := range cfgs {
		if err := Apply(ctx, s.Client, o); err != nil {
			return fmt.Errorf("devstack: registering webhook configuration at %s: %w", baseURL, err)
		}
	}
	return s.WaitWebhookAnswering(ctx)
}

// WebhookCertFiles are the stack's serving certificate and key (shared by its replicas).
func (s *Stack) WebhookCertFiles() (certFile, keyFile string) {
	dir := filepath.Join(s.opts.WorkDir, "webhook-certs")
	return filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
}
