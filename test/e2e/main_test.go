// Package e2e drives the webhook through a real API server: etcd + kube-apiserver started on loopback by
// internal/devstack (the default), or an existing cluster named by KUBECONFIG on which the webhook is already
// deployed. See README.md in this directory.
package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/config"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/apeirora/apeiro-cmk/internal/devstack"
)

// suite is the shared state set up by TestMain.
type suite struct {
	root       string
	kubectl    string
	kubeconfig string // empty: kubectl reads KUBECONFIG itself
	cacheDir   string
	webhookBin string // the webhook binary of the own control plane (helm_test.go starts a second one)
	kubeBin    string // KUBE_BIN of the own control plane
	client     client.Client
	scheme     *runtime.Scheme
	stack      *devstack.Stack // nil when running against an existing cluster
	skip       string          // non-empty: every test skips with this reason
}

var env suite

// requirePeers is set in CI (and by APEIRO_REQUIRE_PEERS=1): a missing binary is then a failure, never a skip.
func requirePeers() bool {
	return os.Getenv("CI") == "true" || os.Getenv("APEIRO_REQUIRE_PEERS") == "1"
}

func TestMain(m *testing.M) {
	// The suite's clients log nothing worth reading (the webhook process logs on its own); without a logger
	// controller-runtime prints a "log.SetLogger(...) was never called" stack trace on first use.
	ctrllog.SetLogger(logr.Discard())
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) (code int) {
	started := time.Now()
	root, err := repoRoot()
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	env.root = root
	tmp, err := os.MkdirTemp("", "apeiro-e2e-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	defer func() {
		switch {
		case code == 0:
			_ = os.RemoveAll(tmp)
		case env.stack != nil:
			fmt.Fprintf(os.Stderr, "e2e: kept %s for inspection (process logs: %s)\n", tmp, filepath.Join(tmp, "stack", "*.log"))
		default:
			_ = os.RemoveAll(tmp)
		}
	}()
	env.cacheDir = filepath.Join(tmp, "kubectl-cache")
	if env.scheme, err = devstack.NewScheme(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	defer stopAlertmanager() // test/e2e/alerts_test.go

	if err := setUp(ctx, tmp); err != nil {
		if errors.Is(err, errNoPeers) && !requirePeers() {
			env.skip = err.Error()
			fmt.Fprintf(os.Stderr, "e2e: skipping: %v\n", err)
			return m.Run()
		}
		fmt.Fprintf(os.Stderr, "e2e: FAIL: %v\n", err)
		if env.stack != nil {
			_ = env.stack.Down()
		}
		return 1
	}
	if env.stack != nil {
		defer func() {
			start := time.Now()
			if err := env.stack.Down(); err != nil {
				fmt.Fprintf(os.Stderr, "e2e: stopping the stack: %v\n", err)
			}
			fmt.Fprintf(os.Stderr, "e2e: stack stopped in %.1fs\n", time.Since(start).Seconds())
		}()
	}
	suiteStart := time.Now()
	code = m.Run()
	fmt.Fprintf(os.Stderr, "e2e: tests took %.1fs (%.1fs including bring-up)\n", time.Since(suiteStart).Seconds(), time.Since(started).Seconds())
	return code
}

var errNoPeers = errors.New("no cluster for the e2e suite")

func setUp(ctx context.Context, tmp string) error {
	if kc := os.Getenv("KUBECONFIG"); kc != "" {
		return setUpExisting(ctx, kc)
	}
	kubeBin := os.Getenv("KUBE_BIN")
	if kubeBin == "" {
		return fmt.Errorf("%w: neither KUBECONFIG nor KUBE_BIN is set; run `make e2e` (it builds etcd, kube-apiserver and kubectl with hack/peers/build-kube.sh and the webhook)", errNoPeers)
	}
	for _, b := range []string{"etcd", "kube-apiserver", "kubectl"} {
		if _, err := os.Stat(filepath.Join(kubeBin, b)); err != nil {
			return fmt.Errorf("%w: KUBE_BIN=%s has no %s; run `make e2e` (or `bash hack/peers/build-kube.sh`)", errNoPeers, kubeBin, b)
		}
	}
	webhookBin := os.Getenv("WEBHOOK_BIN")
	if webhookBin == "" {
		webhookBin = filepath.Join(tmp, "webhook")
		start := time.Now()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", webhookBin, "./cmd/webhook")
		cmd.Dir = env.root
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("building the webhook (go build ./cmd/webhook): %v\n%s", err, out)
		}
		fmt.Fprintf(os.Stderr, "e2e: built the webhook in %.1fs\n", time.Since(start).Seconds())
	}
	start := time.Now()
	s, err := devstack.Up(ctx, devstack.Options{
		KubeBin: kubeBin, WebhookBin: webhookBin, Root: env.root, WorkDir: filepath.Join(tmp, "stack"),
		Progress: prefixWriter{"e2e: "}, WebhookArgs: append(alertmanagerArgs(tmp), inUseGraceArg), // test/e2e/alerts_test.go, inuse_test.go
	})
	if err != nil {
		return err
	}
	env.stack = s
	fmt.Fprintf(os.Stderr, "e2e: stack up in %.1fs (webhook configurations from %s)\n", time.Since(start).Seconds(), s.WebhookConfigSource)
	env.kubectl = s.Kubectl()
	env.kubeconfig = s.KubeconfigPath()
	env.client = s.Client
	env.webhookBin, env.kubeBin = webhookBin, kubeBin
	return applyWorld(ctx)
}

// setUpExisting uses the cluster in KUBECONFIG; the webhook must already be deployed there.
func setUpExisting(ctx context.Context, kc string) error {
	env.kubectl = os.Getenv("KUBECTL")
	if env.kubectl == "" {
		p, err := exec.LookPath("kubectl")
		if err != nil {
			return fmt.Errorf("KUBECONFIG=%s is set but no kubectl: put one on PATH or set KUBECTL", kc)
		}
		env.kubectl = p
	}
	rc, err := config.GetConfig()
	if err != nil {
		return fmt.Errorf("loading KUBECONFIG=%s: %w", kc, err)
	}
	if env.client, err = client.New(rc, client.Options{Scheme: env.scheme}); err != nil {
		return fmt.Errorf("client for KUBECONFIG=%s: %w", kc, err)
	}
	fmt.Fprintf(os.Stderr, "e2e: using the existing cluster at %s (KUBECONFIG) with %s; the webhook must be deployed there\n", rc.Host, env.kubectl)
	return applyWorld(ctx)
}

// applyWorld applies examples/00-world for real. The webhook answers from informer caches, so a child applied right
// after its parent may be refused once; apply is idempotent and is repeated until it succeeds.
func applyWorld(ctx context.Context) error {
	dir := filepath.Join(env.root, "examples", "00-world")
	deadline := time.Now().Add(30 * time.Second)
	for {
		res := runKubectl(ctx, "apply", "-f", dir)
		if res.err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("applying %s: %v\n%s", dir, res.err, res.output())
		}
		time.Sleep(300 * time.Millisecond)
	}
}

type kubectlResult struct {
	stdout, stderr string
	err            error
}

func (r kubectlResult) output() string { return strings.TrimSpace(r.stdout + "\n" + r.stderr) }

// runKubectl runs the suite's kubectl against the suite's cluster.
func runKubectl(ctx context.Context, args ...string) kubectlResult {
	full := []string{"--cache-dir=" + env.cacheDir}
	if env.kubeconfig != "" {
		full = append(full, "--kubeconfig="+env.kubeconfig)
	}
	full = append(full, args...)
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, env.kubectl, full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return kubectlResult{stdout.String(), stderr.String(), err}
}

// needCluster skips (or, in CI, fails) a test when the suite has no cluster.
func needCluster(t *testing.T) {
	t.Helper()
	if env.skip != "" {
		t.Skip(env.skip)
	}
}

// needOwnCluster skips a test that must switch the webhook off: only allowed on the suite's own control plane.
func needOwnCluster(t *testing.T) {
	t.Helper()
	needCluster(t)
	if env.stack == nil {
		t.Skip("the suite does not own this cluster (KUBECONFIG is set): it will not delete the webhook configurations")
	}
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		b, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil && bytes.Contains(b, []byte("module github.com/apeirora/apeiro-cmk\n")) {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no apeiro-cmk go.mod above %s", dir)
		}
	}
}

type prefixWriter struct{ prefix string }

func (w prefixWriter) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		fmt.Fprintf(os.Stderr, "%s%s\n", w.prefix, line)
	}
	return len(p), nil
}

// eventually retries f every 200ms until it returns nil or timeout passes; the webhook decides from informer
// caches, which trail the API server by a few milliseconds.
func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	if err := eventuallyErr(timeout, f); err != nil {
		t.Fatal(err)
	}
}

func eventuallyErr(timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s: %w", timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}
