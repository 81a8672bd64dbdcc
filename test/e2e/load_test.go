package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"maps"
	"math"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/apeirora/apeiro-cmk/internal/devstack"
	"github.com/apeirora/apeiro-cmk/internal/evidence"
	cmkv1alpha1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
)

// loadLabel marks every object a load or fault test writes, so cleanup finds them all.
const loadLabel = "e2e.apeiro.io/load"

// TestLoadThroughAPIServer drives concurrent writers of Tenants, Accounts and ServiceEncryptionKeys through the
// real kube-apiserver, first with the webhooks registered and then without them, in one run. Half of the writes
// are ones the webhook denies (a key naming a missing Account, a nested Tenant naming a missing parent); without
// the webhook the API server stores them. It logs the write throughput both ways, the client-side latency, and
// the p99 of the API server's own apiserver_admission_webhook_admission_duration_seconds for each of our
// webhooks (from the histogram's growth during the run, scraped from its /metrics). It asserts only correctness:
// no write fails for any reason other than a denial. Speed is written down in docs/performance.md, not asserted.
//
// APEIRO_E2E_LOAD_DURATION (default 4s per phase) and APEIRO_E2E_LOAD_WRITERS (default 200) make a longer or
// wider run.
func TestLoadThroughAPIServer(t *testing.T) {
	needOwnCluster(t)
	f := newFixture(t)
	ctx := f.ctx
	s := env.stack
	dur := envDuration(t, "APEIRO_E2E_LOAD_DURATION", 4*time.Second)
	writers := envInt(t, "APEIRO_E2E_LOAD_WRITERS", 200)

	f.tenant("t", cmkv1alpha1.TenantTypeRoot, "", "")
	f.namespace("t")
	lc := loadClient(t)
	mix := loadMix(f.prefix, f.n("t"))
	t.Cleanup(func() { cleanupLoad(t, lc, f.prefix, f.n("t")) })
	record := recordLoad(t, writers) // evidence for the charts; does nothing unless APEIRO_EVIDENCE_DIR is set

	before := scrapeAdmissionHistogram(t)
	with := runWriters(ctx, lc, writers, dur, mix("w"))
	after := scrapeAdmissionHistogram(t)

	if err := s.RemoveWebhookConfigurations(ctx); err != nil {
		t.Fatal(err)
	}
	reinstalled := false
	t.Cleanup(func() {
		if !reinstalled {
			if err := s.InstallWebhookConfigurations(testContext(t)); err != nil {
				t.Errorf("registering the webhook again: %v", err)
			}
		}
	})
	without := runWriters(ctx, lc, writers, dur, mix("n"))
	if err := s.InstallWebhookConfigurations(ctx); err != nil {
		t.Fatal(err)
	}
	reinstalled = true

	t.Logf("machine: %s; %d writers, %s per phase", machine(), writers, dur)
	t.Logf("with the webhook:    %s", with)
	t.Logf("without the webhook: %s", without)
	if without.rate() > 0 {
		t.Logf("throughput with/without: %.2f", with.rate()/without.rate())
	}
	for _, name := range slices.Sorted(maps.Keys(after)) {
		d := after[name].minus(before[name])
		if d.count == 0 {
			continue
		}
		t.Logf("apiserver_admission_webhook_admission_duration_seconds{name=%q}: %.0f calls, p50 %.1f ms, p99 %.1f ms (bucket-interpolated)",
			name, d.count, 1000*d.quantile(0.50), 1000*d.quantile(0.99))
	}
	record(with, without, before, after)
	for _, r := range []*writeResult{with, without} {
		if r.failed.Load() > 0 {
			t.Errorf("%d writes failed other than by a denial; first: %v", r.failed.Load(), r.firstFailures())
		}
	}
	if with.denied.Load() == 0 || with.ok.Load() == 0 {
		t.Errorf("with the webhook, want both admitted and denied writes: %s", with)
	}
	if without.denied.Load() != 0 {
		t.Errorf("without the webhook nothing in the mix should be denied: %s", without)
	}
}

// loadMix returns, per phase tag, a generator of the i-th write of a worker: a root Tenant and an Account (both
// admitted), a key naming a missing Account and a nested Tenant naming a missing parent (both denied by the
// webhook, stored without it).
func loadMix(prefix, ns string) func(tag string) func(worker, seq int) client.Object {
	return func(tag string) func(worker, seq int) client.Object {
		return func(worker, seq int) client.Object {
			name := fmt.Sprintf("%sl%s%d-%d", prefix, tag, worker, seq)
			var o client.Object
			switch (worker + seq) % 4 {
			case 0:
				o = tenantObj(name, cmkv1alpha1.TenantTypeRoot, "", "")
			case 1:
				o = accountObj(ns, name)
			case 2:
				o = keyObj(ns, name, ns, prefix+"missing-account")
			default:
				o = tenantObj(name, cmkv1alpha1.TenantTypeNested, prefix+"missing-parent", "")
			}
			o.SetLabels(map[string]string{loadLabel: strings.TrimSuffix(prefix, "-")})
			return o
		}
	}
}

// loadClient is an admin client without client-side rate limiting: the writers, not client-go, set the pace.
func loadClient(t *testing.T) client.Client {
	t.Helper()
	rc := rest.CopyConfig(env.stack.ControlPlane.RESTConfig())
	rc.QPS, rc.Burst = -1, 0
	rc.Timeout = 30 * time.Second
	c, err := client.New(rc, client.Options{Scheme: env.scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// cleanupLoad deletes what the load wrote: keys first (an Account with keys may not be deleted), then Accounts,
// then Tenants, 64 deletes at a time (a server-side delete-collection walks the objects one by one, each through
// admission, and takes minutes at this size). Objects written with the webhook carry the in-use finalizer, which
// the webhook's controller lifts after its grace; the test does not wait for that.
func cleanupLoad(t *testing.T, c client.Client, prefix, ns string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	sel := client.MatchingLabels{loadLabel: strings.TrimSuffix(prefix, "-")}
	var objs []client.Object
	collect := func(list client.ObjectList, opts ...client.ListOption) {
		if err := c.List(ctx, list, append(opts, sel)...); err != nil {
			t.Logf("cleanup: listing %T: %v", list, err)
			return
		}
		items, _ := meta.ExtractList(list)
		for _, it := range items {
			objs = append(objs, it.(client.Object))
		}
	}
	var failed atomic.Int64
	deleteAll := func() {
		work := make(chan client.Object)
		var wg sync.WaitGroup
		for range 64 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for o := range work {
					if err := c.Delete(ctx, o); err != nil && !apierrors.IsNotFound(err) && failed.Add(1) == 1 {
						t.Logf("cleanup: deleting %T %s: %v", o, o.GetName(), err)
					}
				}
			}()
		}
		for _, o := range objs {
			work <- o
		}
		close(work)
		wg.Wait()
		objs = objs[:0]
	}
	collect(&cmkv1alpha1.ServiceEncryptionKeyList{}, client.InNamespace(ns))
	deleteAll()
	collect(&cmkv1alpha1.AccountList{}, client.InNamespace(ns))
	collect(&cmkv1alpha1.TenantList{})
	deleteAll()
	t.Logf("cleanup: deleted the load's objects in %.1fs (%d failed)", time.Since(start).Seconds(), failed.Load())
}

// writeResult counts the outcomes of a load run.
type writeResult struct {
	ok, denied, failed atomic.Int64
	elapsed            time.Duration

	mu        sync.Mutex
	latencies []time.Duration
	failures  []writeFailure
	trace     bool          // keep samples (only while evidence is recorded: evidence_test.go)
	samples   []writeSample // every write in order of completion, when trace
}

type writeFailure struct {
	at, end time.Time // when the write was sent and when it failed
	err     error
}

func (r *writeResult) rate() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.ok.Load()+r.denied.Load()+r.failed.Load()) / r.elapsed.Seconds()
}

func (r *writeResult) percentile(q float64) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.latencies) == 0 {
		return 0
	}
	l := slices.Clone(r.latencies)
	slices.Sort(l)
	return l[min(len(l)-1, int(math.Ceil(q*float64(len(l))))-1)]
}

func (r *writeResult) firstFailures() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, f := range r.failures[:min(3, len(r.failures))] {
		out = append(out, f.err.Error())
	}
	return out
}

func (r *writeResult) String() string {
	return fmt.Sprintf("%d admitted, %d denied, %d failed in %.1fs = %.0f writes/s; client latency p50 %s, p99 %s",
		r.ok.Load(), r.denied.Load(), r.failed.Load(), r.elapsed.Seconds(), r.rate(),
		r.percentile(0.50).Round(100*time.Microsecond), r.percentile(0.99).Round(100*time.Microsecond))
}

// runWriters runs n writers, each creating the objects mk returns one after another, for dur.
func runWriters(ctx context.Context, c client.Client, n int, dur time.Duration, mk func(worker, seq int) client.Object) *writeResult {
	return runWritersUntil(ctx, c, n, mk, func() bool { return false }, dur)
}

// runWritersUntil is runWriters that also stops early when stop returns true (checked between writes).
func runWritersUntil(ctx context.Context, c client.Client, n int, mk func(worker, seq int) client.Object, stop func() bool, dur time.Duration) *writeResult {
	r := &writeResult{trace: evidence.Enabled()}
	deadline := time.Now().Add(dur)
	start := time.Now()
	var wg sync.WaitGroup
	for w := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := 0; time.Now().Before(deadline) && !stop() && ctx.Err() == nil; seq++ {
				t0 := time.Now()
				err := c.Create(ctx, mk(w, seq))
				lat := time.Since(t0)
				switch {
				case err == nil:
					r.ok.Add(1)
				case devstack.IsWebhookDenial(err):
					r.denied.Add(1)
				default:
					r.failed.Add(1)
				}
				r.mu.Lock()
				r.latencies = append(r.latencies, lat)
				if r.trace {
					r.samples = append(r.samples, writeSample{at: t0, latency: lat, outcome: outcomeOf(err)})
				}
				if err != nil && !devstack.IsWebhookDenial(err) {
					r.failures = append(r.failures, writeFailure{at: t0, end: t0.Add(lat), err: err})
				}
				r.mu.Unlock()
			}
		}()
	}
	wg.Wait()
	r.elapsed = time.Since(start)
	return r
}

// histogram is one Prometheus histogram summed over all label sets but the webhook name.
type histogram struct {
	buckets map[float64]float64 // upper bound -> cumulative count
	count   float64
}

func (h histogram) minus(o histogram) histogram {
	d := histogram{buckets: map[float64]float64{}, count: h.count - o.count}
	for le, v := range h.buckets {
		d.buckets[le] = v - o.buckets[le]
	}
	return d
}

// quantile interpolates linearly inside the bucket holding q, as PromQL's histogram_quantile does.
func (h histogram) quantile(q float64) float64 {
	les := slices.Sorted(maps.Keys(h.buckets))
	if len(les) == 0 || h.count == 0 {
		return math.NaN()
	}
	rank := q * h.count
	prevLe, prevCount := 0.0, 0.0
	for _, le := range les {
		c := h.buckets[le]
		if c >= rank {
			if math.IsInf(le, 1) {
				return prevLe
			}
			if c == prevCount {
				return le
			}
			return prevLe + (le-prevLe)*(rank-prevCount)/(c-prevCount)
		}
		prevLe, prevCount = le, c
	}
	return les[len(les)-1]
}

// scrapeAdmissionHistogram reads apiserver_admission_webhook_admission_duration_seconds from the API server's
// /metrics, per webhook name.
func scrapeAdmissionHistogram(t *testing.T) map[string]histogram {
	t.Helper()
	cp := env.stack.ControlPlane
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(cp.CACertPEM)
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	req, _ := http.NewRequest(http.MethodGet, cp.URL+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+cp.Token)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("scraping the API server's /metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scraping the API server's /metrics: %s", resp.Status)
	}
	return parseAdmissionHistogram(bufio.NewScanner(resp.Body))
}

func parseAdmissionHistogram(sc *bufio.Scanner) map[string]histogram {
	const metric = "apiserver_admission_webhook_admission_duration_seconds_"
	out := map[string]histogram{}
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, metric) {
			continue
		}
		rest := strings.TrimPrefix(line, metric)
		open, end := strings.IndexByte(rest, '{'), strings.LastIndexByte(rest, '}')
		if open < 0 || end < open {
			continue
		}
		kind, labels := rest[:open], parseLabels(rest[open+1:end])
		v, err := strconv.ParseFloat(strings.TrimSpace(rest[end+1:]), 64)
		if err != nil {
			continue
		}
		h, ok := out[labels["name"]]
		if !ok {
			h = histogram{buckets: map[float64]float64{}}
		}
		switch kind {
		case "bucket":
			le, err := strconv.ParseFloat(labels["le"], 64)
			if err != nil {
				continue
			}
			h.buckets[le] += v
		case "count":
			h.count += v
		}
		out[labels["name"]] = h
	}
	return out
}

// parseLabels reads name="value" pairs; our label values hold no quotes or commas.
func parseLabels(s string) map[string]string {
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if ok {
			out[k] = strings.Trim(v, `"`)
		}
	}
	return out
}

func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("%s=%q: want a positive duration such as 60s", name, v)
	}
	return d
}

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// machine names the host for logged numbers: CPU count and model.
func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				_, model, _ = strings.Cut(l, ":")
				model = strings.TrimSpace(model)
				break
			}
		}
	}
	return fmt.Sprintf("%d CPUs (%s)", runtime.NumCPU(), model)
}

// sel selects what a load or fault test with this fixture prefix wrote.
func sel(prefix string) client.MatchingLabels {
	return client.MatchingLabels{loadLabel: strings.TrimSuffix(prefix, "-")}
}
