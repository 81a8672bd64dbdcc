// Package kcpserver starts a real kcp server (built by hack/peers/build-kcp.sh) for tests, `make run-kcp` and the
// Definition-of-Done check, and provisions what apeiro-cmk needs in it: workspaces, CRDs, the mesh configuration and
// webhook registrations. It talks to kcp with client-go's dynamic client and kcp's API types only.
package kcpserver

import (
	"context"

	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/rest"

	"github.com/apeirora/apeiro-cmk/internal/controlplane"
	"github.com/apeirora/apeiro-cmk/pkg/kcp"
)

// AdminContext is the context of kcp's admin kubeconfig whose user (shard-admin) may use /clusters/* requests.
const AdminContext = "shard-base"

// Server is a running kcp.
type Server struct {
	// Kubeconfig is the admin kubeconfig kcp wrote (its current context addresses root).
	Kubeconfig string
	// Base is the admin user's configuration (kcp-admin) without a /clusters suffix: it creates workspaces and
	// objects (kcp records the creating user of a workspace, which a shard identity does not have).
	Base *rest.Config
	// Shard is the shard admin configuration (context AdminContext): it may list and watch across all workspaces.
	Shard *rest.Config
	// StartupTime is how long kcp took from exec to /readyz ok.
	StartupTime time.Duration
	proc        *controlplane.Process
	// webhookToken authenticates WebhookUser (identity.go).
	webhookToken string
}

// Start runs `kcp start` from binDir with its state under dir and waits (up to timeout) until /readyz answers ok.
func Start(ctx context.Context, binDir, dir string, timeout time.Duration) (*Server, error) {
	bin := filepath.Join(binDir, "kcp")
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("kcp binary: %w", err)
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ { // a port taken between FreePorts and bind: retry with new ones
		ports, err := controlplane.FreePorts(3)
		if err != nil {
			return nil, err
		}
		root := filepath.Join(dir, "kcp-"+strconv.Itoa(attempt))
		kubeconfig := filepath.Join(root, "admin.kubeconfig")
		if err := os.MkdirAll(root, 0o700); err != nil {
			return nil, err
		}
		tokens, token, err := tokenFile(root)
		if err != nil {
			return nil, err
		}
		start := time.Now()
		proc, err := controlplane.StartProcess("kcp", bin, []string{"start",
			"--root-directory=" + filepath.Join(root, ".kcp"), "--bind-address=127.0.0.1",
			"--secure-port=" + strconv.Itoa(ports[0]),
			"--embedded-etcd-client-port=" + strconv.Itoa(ports[1]), "--embedded-etcd-peer-port=" + strconv.Itoa(ports[2]),
			"--kubeconfig-path=" + kubeconfig, "--token-auth-file=" + tokens,
		}, filepath.Join(root, "kcp.log"))
		if err != nil {
			return nil, err
		}
		s := &Server{Kubeconfig: kubeconfig, proc: proc, webhookToken: token}
		if lastErr = s.waitReady(ctx, start.Add(timeout)); lastErr == nil {
			s.StartupTime = time.Since(start)
			return s, nil
		}
		_ = proc.Stop(10 * time.Second)
		if exited, _ := proc.Exited(); !exited {
			break
		}
	}
	return nil, lastErr
}

func (s *Server) waitReady(ctx context.Context, deadline time.Time) error {
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.proc.Done():
			return fmt.Errorf("kcp exited before it was ready: %v\n%s", s.proc.ExitError(), s.proc.LogTail(30))
		case <-time.After(500 * time.Millisecond):
		}
		if s.Base == nil {
			if _, err := os.Stat(s.Kubeconfig); err != nil {
				last = err
				continue
			}
			base, err := kcp.LoadConfig(s.Kubeconfig)
			if err != nil {
				last = err
				continue
			}
			shard, err := kcp.LoadConfigContext(s.Kubeconfig, AdminContext)
			if err != nil {
				last = err
				continue
			}
			s.Base, s.Shard = base, shard
		}
		if last = s.readyz(ctx); last == nil {
			return nil
		}
	}
	return fmt.Errorf("kcp not ready in time: %v\n%s", last, s.proc.LogTail(30))
}

func (s *Server) readyz(ctx context.Context) error {
	hc, err := rest.HTTPClientFor(s.Base)
	if err != nil {
		return err
	}
	hc.Timeout = 5 * time.Second
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.Base.Host+"/readyz", nil)
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/readyz: %s", resp.Status)
	}
	return nil
}

// Stop stops kcp.
func (s *Server) Stop() error { return s.proc.Stop(15 * time.Second) }

// Kill stops kcp at once (to simulate an outage).
func (s *Server) Kill() error { return s.proc.Stop(0) }

// LogTail returns the last n lines of kcp's log.
func (s *Server) LogTail(n int) string { return s.proc.LogTail(n) }

// PID is kcp's process id (for measuring its memory).
func (s *Server) PID() int { return s.proc.PID() }

// RSSBytes is kcp's resident set size as the kernel reports it (0 where /proc is not available).
func (s *Server) RSSBytes() int64 { return ProcessRSS(s.proc.PID()) }

// ProcessRSS reads VmRSS of pid from /proc (0 when unavailable).
func ProcessRSS(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
