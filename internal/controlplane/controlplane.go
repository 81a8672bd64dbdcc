package controlplane

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/client-go/rest"
)

// Binary names expected in Config.BinDir.
const (
	EtcdBinary      = "etcd"
	APIServerBinary = "kube-apiserver"
	KubectlBinary   = "kubectl"
)

// Config of a control plane.
type Config struct {
	// BinDir holds etcd and kube-apiserver (and kubectl, which Kubectl returns). Required.
	BinDir string
	// WorkDir receives data, certificates, logs and the kubeconfig. It is created if missing and left in place by
	// Stop (the caller owns it). Required.
	WorkDir string
	// StartTimeout bounds each readiness wait. Default 90s (kube-apiserver is ready in ~3s on an idle machine, far
	// slower on two cores busy compiling).
	StartTimeout time.Duration
	// StopGrace is how long Stop waits after SIGTERM before SIGKILL. Default 10s.
	StopGrace time.Duration
	// Progress receives one line per step; nil discards.
	Progress io.Writer
	// ExtraAPIServerArgs are appended to kube-apiserver's arguments (later flags win).
	ExtraAPIServerArgs []string
}

// ControlPlane is a running etcd + kube-apiserver pair.
type ControlPlane struct {
	cfg Config

	Etcd      *Process
	APIServer *Process

	// URL of the API server (https://127.0.0.1:<port>).
	URL string
	// CACertPEM verifies the API server's serving certificate.
	CACertPEM []byte
	// Token authenticates as user "admin" in group system:masters.
	Token string
	// KubeconfigPath is an admin kubeconfig in WorkDir.
	KubeconfigPath string
	// EtcdURL is etcd's client URL.
	EtcdURL string
	// CA signed the API server's certificate; callers may issue more loopback certificates with it.
	CA *CA
}

// maxPortAttempts: a free port can be taken between FreePorts and the bind; on "address already in use" the whole
// start is retried with new ports.
const maxPortAttempts = 3

// Start launches etcd, then kube-apiserver, and returns when /readyz answers ok. On error nothing is left running.
func Start(ctx context.Context, cfg Config) (*ControlPlane, error) {
	if cfg.BinDir == "" || cfg.WorkDir == "" {
		return nil, errors.New("controlplane: BinDir and WorkDir are required")
	}
	for _, b := range []string{EtcdBinary, APIServerBinary} {
		if _, err := os.Stat(filepath.Join(cfg.BinDir, b)); err != nil {
			return nil, fmt.Errorf("controlplane: %s not found in %s (build it with hack/peers/build-kube.sh): %w", b, cfg.BinDir, err)
		}
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 90 * time.Second
	}
	if cfg.StopGrace == 0 {
		cfg.StopGrace = 10 * time.Second
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	if err := os.MkdirAll(cfg.WorkDir, 0o755); err != nil {
		return nil, fmt.Errorf("controlplane: creating work dir: %w", err)
	}
	cp := &ControlPlane{cfg: cfg, Token: RandomToken()}
	if err := cp.preparePKI(); err != nil {
		return nil, err
	}
	var lastErr error
	for attempt := 1; attempt <= maxPortAttempts; attempt++ {
		err := cp.startOnce(ctx)
		if err == nil {
			return cp, nil
		}
		_ = cp.Stop()
		lastErr = err
		if !errors.Is(err, errPortInUse) {
			break
		}
		fmt.Fprintf(cfg.Progress, "controlplane: port taken between reservation and bind, retrying (%d/%d)\n", attempt, maxPortAttempts)
	}
	return nil, lastErr
}

var errPortInUse = errors.New("address already in use")

func (cp *ControlPlane) preparePKI() error {
	ca, err := NewCA("apeiro-cmk-dev-ca", 7*24*time.Hour)
	if err != nil {
		return fmt.Errorf("controlplane: %w", err)
	}
	cp.CA = ca
	cp.CACertPEM = ca.CertPEM
	certDir := filepath.Join(cp.cfg.WorkDir, "pki")
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		return fmt.Errorf("controlplane: %w", err)
	}
	serving, err := ca.IssueServing("kube-apiserver",
		[]net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.0.0.1")},
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"}, 7*24*time.Hour)
	if err != nil {
		return fmt.Errorf("controlplane: %w", err)
	}
	if err := serving.WriteFiles(filepath.Join(certDir, "apiserver.crt"), filepath.Join(certDir, "apiserver.key")); err != nil {
		return fmt.Errorf("controlplane: %w", err)
	}
	if err := os.WriteFile(filepath.Join(certDir, "ca.crt"), ca.CertPEM, 0o644); err != nil {
		return fmt.Errorf("controlplane: %w", err)
	}
	if _, _, err := writeServiceAccountKeys(certDir); err != nil {
		return fmt.Errorf("controlplane: %w", err)
	}
	tokens := tokenFileLine(cp.Token, "admin", "admin-uid", "system:masters")
	if err := os.WriteFile(filepath.Join(certDir, "tokens.csv"), []byte(tokens), 0o600); err != nil {
		return fmt.Errorf("controlplane: %w", err)
	}
	return nil
}

func (cp *ControlPlane) startOnce(ctx context.Context) error {
	cfg := cp.cfg
	ports, err := FreePorts(3)
	if err != nil {
		return fmt.Errorf("controlplane: %w", err)
	}
	etcdClient, etcdPeer, apiPort := ports[0], ports[1], ports[2]
	cp.EtcdURL = fmt.Sprintf("http://127.0.0.1:%d", etcdClient)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", etcdPeer)
	cp.URL = fmt.Sprintf("https://127.0.0.1:%d", apiPort)

	dataDir := filepath.Join(cfg.WorkDir, "etcd")
	// A previous attempt may have initialised the data dir with other peer URLs; etcd refuses to reuse it.
	if err := os.RemoveAll(dataDir); err != nil {
		return fmt.Errorf("controlplane: cleaning etcd data dir: %w", err)
	}
	start := time.Now()
	cp.Etcd, err = StartProcess("etcd", filepath.Join(cfg.BinDir, EtcdBinary), []string{
		"--data-dir=" + dataDir,
		"--name=default",
		"--listen-client-urls=" + cp.EtcdURL,
		"--advertise-client-urls=" + cp.EtcdURL,
		"--listen-peer-urls=" + peerURL,
		"--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=default=" + peerURL,
		"--unsafe-no-fsync", // throw-away data; fsync dominates write latency on shared CI disks
		"--log-level=warn",
	}, filepath.Join(cfg.WorkDir, "etcd.log"))
	if err != nil {
		return fmt.Errorf("controlplane: %w", err)
	}
	plain := &http.Client{Timeout: 2 * time.Second}
	if err := WaitReady(ctx, cfg.StartTimeout, cp.Etcd, func(ctx context.Context) error {
		return httpOK(ctx, plain, cp.EtcdURL+"/health", "")
	}); err != nil {
		return fmt.Errorf("controlplane: waiting for etcd: %w", err)
	}
	fmt.Fprintf(cfg.Progress, "controlplane: etcd ready on %s in %.1fs\n", cp.EtcdURL, time.Since(start).Seconds())

	certDir := filepath.Join(cfg.WorkDir, "pki")
	args := []string{
		"--etcd-servers=" + cp.EtcdURL,
		"--etcd-prefix=/registry",
		"--bind-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", apiPort),
		// Loopback-only hosts have no default route to pick an advertise address from; 127.0.0.1 is only
		// accepted with the endpoint reconciler off.
		"--advertise-address=127.0.0.1",
		"--endpoint-reconciler-type=none",
		"--tls-cert-file=" + filepath.Join(certDir, "apiserver.crt"),
		"--tls-private-key-file=" + filepath.Join(certDir, "apiserver.key"),
		"--cert-dir=" + certDir, // unused while tls files are given, but keeps writes inside WorkDir
		"--token-auth-file=" + filepath.Join(certDir, "tokens.csv"),
		"--authorization-mode=RBAC",
		"--service-account-issuer=" + cp.URL,
		"--service-account-key-file=" + filepath.Join(certDir, "sa.pub"),
		"--service-account-signing-key-file=" + filepath.Join(certDir, "sa.key"),
		"--service-cluster-ip-range=10.0.0.0/24",
		// No controller-manager creates default service accounts, so the admission plugin would reject pods.
		"--disable-admission-plugins=ServiceAccount",
		"--allow-privileged=true",
	}
	args = append(args, cfg.ExtraAPIServerArgs...)
	start = time.Now()
	cp.APIServer, err = StartProcess("kube-apiserver", filepath.Join(cfg.BinDir, APIServerBinary), args,
		filepath.Join(cfg.WorkDir, "kube-apiserver.log"))
	if err != nil {
		return fmt.Errorf("controlplane: %w", err)
	}
	client, err := cp.httpClient()
	if err != nil {
		return err
	}
	if err := WaitReady(ctx, cfg.StartTimeout, cp.APIServer, func(ctx context.Context) error {
		return httpOK(ctx, client, cp.URL+"/readyz", cp.Token)
	}); err != nil {
		return fmt.Errorf("controlplane: waiting for kube-apiserver /readyz: %w", err)
	}
	fmt.Fprintf(cfg.Progress, "controlplane: kube-apiserver ready on %s in %.1fs\n", cp.URL, time.Since(start).Seconds())

	kc, err := Kubeconfig("apeiro-cmk-dev", cp.URL, cp.CACertPEM, cp.Token)
	if err != nil {
		return fmt.Errorf("controlplane: %w", err)
	}
	cp.KubeconfigPath = filepath.Join(cfg.WorkDir, "kubeconfig")
	if err := os.WriteFile(cp.KubeconfigPath, kc, 0o600); err != nil {
		return fmt.Errorf("controlplane: writing kubeconfig: %w", err)
	}
	return nil
}

func (cp *ControlPlane) httpClient() (*http.Client, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(cp.CACertPEM) {
		return nil, errors.New("controlplane: CA certificate does not parse")
	}
	return &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
	}, nil
}

// RESTConfig returns an admin client configuration with rate limits raised for tests.
func (cp *ControlPlane) RESTConfig() *rest.Config {
	return &rest.Config{
		Host:            cp.URL,
		BearerToken:     cp.Token,
		TLSClientConfig: rest.TLSClientConfig{CAData: cp.CACertPEM},
		QPS:             200,
		Burst:           400,
	}
}

// Kubectl is the path of the kubectl that sits next to the control plane binaries.
func (cp *ControlPlane) Kubectl() string { return filepath.Join(cp.cfg.BinDir, KubectlBinary) }

// WorkDir of the control plane.
func (cp *ControlPlane) WorkDir() string { return cp.cfg.WorkDir }

// Stop stops kube-apiserver, then etcd (SIGTERM, SIGKILL after the grace period). Safe to call more than once and
// on a partly started control plane.
func (cp *ControlPlane) Stop() error {
	var errs []error
	if cp.APIServer != nil {
		if err := cp.APIServer.Stop(cp.cfg.StopGrace); err != nil {
			errs = append(errs, err)
		}
	}
	if cp.Etcd != nil {
		if err := cp.Etcd.Stop(cp.cfg.StopGrace); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// WaitReady polls check every 100ms until it succeeds, proc exits, ctx ends or timeout passes. An exit whose log
// says the port was taken is reported as errPortInUse so Start can retry.
func WaitReady(ctx context.Context, timeout time.Duration, proc *Process, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		cctx, ccancel := context.WithTimeout(ctx, 3*time.Second)
		lastErr = check(cctx)
		ccancel()
		if lastErr == nil {
			return nil
		}
		select {
		case <-proc.Done():
			err := proc.ExitError()
			if strings.Contains(proc.LogTail(40), "address already in use") {
				return fmt.Errorf("%w: %w", errPortInUse, err)
			}
			return err
		case <-ctx.Done():
			return fmt.Errorf("not ready after %s (last check: %v); last lines of %s:\n%s", timeout, lastErr, proc.LogPath, proc.LogTail(15))
		case <-tick.C:
		}
	}
}

func httpOK(ctx context.Context, c *http.Client, url, token string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}
