// Command devstack is the `make run` entry point: it starts a real local control plane (etcd + kube-apiserver),
// the webhook binary registered through real webhook configurations, applies examples/00-world, writes an admin
// kubeconfig to .dev/kubeconfig and waits in the foreground until interrupted, then cleans up.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/apeirora/apeiro-cmk/internal/devstack"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "devstack: %v\n", err)
		os.Exit(1)
	}
}

// state is written to .dev/state.json so scripts (and a second `make run`) can find the running stack.
type state struct {
	PID         int    `json:"pid"`
	Kubeconfig  string `json:"kubeconfig"`
	Kubectl     string `json:"kubectl"`
	APIServer   string `json:"apiServer"`
	WebhookURL  string `json:"webhookURL"`
	MetricsAddr string `json:"metricsAddr"`
	HealthAddr  string `json:"healthAddr"`
	LogDir      string `json:"logDir"`
	StartedAt   string `json:"startedAt"`
}

func run() error {
	kubeBin := flag.String("kube-bin", os.Getenv("KUBE_BIN"), "directory holding etcd, kube-apiserver and kubectl (hack/peers/build-kube.sh prints it)")
	webhookBin := flag.String("webhook-bin", "bin/webhook", "webhook binary")
	root := flag.String("root", ".", "repository root (deploy/, examples/; .dev/ is written here)")
	world := flag.Bool("apply-world", true, "apply examples/00-world after the stack is up")
	var webhookArgs stringList
	flag.Var(&webhookArgs, "webhook-arg", "extra flag for the webhook binary (repeatable), e.g. --webhook-arg=--max-depth=4")
	flag.Parse()
	if *kubeBin == "" {
		return errors.New("--kube-bin is required (KUBE_BIN=$(bash hack/peers/build-kube.sh))")
	}
	rootAbs, err := filepath.Abs(*root)
	if err != nil {
		return err
	}
	whAbs, err := filepath.Abs(*webhookBin)
	if err != nil {
		return err
	}
	devDir := filepath.Join(rootAbs, ".dev")
	workDir := filepath.Join(devDir, "stack")
	statePath := filepath.Join(devDir, "state.json")
	if pid := runningPID(statePath); pid != 0 {
		return fmt.Errorf("another devstack (pid %d) is using %s; stop it first (Ctrl-C in its terminal, or kill %d)", pid, devDir, pid)
	}
	if err := os.RemoveAll(workDir); err != nil {
		return fmt.Errorf("cleaning %s: %w", workDir, err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	start := time.Now()
	fmt.Printf("devstack: starting etcd + kube-apiserver from %s and %s\n", *kubeBin, rel(rootAbs, whAbs))
	s, err := devstack.Up(ctx, devstack.Options{
		KubeBin: *kubeBin, WebhookBin: whAbs, Root: rootAbs, WorkDir: workDir,
		WebhookArgs: webhookArgs, Progress: os.Stdout,
	})
	if err != nil {
		return err
	}
	cleanup := func() {
		fmt.Println("\ndevstack: stopping webhook, kube-apiserver and etcd ...")
		if err := s.Down(); err != nil {
			fmt.Fprintf(os.Stderr, "devstack: stop: %v\n", err)
		}
		_ = os.Remove(filepath.Join(devDir, "kubeconfig"))
		_ = os.Remove(statePath)
		removeAllButLogs(workDir)
		fmt.Printf("devstack: stopped; logs kept in %s\n", rel(rootAbs, workDir))
	}
	defer cleanup()
	fmt.Printf("devstack: stack up in %.1fs\n", time.Since(start).Seconds())

	kc, err := os.ReadFile(s.KubeconfigPath())
	if err != nil {
		return err
	}
	kubeconfig := filepath.Join(devDir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", kubeconfig, err)
	}
	st := state{
		PID: os.Getpid(), Kubeconfig: kubeconfig, Kubectl: s.Kubectl(), APIServer: s.ControlPlane.URL,
		WebhookURL: s.WebhookURL, MetricsAddr: s.MetricsAddr, HealthAddr: s.HealthAddr, LogDir: workDir,
		StartedAt: time.Now().Format(time.RFC3339),
	}
	b, _ := json.MarshalIndent(st, "", "  ")
	if err := os.WriteFile(statePath, append(b, '\n'), 0o644); err != nil {
		return err
	}

	if *world {
		if err := applyWorld(ctx, s.Kubectl(), kubeconfig, filepath.Join(rootAbs, "examples", "00-world")); err != nil {
			fmt.Fprintf(os.Stderr, "devstack: WARNING: %v\n", err)
		}
	}
	ksNotes, stopKeystores, err := startKeystores(ctx, s, workDir, kubeconfig) // make run KEYSTORES=openbao,thales
	defer stopKeystores()
	if err != nil {
		return err
	}
	printTry(rootAbs, s.Kubectl(), s)
	printKeystores(ksNotes, s.Kubectl())

	select {
	case <-ctx.Done():
	case <-s.Webhook.Done():
		return fmt.Errorf("the webhook exited: %w", s.Webhook.ExitError())
	case <-s.ControlPlane.APIServer.Done():
		return fmt.Errorf("kube-apiserver exited: %w", s.ControlPlane.APIServer.ExitError())
	}
	return nil
}

// applyWorld applies examples/00-world. The webhook answers from informer caches, so a child applied right after its
// parent can be refused once; apply is idempotent, so it is simply repeated.
func applyWorld(ctx context.Context, kubectl, kubeconfig, dir string) error {
	if _, err := os.Stat(dir); err != nil {
		return fmt.Errorf("no %s to apply: %w", dir, err)
	}
	var out []byte
	var err error
	for attempt := 1; attempt <= 10; attempt++ {
		cmd := exec.CommandContext(ctx, kubectl, "--kubeconfig", kubeconfig, "apply", "-f", dir)
		out, err = cmd.CombinedOutput()
		if err == nil {
			fmt.Printf("devstack: applied %s\n", dir)
			return nil
		}
		time.Sleep(500 * time.Millisecond)
	}
	return fmt.Errorf("applying %s: %v\n%s", dir, err, out)
}

func printTry(root, kubectl string, s *devstack.Stack) {
	k := kubectl + " --kubeconfig .dev/kubeconfig"
	var b strings.Builder
	fmt.Fprintf(&b, "\n=== apeiro-cmk dev stack is running (Ctrl-C stops it and cleans up) ===\n")
	fmt.Fprintf(&b, "API server   %s   (admin kubeconfig: .dev/kubeconfig)\n", s.ControlPlane.URL)
	fmt.Fprintf(&b, "webhook      %s   metrics http://%s/metrics   health http://%s/readyz\n", s.WebhookURL, s.MetricsAddr, s.HealthAddr)
	fmt.Fprintf(&b, "logs         %s/{webhook,kube-apiserver,etcd}.log\n\nTry:\n", rel(root, s.ControlPlane.WorkDir()))
	fmt.Fprintf(&b, "  %s get tenants,accounts,serviceencryptionkeys -A\n", k)
	for _, f := range pickExamples(root) {
		fmt.Fprintf(&b, "  %s apply --dry-run=server -f %s\n", k, f)
	}
	fmt.Fprintf(&b, "  %s delete --dry-run=server tenant acme-eu            # protected: has children and a shadow\n", k)
	fmt.Fprintf(&b, "  %s delete --dry-run=server -n acme-eu account main   # protected: key acme-eu/orders uses it\n", k)
	fmt.Fprintf(&b, "  KUBECONFIG=$PWD/.dev/kubeconfig go test -count=1 -v ./test/e2e/   # the e2e suite against this stack\n\n")
	fmt.Print(b.String())
}

// pickExamples returns a few bad cases (and one good one) that exist, preferring those that show each layer.
func pickExamples(root string) []string {
	preferred := []string{
		"examples/bad/sek-cross-tenant.yaml", "examples/bad/tenant-parent-is-shadow.yaml",
		"examples/bad/account-unlabelled-namespace.yaml", "examples/bad/account-aws-static-secret.yaml",
		"examples/good/sek-shadow-of-ancestor.yaml",
	}
	var out []string
	for _, p := range preferred {
		if _, err := os.Stat(filepath.Join(root, p)); err == nil {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		files, _ := filepath.Glob(filepath.Join(root, "examples", "bad", "*.yaml"))
		sort.Strings(files)
		for i, f := range files {
			if i == 4 {
				break
			}
			out = append(out, rel(root, f))
		}
	}
	return out
}

// runningPID returns the pid recorded in state.json when that process is still alive.
func runningPID(statePath string) int {
	b, err := os.ReadFile(statePath)
	if err != nil {
		return 0
	}
	var st state
	if json.Unmarshal(b, &st) != nil || st.PID <= 0 || st.PID == os.Getpid() {
		return 0
	}
	if err := syscall.Kill(st.PID, 0); err != nil {
		return 0
	}
	// A recycled pid could belong to anything; only trust it when it is a devstack.
	if cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(st.PID) + "/cmdline"); err == nil && !strings.Contains(string(cmdline), "devstack") {
		return 0
	}
	return st.PID
}

func removeAllButLogs(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".log") {
			continue
		}
		_ = os.RemoveAll(filepath.Join(dir, e.Name()))
	}
}

func rel(root, p string) string {
	if r, err := filepath.Rel(root, p); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	return p
}

type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }
