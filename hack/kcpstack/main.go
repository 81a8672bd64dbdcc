// Command kcpstack is `make run-kcp`: it starts a real kcp, provisions the Platform Mesh fixture (a platform
// workspace with the mesh configuration, tenant workspaces root:acme, root:acme:eu, root:acme-dr, root:globex with the
// product CRDs), starts the webhook in kcp mode and registers it in every tenant workspace. It stays in the
// foreground until Ctrl-C, then stops everything it started.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/apeirora/apeiro-cmk/internal/controlplane"
	"github.com/apeirora/apeiro-cmk/pkg/kcp/kcpserver"
)

func main() {
	kcpBin := flag.String("kcp-bin", "", "Directory holding the kcp binary (hack/peers/build-kcp.sh).")
	webhookBin := flag.String("webhook-bin", "bin/webhook", "The webhook binary.")
	root := flag.String("root", ".", "Repository root.")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *kcpBin, *webhookBin, *root); err != nil {
		fmt.Fprintln(os.Stderr, "kcpstack:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, kcpBin, webhookBin, root string) error {
	// The fixture reads the CRDs and webhook configurations relative to the repository root.
	if err := os.Chdir(root); err != nil {
		return err
	}
	root = "."
	work := filepath.Join(root, ".dev", "kcp")
	_ = os.RemoveAll(work)
	if err := os.MkdirAll(work, 0o700); err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, ">> starting kcp")
	s, err := kcpserver.Start(ctx, kcpBin, work, 3*time.Minute)
	if err != nil {
		return err
	}
	defer s.Stop()
	fmt.Fprintf(os.Stderr, ">> kcp ready in %s; provisioning workspaces\n", s.StartupTime.Round(time.Millisecond))
	w, err := kcpserver.Provision(ctx, s)
	if err != nil {
		return err
	}

	certDir := filepath.Join(work, "webhook-certs")
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		return err
	}
	ca, err := controlplane.NewCA("apeiro-cmk-webhook-dev-ca", 7*24*time.Hour)
	if err != nil {
		return err
	}
	kp, err := ca.IssueServing("apeiro-cmk-webhook", []net.IP{net.ParseIP("127.0.0.1")}, []string{"localhost"}, 7*24*time.Hour)
	if err != nil {
		return err
	}
	if err := kp.WriteFiles(filepath.Join(certDir, "tls.crt"), filepath.Join(certDir, "tls.key")); err != nil {
		return err
	}
	ports, err := controlplane.FreePorts(3)
	if err != nil {
		return err
	}
	health := fmt.Sprintf("127.0.0.1:%d", ports[2])
	wh, err := controlplane.StartProcess("webhook", webhookBin, []string{
		"--kcp-kubeconfig=" + s.Kubeconfig, "--kcp-context=" + kcpserver.AdminContext, "--cert-dir=" + certDir, "--webhook-host=127.0.0.1",
		fmt.Sprintf("--webhook-port=%d", ports[0]), fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", ports[1]),
		"--health-probe-bind-address=" + health, "--tenant-admin-group-prefix=",
	}, filepath.Join(work, "webhook.log"),
		// The embedded local keystore (probes, L1 keys, wrapping) keeps its keys in the work directory.
		"APEIRO_LOCAL_KEYSTORE_DIR="+filepath.Join(work, "keystore-local"))
	if err != nil {
		return err
	}
	defer wh.Stop(10 * time.Second)
	hc := &http.Client{Timeout: 2 * time.Second}
	if err := controlplane.WaitReady(ctx, time.Minute, wh, func(ctx context.Context) error {
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
	}); err != nil {
		return fmt.Errorf("waiting for the webhook: %w\n%s", err, wh.LogTail(30))
	}
	url := fmt.Sprintf("https://127.0.0.1:%d", ports[0])
	if err := kcpserver.RegisterWebhooks(ctx, s.Base, w.Root, url, ca.CertPEM, w.Tenants()...); err != nil {
		return err
	}
	kubeconfig := filepath.Join(root, ".dev", "kcp.kubeconfig")
	if b, err := os.ReadFile(s.Kubeconfig); err == nil {
		_ = os.WriteFile(kubeconfig, b, 0o600)
	}
	fmt.Fprintf(os.Stderr, `>> ready. kcp admin kubeconfig: %s (context: root); webhook log: %s
   tenant workspaces: %s; mesh configuration: ConfigMap default/platform-mesh in %s
   try (K = the kubectl of hack/peers/build-kube.sh):
     $K --kubeconfig %s --server %s/clusters/%s get tenants.cmk.apeiro.io
   Ctrl-C stops everything.
`, kubeconfig, wh.LogPath, strings.Join(w.Tenants(), ", "), w.Platform, kubeconfig, s.Base.Host, w.Acme)
	select {
	case <-ctx.Done():
	case <-wh.Done():
		return fmt.Errorf("the webhook exited: %v\n%s", wh.ExitError(), wh.LogTail(30))
	}
	return nil
}
