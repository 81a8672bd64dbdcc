// Package vault starts the OpenBao-compatible transit test peer: a HashiCorp Vault dev server built from
// hack/peers/vault (make vault-bin; BUSL-1.1, used only as a local test peer, see docs/keystore-openbao.md). It
// listens on free loopback ports, keeps state in memory, and is stopped by the test's cleanup. The OpenBao client
// (github.com/openbao/openbao/api/v2) talks to it unchanged.
package vault

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	bao "github.com/openbao/openbao/api/v2"

	"github.com/apeirora/apeiro-cmk/internal/testpeers"
)

// Server is a running dev server.
type Server struct {
	Addr      string // http://127.0.0.1:<port>
	RootToken string
	Root      *bao.Client // authenticated with the root token (test setup only)

	// CACertFile is the dev server's generated CA (StartTLS only).
	CACertFile string

	bin, dir  string
	tls       bool
	port      int
	mu        sync.Mutex
	cmd       *exec.Cmd
	unsealKey string
	done      chan struct{}
}

// PluginPolicy is the least-privilege policy of the keystore plugin under mount prefix "transit": tenant mounts
// (sys/mounts/transit/<tenant>) and everything inside them.
const PluginPolicy = `
path "transit/*" { capabilities = ["create", "read", "update", "delete", "list"] }
path "sys/mounts/transit/*" { capabilities = ["create", "read", "update", "delete"] }
`

// Bin returns the vault binary from VAULT_BIN (a directory), or skips / fails via testpeers.
func Bin(t testing.TB) string {
	t.Helper()
	dir := testpeers.Env(t, "VAULT_BIN", "run `make vault-bin` and set VAULT_BIN to the directory it prints (bash hack/peers/build-vault.sh)")
	bin := filepath.Join(dir, "vault")
	if _, err := os.Stat(bin); err != nil {
		testpeers.Missing(t, "VAULT_BIN has no vault binary: "+bin)
	}
	return bin
}

// Start starts a dev server and registers Stop with t.Cleanup.
func Start(t testing.TB) *Server { t.Helper(); return start(t, false) }

// StartTLS starts a dev server with an HTTPS listener (-dev-tls; its generated CA is CACertFile), e.g. for cert auth.
func StartTLS(t testing.TB) *Server { t.Helper(); return start(t, true) }

func start(t testing.TB, useTLS bool) *Server {
	t.Helper()
	s, err := launchDev(Bin(t), t.TempDir(), useTLS)
	if err != nil {
		t.Fatalf("starting vault dev server: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// StartDev starts a dev server from the vault binary bin with its state and log in dir, outside a test (the
// `make run` dev stack). The caller stops it with Stop.
func StartDev(bin, dir string) (*Server, error) { return launchDev(bin, dir, false) }

func launchDev(bin, dir string, useTLS bool) (*Server, error) {
	s := &Server{bin: bin, dir: dir, tls: useTLS}
	rnd := make([]byte, 12)
	_, _ = rand.Read(rnd)
	s.RootToken = "root-" + hex.EncodeToString(rnd)
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if s.port, err = freePortPair(); err != nil {
			continue
		}
		if err = s.launch(); err == nil {
			return s, nil
		}
	}
	return nil, err
}

// LogFile is the server's log (stdout and stderr).
func (s *Server) LogFile() string { return filepath.Join(s.dir, "vault.log") }

// freePortPair finds p such that p and p+1 (the dev server's cluster port) are both free.
func freePortPair() (int, error) {
	for i := 0; i < 20; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		p := l.Addr().(*net.TCPAddr).Port
		l2, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+1))
		_ = l.Close()
		if err == nil {
			_ = l2.Close()
			return p, nil
		}
	}
	return 0, fmt.Errorf("no free loopback port pair")
}

func (s *Server) launch() error {
	s.Addr = "http://127.0.0.1:" + strconv.Itoa(s.port)
	args := []string{"server", "-dev", "-dev-listen-address=127.0.0.1:" + strconv.Itoa(s.port),
		"-dev-root-token-id=" + s.RootToken, "-dev-no-store-token"}
	if s.tls {
		certDir := filepath.Join(s.dir, "tls")
		_ = os.MkdirAll(certDir, 0o700)
		args = append(args, "-dev-tls", "-dev-tls-cert-dir="+certDir)
		s.Addr = "https://127.0.0.1:" + strconv.Itoa(s.port)
		s.CACertFile = filepath.Join(certDir, "vault-ca.pem")
	}
	cmd := exec.Command(s.bin, args...)
	cmd.Env = []string{"HOME=" + s.dir, "PATH=/usr/bin:/bin", "VAULT_LOG_LEVEL=warn"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	logf, _ := os.OpenFile(filepath.Join(s.dir, "vault.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	keyCh := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			if logf != nil {
				_, _ = io.WriteString(logf, line+"\n")
			}
			if k, ok := strings.CutPrefix(strings.TrimSpace(line), "Unseal Key: "); ok {
				select {
				case keyCh <- strings.TrimSpace(k):
				default:
				}
			}
		}
	}()
	go func() { _ = cmd.Wait(); close(done) }()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()

	cfg := bao.DefaultConfig()
	cfg.Address = s.Addr
	if s.tls {
		// The CA file appears once the server has generated it.
		for i := 0; i < 100; i++ {
			if _, err := os.Stat(s.CACertFile); err == nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err := cfg.ConfigureTLS(&bao.TLSConfig{CACert: s.CACertFile}); err != nil {
			s.Stop()
			return err
		}
	}
	root, err := bao.NewClient(cfg)
	if err != nil {
		s.Stop()
		return err
	}
	root.SetToken(s.RootToken)
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-done:
			return fmt.Errorf("vault exited early (log: %s)", filepath.Join(s.dir, "vault.log"))
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		h, err := root.Sys().HealthWithContext(ctx)
		cancel()
		if err == nil && h.Initialized && !h.Sealed && !h.Standby {
			break
		}
		if time.Now().After(deadline) {
			s.Stop()
			return fmt.Errorf("vault not healthy after 30s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	select {
	case s.unsealKey = <-keyCh:
	case <-time.After(2 * time.Second):
	}
	s.Root = root
	return nil
}

// Stop terminates the server (SIGTERM, then SIGKILL of its process group after 5 s).
func (s *Server) Stop() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

// Restart stops the server and starts a new one on the same address with the same root token. A dev server keeps
// state in memory: mounts, keys, auth methods and tokens are gone afterwards (tests re-create what they need).
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	var err error
	for i := 0; i < 50; i++ {
		if err = s.launch(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("restarting vault: %v", err)
}

// Seal seals the server (sys/seal); Unseal unseals it with the dev server's unseal key.
func (s *Server) Seal(t testing.TB) {
	t.Helper()
	if err := s.Root.Sys().Seal(); err != nil {
		t.Fatalf("seal: %v", err)
	}
}

// Unseal unseals the server.
func (s *Server) Unseal(t testing.TB) {
	t.Helper()
	if s.unsealKey == "" {
		t.Fatal("the dev server printed no unseal key")
	}
	st, err := s.Root.Sys().Unseal(s.unsealKey)
	if err != nil || st.Sealed {
		t.Fatalf("unseal: %v (sealed=%v)", err, st != nil && st.Sealed)
	}
}

// AppRole enables AppRole auth at mount "approle" (once), creates role with policy (HCL) and token ttl, and returns
// the role id and the path of a file holding a fresh secret id.
func (s *Server) AppRole(t testing.TB, role, policy, ttl string) (roleID, secretIDFile string) {
	t.Helper()
	return s.AppRoleWith(t, role, policy, ttl, "", "")
}

// AppRoleWith is AppRole with a fixed role id and secret id (when not empty), so a test can re-create the same
// credentials after a restart of the in-memory dev server.
func (s *Server) AppRoleWith(t testing.TB, role, policy, ttl, fixedRoleID, fixedSecretID string) (roleID, secretIDFile string) {
	t.Helper()
	ctx := context.Background()
	if err := s.Root.Sys().PutPolicyWithContext(ctx, role, policy); err != nil {
		t.Fatalf("policy: %v", err)
	}
	auths, err := s.Root.Sys().ListAuthWithContext(ctx)
	if err != nil {
		t.Fatalf("list auth: %v", err)
	}
	if _, ok := auths["approle/"]; !ok {
		if err := s.Root.Sys().EnableAuthWithOptionsWithContext(ctx, "approle", &bao.EnableAuthOptions{Type: "approle"}); err != nil {
			t.Fatalf("enable approle: %v", err)
		}
	}
	roleCfg := map[string]any{"token_policies": []string{role}, "token_ttl": ttl, "token_max_ttl": "24h"}
	if fixedRoleID != "" {
		roleCfg["role_id"] = fixedRoleID
	}
	if _, err := s.Root.Logical().WriteWithContext(ctx, "auth/approle/role/"+role, roleCfg); err != nil {
		t.Fatalf("approle role: %v", err)
	}
	sec, err := s.Root.Logical().ReadWithContext(ctx, "auth/approle/role/"+role+"/role-id")
	if err != nil || sec == nil {
		t.Fatalf("role id: %v", err)
	}
	roleID, _ = sec.Data["role_id"].(string)
	if fixedSecretID != "" {
		sec, err = s.Root.Logical().WriteWithContext(ctx, "auth/approle/role/"+role+"/custom-secret-id", map[string]any{"secret_id": fixedSecretID})
	} else {
		sec, err = s.Root.Logical().WriteWithContext(ctx, "auth/approle/role/"+role+"/secret-id", map[string]any{})
	}
	if err != nil || sec == nil {
		t.Fatalf("secret id: %v", err)
	}
	sid, _ := sec.Data["secret_id"].(string)
	secretIDFile = filepath.Join(t.TempDir(), "secret-id")
	if err := os.WriteFile(secretIDFile, []byte(sid+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return roleID, secretIDFile
}
