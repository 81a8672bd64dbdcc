// Command load is the side-by-side load benchmark of the admission webhook (make bench-load). In one run it starts
// the local stack of `make run` (etcd, kube-apiserver, the webhook binary with the full apeiro-profile, the example
// world) and a bare controller-runtime webhook that admits everything (bench/bare), and sends both the same real
// AdmissionReviews over TLS with keep-alive, alternating between them at each concurrency, so every comparison is
// within one run on one machine. It reports requests/s, client-side p50/p99/p99.9, the webhook's own p99 (from its
// latency histogram), process CPU per request and RSS over time, and writes results.json for bench/charts.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"

	"github.com/apeirora/apeiro-cmk/internal/controlplane"
	"github.com/apeirora/apeiro-cmk/internal/devstack"
)

type config struct {
	kubeBin, webhookBin, bareBin, root, out, pprofDir string
	duration, warmup, soak, sampleEvery               time.Duration
	concurrency                                       []int
	rounds, soakConcurrency, pprofConcurrency         int
	webhookArgs                                       stringList
}

type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, " ") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	var c config
	var conc string
	flag.StringVar(&c.kubeBin, "kube-bin", os.Getenv("KUBE_BIN"), "directory with etcd, kube-apiserver and kubectl (bash hack/peers/build-kube.sh)")
	flag.StringVar(&c.webhookBin, "webhook-bin", "bin/webhook", "apeiro-cmk webhook binary")
	flag.StringVar(&c.bareBin, "bare-bin", "bin/bench-bare", "bare controller-runtime webhook binary (bench/bare)")
	flag.StringVar(&c.root, "root", ".", "repository root")
	flag.StringVar(&c.out, "out", ".dev/bench", "directory for results.json, logs and profiles")
	flag.StringVar(&c.pprofDir, "pprof", "", "directory for CPU, mutex and block profiles of our webhook, taken during its first phase at -pprof-concurrency (empty: none)")
	flag.IntVar(&c.pprofConcurrency, "pprof-concurrency", 64, "concurrency level whose first phase is profiled")
	flag.DurationVar(&c.duration, "duration", 5*time.Second, "length of each measured phase")
	flag.DurationVar(&c.warmup, "warmup", 2*time.Second, "warm-up per target before measuring (fills caches, opens connections)")
	flag.StringVar(&conc, "concurrency", "1,16,64,256", "comma-separated concurrency levels")
	flag.IntVar(&c.rounds, "rounds", 2, "alternations per concurrency level (ours, bare, bare, ours, ...)")
	flag.DurationVar(&c.soak, "soak", 0, "after the side-by-side phases, load our webhook alone for this long and record RSS (e.g. 10m)")
	flag.IntVar(&c.soakConcurrency, "soak-concurrency", 64, "concurrency of the soak")
	flag.DurationVar(&c.sampleEvery, "sample", time.Second, "RSS sampling interval")
	flag.Var(&c.webhookArgs, "webhook-arg", "extra flag for our webhook (repeatable), e.g. -webhook-arg=--live-read-max-age=50ms")
	flag.Parse()
	for _, s := range strings.Split(conc, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			fail(fmt.Errorf("bad -concurrency %q", conc))
		}
		c.concurrency = append(c.concurrency, n)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, c); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench-load:", err)
	os.Exit(1)
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench-load: "+format+"\n", args...)
}

// target is one webhook under load.
type target struct {
	Name       string
	url        string
	pid        int
	client     *http.Client
	metricsURL string // ours only: the latency histogram the webhook keeps itself
}

func run(ctx context.Context, c config) error {
	if c.kubeBin == "" {
		return errors.New("-kube-bin is required (KUBE_BIN=$(bash hack/peers/build-kube.sh))")
	}
	root, err := filepath.Abs(c.root)
	if err != nil {
		return err
	}
	out, err := filepath.Abs(c.out)
	if err != nil {
		return err
	}
	workDir := filepath.Join(out, "stack")
	if err := os.RemoveAll(workDir); err != nil {
		return err
	}
	if err := os.MkdirAll(workDir, 0o755); err != nil {
		return err
	}
	abs := func(p string) string { a, _ := filepath.Abs(p); return a }
	res := results{Machine: describeMachine(), Started: time.Now().UTC().Format(time.RFC3339),
		Config: runConfig{PhaseSeconds: c.duration.Seconds(), Concurrency: c.concurrency, Rounds: c.rounds, SoakSeconds: c.soak.Seconds(),
			WebhookArgs: c.webhookArgs}}

	whArgs := append([]string{}, c.webhookArgs...)
	pprofAddr := ""
	if c.pprofDir != "" {
		ports, err := controlplane.FreePorts(1)
		if err != nil {
			return err
		}
		pprofAddr = fmt.Sprintf("127.0.0.1:%d", ports[0])
		whArgs = append(whArgs, "--pprof-bind-address="+pprofAddr)
	}
	progress("starting the local stack (etcd, kube-apiserver, webhook %s)", c.webhookBin)
	s, err := devstack.Up(ctx, devstack.Options{KubeBin: c.kubeBin, WebhookBin: abs(c.webhookBin), Root: root, WorkDir: workDir,
		WebhookArgs: whArgs, Progress: os.Stderr})
	if err != nil {
		return err
	}
	defer func() { _ = s.Down() }()
	if err := applyWorld(ctx, s, filepath.Join(root, "examples", "00-world")); err != nil {
		return err
	}
	user := authenticationv1.UserInfo{Username: "bench-admin", Groups: []string{"system:masters", "system:authenticated"}}
	reviews, err := buildReviews(ctx, s.Client, user)
	if err != nil {
		return err
	}

	bare, stopBare, err := startBare(ctx, abs(c.bareBin), workDir)
	if err != nil {
		return err
	}
	defer stopBare()
	ours := &target{Name: "apeiro-cmk", url: s.WebhookURL, pid: s.Webhook.PID(), client: tlsClient(s.WebhookCAPEM, maxOf(c.concurrency, c.soakConcurrency)),
		metricsURL: "http://" + s.MetricsAddr + "/metrics"}
	targets := []*target{ours, bare}

	// Every review gets the verdict it must get before anything is measured.
	for _, t := range targets {
		for _, r := range reviews {
			want := r.Allowed || t != ours
			got, err := send(ctx, t, r)
			if err != nil {
				return fmt.Errorf("%s %s: %w", t.Name, r.Name, err)
			}
			if got != want {
				return fmt.Errorf("%s %s: allowed=%v, want %v", t.Name, r.Name, got, want)
			}
		}
	}
	progress("verdicts checked: %d reviews, %d of them denied by our webhook", len(reviews), countDenied(reviews))

	// What each process burns with no request at all (informers, controllers, leader election, runtime): at low
	// request rates it is a visible part of "CPU per request".
	idle0 := map[*target]time.Duration{}
	for _, t := range targets {
		idle0[t], _ = procCPU(t.pid)
	}
	time.Sleep(5 * time.Second)
	res.IdleCores = map[string]float64{}
	for _, t := range targets {
		if cpu, err := procCPU(t.pid); err == nil {
			res.IdleCores[t.Name] = (cpu - idle0[t]).Seconds() / 5
		}
	}
	progress("idle CPU over 5 s: %v cores", res.IdleCores)

	sampler := startSampler(targets, c.sampleEvery)
	for _, t := range targets {
		progress("warming up %s for %s", t.Name, c.warmup)
		if _, err := loadPhase(ctx, t, ours, reviews, 16, c.warmup); err != nil {
			return err
		}
	}
	for _, n := range c.concurrency {
		for round := range c.rounds {
			order := targets
			if round%2 == 1 {
				order = []*target{bare, ours}
			}
			for _, t := range order {
				var prof *profiler
				if t == ours && n == c.pprofConcurrency && round == 0 && pprofAddr != "" {
					prof = startProfiles(ctx, pprofAddr, c.pprofDir, c.duration)
				}
				p, err := loadPhase(ctx, t, ours, reviews, n, c.duration)
				if err != nil {
					return err
				}
				if prof != nil {
					if err := prof.wait(); err != nil {
						progress("profiles: %v", err)
					}
				}
				p.Round = round + 1
				res.Phases = append(res.Phases, p)
				progress("%-10s c=%-3d round %d: %8.0f req/s  p50 %6.2f ms  p99 %6.2f ms  p99.9 %6.2f ms  server p99 %5.2f ms  CPU %5.0f µs/req  errors %d",
					t.Name, n, round+1, p.RPS, p.P50ms, p.P99ms, p.P999ms, p.ServerP99ms, p.CPUMicrosPerReq, p.Errors+p.Unexpected)
			}
		}
	}
	if c.soak > 0 {
		progress("soak: %s alone at %d concurrent requests for %s", ours.Name, c.soakConcurrency, c.soak)
		p, err := loadPhase(ctx, ours, ours, reviews, c.soakConcurrency, c.soak)
		if err != nil {
			return err
		}
		p.Soak = true
		res.Phases = append(res.Phases, p)
		progress("soak: %.0f req/s, p99 %.2f ms, errors %d", p.RPS, p.P99ms, p.Errors+p.Unexpected)
	}
	res.RSS = sampler.stop()
	res.Machine.LoadEnd = loadAverage()
	res.Summary = summarize(res.Phases)
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(out, "results.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return err
	}
	fmt.Print(markdown(res))
	progress("wrote %s", path)
	return nil
}

func countDenied(rs []review) int {
	n := 0
	for _, r := range rs {
		if !r.Allowed {
			n++
		}
	}
	return n
}

func maxOf(xs []int, more ...int) int {
	m := 0
	for _, x := range append(append([]int{}, xs...), more...) {
		m = max(m, x)
	}
	return m
}

// applyWorld applies examples/00-world with kubectl, repeating while children are refused because their parent has
// not reached the webhook's informers yet (as `make run` does).
func applyWorld(ctx context.Context, s *devstack.Stack, dir string) error {
	var out []byte
	var err error
	for range 20 {
		out, err = exec.CommandContext(ctx, s.Kubectl(), "--kubeconfig", s.KubeconfigPath(), "apply", "-f", dir).CombinedOutput()
		if err == nil {
			return nil
		}
		time.Sleep(500 * time.Millisecond)
	}
	return fmt.Errorf("applying %s: %v\n%s", dir, err, out)
}

// startBare starts bench/bare with its own serving certificate and waits until it accepts TLS connections.
func startBare(ctx context.Context, bin, workDir string) (*target, func(), error) {
	ca, err := controlplane.NewCA("bench-bare-ca", 24*time.Hour)
	if err != nil {
		return nil, nil, err
	}
	kp, err := ca.IssueServing("bench-bare", []net.IP{net.ParseIP("127.0.0.1")}, []string{"localhost"}, 24*time.Hour)
	if err != nil {
		return nil, nil, err
	}
	certDir := filepath.Join(workDir, "bare-certs")
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		return nil, nil, err
	}
	if err := kp.WriteFiles(filepath.Join(certDir, "tls.crt"), filepath.Join(certDir, "tls.key")); err != nil {
		return nil, nil, err
	}
	ports, err := controlplane.FreePorts(1)
	if err != nil {
		return nil, nil, err
	}
	p, err := controlplane.StartProcess("bench-bare", bin, []string{"--cert-dir=" + certDir, "--host=127.0.0.1", fmt.Sprintf("--port=%d", ports[0])},
		filepath.Join(workDir, "bare.log"))
	if err != nil {
		return nil, nil, err
	}
	stop := func() { _ = p.Stop(5 * time.Second) }
	t := &target{Name: "bare", url: fmt.Sprintf("https://127.0.0.1:%d", ports[0]), pid: p.PID(), client: tlsClient(ca.CertPEM, 512)}
	err = controlplane.WaitReady(ctx, 30*time.Second, p, func(ctx context.Context) error {
		d := tls.Dialer{Config: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool(ca.CertPEM)}}
		conn, err := d.DialContext(ctx, "tcp", strings.TrimPrefix(t.url, "https://"))
		if err == nil {
			_ = conn.Close()
		}
		return err
	})
	if err != nil {
		stop()
		return nil, nil, fmt.Errorf("bare webhook: %w", err)
	}
	return t, stop, nil
}

func pool(caPEM []byte) *x509.CertPool {
	p := x509.NewCertPool()
	p.AppendCertsFromPEM(caPEM)
	return p
}

// tlsClient keeps up to conns connections alive, as the API server's webhook client does; HTTP/1.1 only.
func tlsClient(caPEM []byte, conns int) *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:     &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool(caPEM)},
			MaxIdleConns:        conns,
			MaxIdleConnsPerHost: conns,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
	}
}

// send posts one review and returns the verdict.
func send(ctx context.Context, t *target, r review) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url+r.Path, bytes.NewReader(r.Body))
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := t.client.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return false, err
	}
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("HTTP %d: %s", resp.StatusCode, body)
	}
	var ar struct {
		Response *struct {
			UID     string `json:"uid"`
			Allowed bool   `json:"allowed"`
		} `json:"response"`
	}
	if err := json.Unmarshal(body, &ar); err != nil || ar.Response == nil {
		return false, fmt.Errorf("not an AdmissionReview response (%v): %.200s", err, body)
	}
	return ar.Response.Allowed, nil
}

// loadPhase keeps n requests in flight against t for d and measures them.
func loadPhase(ctx context.Context, t, ours *target, reviews []review, n int, d time.Duration) (phase, error) {
	p := phase{Target: t.Name, Concurrency: n}
	before, _ := scrapeHistogram(t.metricsURL)
	cpu0, err := procCPU(t.pid)
	if err != nil {
		return p, err
	}
	var errs, unexpected atomic.Int64
	var firstErr atomic.Value
	hists := make([]hist, n)
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for w := range n {
		wg.Go(func() {
			h := &hists[w]
			for i := w; ctx.Err() == nil; i++ {
				r := reviews[i%len(reviews)]
				t0 := time.Now()
				if t0.After(deadline) {
					return
				}
				got, err := send(ctx, t, r)
				h.add(time.Since(t0))
				switch {
				case err != nil:
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				case got != (r.Allowed || t != ours):
					unexpected.Add(1)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu1, err := procCPU(t.pid)
	if err != nil {
		return p, err
	}
	if ctx.Err() != nil {
		return p, ctx.Err()
	}
	var all hist
	for i := range hists {
		all.merge(&hists[i])
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	p.Requests = all.n
	p.Seconds = elapsed.Seconds()
	p.RPS = float64(all.n) / elapsed.Seconds()
	p.P50ms, p.P99ms, p.P999ms, p.MaxMs = ms(all.quantile(0.5)), ms(all.quantile(0.99)), ms(all.quantile(0.999)), ms(all.max)
	p.Errors, p.Unexpected = errs.Load(), unexpected.Load()
	if v := firstErr.Load(); v != nil {
		p.FirstError = v.(string)
	}
	if all.n > 0 {
		p.CPUMicrosPerReq = float64(cpu1-cpu0) / float64(time.Microsecond) / float64(all.n)
	}
	p.CPUCores = (cpu1 - cpu0).Seconds() / elapsed.Seconds()
	p.Latency = all.points()
	if after, err := scrapeHistogram(t.metricsURL); err == nil && before != nil {
		p.ServerP99ms = after.minus(before).quantile(0.99) * 1000
	}
	return p, nil
}
