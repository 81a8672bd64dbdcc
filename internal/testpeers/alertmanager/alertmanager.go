// Package alertmanager starts Debian's prometheus-alertmanager for tests: a private storage directory, free
// ports, gossip disabled, and a route that delivers every alert within about a second to a webhook receiver served
// by the test process, so a test can see both Alertmanager's API and what a receiver got.
package alertmanager

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/apeirora/apeiro-cmk/internal/testpeers"
)

// Hint says how to install the peer.
const Hint = "run make alertmanager (installs Debian's prometheus-alertmanager)"

// Notification is what Alertmanager's webhook receiver posts (the fields tests read).
type Notification struct {
	Status string `json:"status"`
	Alerts []struct {
		Status string            `json:"status"`
		Labels map[string]string `json:"labels"`
	} `json:"alerts"`
}

// Server is a running Alertmanager.
type Server struct {
	URL  string // http://127.0.0.1:<port>
	addr string
	bin  string
	dir  string
	t    testing.TB

	mu       sync.Mutex
	cmd      *exec.Cmd
	received []Notification
}

// Start starts Alertmanager and its test receiver; both stop when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := testpeers.Command(t, "prometheus-alertmanager", Hint)
	s := &Server{bin: bin, dir: t.TempDir(), t: t}
	hook := &http.Server{Handler: http.HandlerFunc(s.receive), ReadHeaderTimeout: 5 * time.Second}
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go hook.Serve(hl)
	t.Cleanup(func() { hook.Close() })
	cfg := fmt.Sprintf(`route: {receiver: hook, group_by: ['...'], group_wait: 1s, group_interval: 1s, repeat_interval: 1h}
receivers:
  - name: hook
    webhook_configs: [{url: 'http://%s/hook', send_resolved: true}]
`, hl.Addr())
	if err := os.WriteFile(filepath.Join(s.dir, "am.yml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	s.addr = freeAddr(t)
	s.URL = "http://" + s.addr
	s.Restart()
	t.Cleanup(s.Stop)
	return s
}

func freeAddr(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Stop stops Alertmanager (an outage); Restart brings it back on the same address and storage.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd := s.cmd
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// Restart starts Alertmanager (again) and waits until it is ready.
func (s *Server) Restart() {
	s.t.Helper()
	cmd := exec.Command(s.bin,
		"--config.file="+filepath.Join(s.dir, "am.yml"),
		"--storage.path="+filepath.Join(s.dir, "data"),
		"--web.listen-address="+s.addr,
		"--cluster.listen-address=",
		"--log.level=warn")
	log, err := os.Create(filepath.Join(s.dir, "alertmanager.log"))
	if err != nil {
		s.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("starting alertmanager: %v", err)
	}
	s.mu.Lock()
	s.cmd = cmd
	s.mu.Unlock()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(s.URL + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	b, _ := os.ReadFile(filepath.Join(s.dir, "alertmanager.log"))
	s.t.Fatalf("alertmanager not ready after 30s:\n%s", b)
}

func (s *Server) receive(w http.ResponseWriter, r *http.Request) {
	var n Notification
	if err := json.NewDecoder(io.LimitReader(r.Body, 16<<20)).Decode(&n); err == nil {
		s.mu.Lock()
		s.received = append(s.received, n)
		s.mu.Unlock()
	}
	w.WriteHeader(http.StatusOK)
}

// Received returns the receiver's notifications so far.
func (s *Server) Received() []Notification {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Notification(nil), s.received...)
}

// WaitReceived polls until cond holds for a receiver notification's alert labels, or fails after timeout.
func (s *Server) WaitReceived(ctx context.Context, t testing.TB, timeout time.Duration, status string, cond func(labels map[string]string) bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		for _, n := range s.Received() {
			for _, a := range n.Alerts {
				if (status == "" || a.Status == status) && cond(a.Labels) {
					return
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the receiver got no %q alert matching the condition within %v (got %d notifications)", status, timeout, len(s.Received()))
}

// Process is an Alertmanager started outside a test (a suite's TestMain), without a receiver.
type Process struct {
	URL string
	cmd *exec.Cmd
}

// Launch starts Alertmanager with its data in dir and waits until it is ready; the caller stops it. It returns an
// error when prometheus-alertmanager is not installed.
func Launch(dir string) (*Process, error) {
	bin, err := exec.LookPath("prometheus-alertmanager")
	if err != nil {
		return nil, fmt.Errorf("prometheus-alertmanager not found on PATH; %s", Hint)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	cfg := "route: {receiver: none, group_wait: 1s, group_interval: 1s, repeat_interval: 1h}\nreceivers: [{name: none}]\n"
	if err := os.WriteFile(filepath.Join(dir, "am.yml"), []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	log, err := os.Create(filepath.Join(dir, "alertmanager.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "am.yml"), "--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--cluster.listen-address=", "--log.level=warn")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Process{URL: "http://" + addr, cmd: cmd}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if resp, err := http.Get(p.URL + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
	}
	p.Stop()
	return nil, fmt.Errorf("alertmanager not ready after 30s (log: %s)", filepath.Join(dir, "alertmanager.log"))
}

// Stop ends the process.
func (p *Process) Stop() {
	if p == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}
