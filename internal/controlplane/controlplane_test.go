package controlplane

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

func TestFreePortsAreDistinctAndBindable(t *testing.T) {
	ports, err := FreePorts(5)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if seen[p] {
			t.Fatalf("port %d returned twice in %v", p, ports)
		}
		seen[p] = true
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", itoa(p)))
		if err != nil {
			t.Fatalf("port %d not bindable after FreePorts: %v", p, err)
		}
		_ = l.Close()
	}
}

func TestTokenFileLine(t *testing.T) {
	tests := []struct {
		name   string
		groups []string
		want   string
	}{
		{"no groups", nil, "tok,admin,uid\n"},
		{"one group", []string{"system:masters"}, "tok,admin,uid,\"system:masters\"\n"},
		{"two groups", []string{"a", "b"}, "tok,admin,uid,\"a,b\"\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tokenFileLine("tok", "admin", "uid", tt.groups...); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestCAIssuesServingCertificateForLoopback(t *testing.T) {
	ca, err := NewCA("test-ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := ca.IssueServing("srv", []net.IP{net.ParseIP("127.0.0.1")}, []string{"localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM)
	if err != nil {
		t.Fatalf("key pair does not load: %v", err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the rejected handshake below is expected
	srv.StartTLS()
	defer srv.Close()

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	if err := httpOK(context.Background(), c, srv.URL, ""); err != nil {
		t.Fatalf("client trusting only the CA cannot reach the server: %v", err)
	}
	other, _ := NewCA("other", time.Hour)
	pool2 := x509.NewCertPool()
	pool2.AppendCertsFromPEM(other.CertPEM)
	c2 := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool2}}}
	if err := httpOK(context.Background(), c2, srv.URL, ""); err == nil {
		t.Fatal("a client trusting another CA was accepted")
	}
}

func TestServiceAccountKeysParse(t *testing.T) {
	dir := t.TempDir()
	keyFile, pubFile, err := writeServiceAccountKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{keyFile, pubFile} {
		b, err := os.ReadFile(f)
		if err != nil || !strings.Contains(string(b), "-----BEGIN ") {
			t.Fatalf("%s is not PEM: %v", f, err)
		}
	}
	st, _ := os.Stat(keyFile)
	if st.Mode().Perm()&0o077 != 0 {
		t.Fatalf("private key mode %v is readable by others", st.Mode().Perm())
	}
}

func TestKubeconfigRoundTrip(t *testing.T) {
	b, err := Kubeconfig("dev", "https://127.0.0.1:1234", []byte("CA"), "tok")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(b)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != "https://127.0.0.1:1234" || cfg.BearerToken != "tok" || string(cfg.CAData) != "CA" {
		t.Fatalf("unexpected config: host=%q token=%q ca=%q", cfg.Host, cfg.BearerToken, cfg.CAData)
	}
}

func TestProcessStopEscalatesToKill(t *testing.T) {
	tests := []struct {
		name    string
		script  string
		grace   time.Duration
		minTime time.Duration
	}{
		// sleep dies on SIGTERM at once.
		{"honours SIGTERM", "exec sleep 30", 5 * time.Second, 0},
		// A process ignoring SIGTERM is killed once the grace period is over.
		{"ignores SIGTERM", "trap '' TERM; echo ready; while :; do sleep 0.05; done", 500 * time.Millisecond, 500 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logPath := filepath.Join(t.TempDir(), "p.log")
			p, err := StartProcess("sh", "/bin/sh", []string{"-c", tt.script}, logPath)
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(200 * time.Millisecond) // let the trap be installed
			start := time.Now()
			if err := p.Stop(tt.grace); err != nil {
				t.Fatal(err)
			}
			took := time.Since(start)
			if exited, _ := p.Exited(); !exited {
				t.Fatal("process still running after Stop")
			}
			if took < tt.minTime {
				t.Fatalf("stopped after %v, before the grace period %v", took, tt.minTime)
			}
			if took > tt.grace+3*time.Second {
				t.Fatalf("Stop took %v", took)
			}
			// A second Stop is a no-op.
			if err := p.Stop(tt.grace); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestWaitReadyReportsEarlyExitWithLog(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "p.log")
	p, err := StartProcess("failing", "/bin/sh", []string{"-c", "echo 'listen tcp: bind: address already in use' >&2; exit 3"}, logPath)
	if err != nil {
		t.Fatal(err)
	}
	err = WaitReady(context.Background(), 10*time.Second, p, func(context.Context) error { return os.ErrNotExist })
	if err == nil {
		t.Fatal("WaitReady succeeded for a process that exited")
	}
	if !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("error lacks exit status or log tail: %v", err)
	}
	if !errorsIs(err, errPortInUse) {
		t.Fatalf("port conflict not recognised: %v", err)
	}
}

// TestStartCreateNamespaceStop runs the real binaries: skipped without KUBE_BIN locally, failed in CI.
func TestStartCreateNamespaceStop(t *testing.T) {
	bin := os.Getenv("KUBE_BIN")
	if bin == "" {
		bin = os.Getenv("KUBEBUILDER_ASSETS")
	}
	if _, err := os.Stat(filepath.Join(bin, APIServerBinary)); bin == "" || err != nil {
		msg := "KUBE_BIN does not point at etcd + kube-apiserver; run `make test` (or KUBE_BIN=$(bash hack/peers/build-kube.sh) go test ./internal/controlplane/)"
		if os.Getenv("CI") == "true" || os.Getenv("APEIRO_REQUIRE_PEERS") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	work := t.TempDir()
	start := time.Now()
	cp, err := Start(ctx, Config{BinDir: bin, WorkDir: work, Progress: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("control plane up in %.1fs", time.Since(start).Seconds())
	stopped := false
	defer func() {
		if !stopped {
			_ = cp.Stop()
		}
	}()

	c, err := client.New(cp.RESTConfig(), client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "cp-test"}}
	if err := c.Create(ctx, ns); err != nil {
		t.Fatalf("creating namespace: %v", err)
	}
	// The kubeconfig on disk works too.
	rc, err := clientcmd.BuildConfigFromFlags("", cp.KubeconfigPath)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := client.New(rc, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c2.Get(ctx, client.ObjectKey{Name: "cp-test"}, &corev1.Namespace{}); err != nil {
		t.Fatalf("reading namespace through the kubeconfig: %v", err)
	}

	start = time.Now()
	if err := cp.Stop(); err != nil {
		t.Fatal(err)
	}
	stopped = true
	t.Logf("control plane stopped in %.1fs", time.Since(start).Seconds())
	for _, p := range []*Process{cp.APIServer, cp.Etcd} {
		if exited, _ := p.Exited(); !exited {
			t.Fatalf("%s still running", p.Name)
		}
	}
	if _, err := os.Stat(filepath.Join(work, "kube-apiserver.log")); err != nil {
		t.Fatalf("no apiserver log: %v", err)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
