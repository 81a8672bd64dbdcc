package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/apeirora/apeiro-cmk/internal/controlplane"
	"github.com/apeirora/apeiro-cmk/pkg/admission"
	"github.com/apeirora/apeiro-cmk/pkg/admission/admissiontest"
	cmkv1alpha1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
)

// TestReplicaMemory is a measurement, not a check. It fills the suite's own control plane with
// APEIRO_E2E_MEMORY_TENANTS tenants, each with a namespace and APEIRO_E2E_MEMORY_ACCOUNTS_PER_TENANT Accounts
// (default 10), then starts a second webhook replica against it and reports what a replica costs at that size:
// time to readiness (the informers' initial list), heap (live after GC, from the Go runtime's GC trace) and RSS
// (steady and peak), and the latency of a key-create review whose Account reference is checked against the full
// index. Numbers are recorded in docs/performance.md. It only runs when APEIRO_E2E_MEMORY_TENANTS is set, only on the
// suite's own control plane, and only on Linux (it reads /proc).
//
// How the objects get there:
//   - by default through the API server with the webhook registered (every write admitted by the webhook, as a
//     user would write them), with 64 concurrent writers; then 200 Accounts with the largest annotations the
//     metadata-size policy allows;
//   - with APEIRO_E2E_MEMORY_BULK=etcd straight into the control plane's etcd, in the storage layout and JSON
//     encoding kube-apiserver uses for them, 128 objects per transaction. Admission is bypassed for the bulk (a
//     million admitted creates take hours on a 2-core machine); the replica then reads everything through the
//     API server like any replica does after a restart. The suite's own webhook is stopped meanwhile (its
//     controllers would otherwise probe every bulk Account) and restarted when the bulk is removed again.
//
// The measured replica runs as a follower (a Lease held by another identity), i.e. admission and informers only, as
// every replica but the leader does. APEIRO_E2E_MEMORY_GOMEMLIMIT (e.g. 1200MiB) is passed to it as GOMEMLIMIT, as
// deploy/base derives it from the memory limit.
func TestReplicaMemory(t *testing.T) {
	needOwnCluster(t)
	n, _ := strconv.Atoi(os.Getenv("APEIRO_E2E_MEMORY_TENANTS"))
	if n <= 0 {
		t.Skip("a measurement: set APEIRO_E2E_MEMORY_TENANTS=<tenants> to run it (see docs/performance.md)")
	}
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	per := 10
	if v, err := strconv.Atoi(os.Getenv("APEIRO_E2E_MEMORY_ACCOUNTS_PER_TENANT")); err == nil && v > 0 {
		per = v
	}
	bulk := os.Getenv("APEIRO_E2E_MEMORY_BULK") == "etcd"
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Hour)
	defer cancel()
	report := func(step, metricsAddr string) {
		time.Sleep(3 * time.Second) // let informers catch up
		m, err := scrape(ctx, "http://"+metricsAddr+"/metrics")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("MEMORY %-50s heap_inuse=%7.1f MiB  heap_alloc=%7.1f MiB  rss=%7.1f MiB", step,
			m["go_memstats_heap_inuse_bytes"]/(1<<20), m["go_memstats_alloc_bytes"]/(1<<20), m["process_resident_memory_bytes"]/(1<<20))
	}
	report("suite webhook: baseline (examples world)", env.stack.MetricsAddr)
	cmdline, err := processCmdline(env.stack.Webhook.PID())
	if err != nil {
		t.Fatal(err)
	}

	var ns func(i int) string
	start := time.Now()
	if bulk {
		ns = func(i int) string { return fmt.Sprintf("zmem-%06d", i) }
		if err := env.stack.Webhook.Stop(10 * time.Second); err != nil {
			t.Fatal(err)
		}
		w := etcdWriter{url: env.stack.ControlPlane.EtcdURL, hc: &http.Client{Timeout: time.Minute}}
		t.Cleanup(func() {
			cctx, ccancel := context.WithTimeout(context.Background(), 40*time.Minute)
			defer ccancel()
			// In blocks of 1,000 tenants: one delete of a million keys exceeds etcd's request timeout.
			for _, p := range []string{"/registry/cmk.apeiro.io/accounts/", "/registry/cmk.apeiro.io/tenants/", "/registry/namespaces/"} {
				for b := 0; b*1000 < n; b++ {
					if err := w.deleteRange(cctx, p+ns(b*1000), p+ns((b+1)*1000)); err != nil {
						t.Errorf("removing the bulk objects under %s: %v", p, err)
						break
					}
				}
			}
			if err := waitWatchCache(cctx); err != nil { // the restarted webhook must not list the bulk again
				t.Errorf("waiting for the API server to drop the bulk: %v", err)
			}
			if err := env.stack.RestartWebhook(cctx, nil, nil); err != nil {
				t.Errorf("restarting the suite's webhook: %v", err)
			}
		})
		objs, err := w.load(ctx, t, n, per, ns)
		if err != nil {
			t.Fatal(err)
		}
		el := time.Since(start)
		t.Logf("SCALE wrote %d objects into etcd in %s (%.0f objects/s)", objs, el.Round(time.Second), float64(objs)/el.Seconds())
		// The API server's watch cache ingests the bulk from etcd's watch afterwards; measure that separately, so
		// that the replica's start below is timed against an API server that has caught up (as after any restart).
		start = time.Now()
		if err := waitWatchCache(ctx); err != nil {
			t.Fatal(err)
		}
		t.Logf("SCALE kube-apiserver watch cache caught up with the bulk %s later", time.Since(start).Round(time.Second))
	} else {
		f := newFixture(t)
		ns = func(i int) string { return f.n(fmt.Sprintf("m%06d", i)) }
		var created atomic.Int64
		parallelN(t, 64, n, func(i int) error {
			id := ns(i)
			if err := createRetry(ctx, tenantObj(id, cmkv1alpha1.TenantTypeRoot, "", "")); err != nil {
				return err
			}
			if err := createRetry(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: id, Labels: map[string]string{cmkv1alpha1.TenantLabel: id}}}); err != nil {
				return err
			}
			for j := range per {
				if err := createRetry(ctx, accountObj(id, fmt.Sprintf("a%d", j))); err != nil {
					return err
				}
			}
			created.Add(int64(2 + per))
			return nil
		})
		el := time.Since(start)
		t.Logf("SCALE created %d objects through the API server and the webhook in %s (%.0f admitted creates/s, 64 writers)",
			created.Load(), el.Round(time.Second), float64(created.Load())/el.Seconds())
		report(fmt.Sprintf("suite webhook: %d tenants, %d accounts", n, per*n), env.stack.MetricsAddr)
		parallel(t, 200, func(i int) error {
			a := accountObj(ns(i%n), fmt.Sprintf("fat%d", i))
			a.Annotations = map[string]string{"example.com/pad": strings.Repeat("x", 32000)}
			return createRetry(ctx, a)
		})
		report("suite webhook: +200 accounts with 32000-character annotations", env.stack.MetricsAddr)
	}

	r := startFollower(ctx, t, cmdline)
	t.Logf("SCALE follower replica ready after %s (initial list of %d tenants, %d namespaces, %d accounts); peak RSS while listing %.1f MiB",
		r.ready.Round(10*time.Millisecond), n, n, per*n, float64(r.peakRSS())/(1<<20))
	time.Sleep(10 * time.Second)
	report(fmt.Sprintf("follower: %d tenants, %d accounts", n, per*n), r.metrics)
	t.Logf("MEMORY for context: kube-apiserver RSS %.0f MiB, etcd RSS %.0f MiB",
		float64(procStatus(env.stack.ControlPlane.APIServer.PID(), "VmRSS"))/(1<<20), float64(procStatus(env.stack.ControlPlane.Etcd.PID(), "VmRSS"))/(1<<20))
	t.Logf("MEMORY follower live heap after the last GC: %s; RSS now %.1f MiB, peak %.1f MiB", r.liveHeap(),
		float64(r.rss())/(1<<20), float64(r.peakRSS())/(1<<20))
	for _, c := range []int{1, 16} {
		lat, denied := r.referenceLatency(ctx, t, c, 2000, n, per, ns)
		t.Logf("SCALE key-create review on the follower, %d concurrent: p50 %s  p99 %s  max %s (%d denied or failed)", c,
			lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1], denied)
	}
}

// --- bulk loading into etcd ---

// etcdWriter talks to etcd's JSON gateway (/v3/kv/...), which every etcd serves on its client URL.
type etcdWriter struct {
	url string
	hc  *http.Client
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func (w etcdWriter) post(ctx context.Context, path string, body any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, w.url+path, bytes.NewReader(b))
	resp, err := w.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("etcd %s: %s: %s", path, resp.Status, out)
	}
	return nil
}

func (w etcdWriter) put(ctx context.Context, kvs [][2]string) error {
	ops := make([]map[string]any, len(kvs))
	for i, kv := range kvs {
		ops[i] = map[string]any{"requestPut": map[string]string{"key": b64(kv[0]), "value": b64(kv[1])}}
	}
	return w.post(ctx, "/v3/kv/txn", map[string]any{"success": ops})
}

// deleteRange deletes the keys in [from, to).
func (w etcdWriter) deleteRange(ctx context.Context, from, to string) error {
	return w.post(ctx, "/v3/kv/deleterange", map[string]string{"key": b64(from), "range_end": b64(to)})
}

// load writes n tenants (one Root per ten, the others Nested under it), their namespaces and per Accounts each, in
// the JSON kube-apiserver stores (labels as the mutating webhook would have stamped them).
func (w etcdWriter) load(ctx context.Context, t *testing.T, n, per int, ns func(int) string) (int64, error) {
	const batch = 128
	created := time.Now().UTC().Format(time.RFC3339)
	jobs := make(chan [][2]string, 16)
	var written atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			for kvs := range jobs {
				if err := w.put(ctx, kvs); err != nil {
					select {
					case errc <- err:
					default:
					}
					return
				}
				written.Add(int64(len(kvs)))
			}
		})
	}
	var cur [][2]string
	emit := func(key string, obj any) {
		b, _ := json.Marshal(obj)
		cur = append(cur, [2]string{key, string(b)})
		if len(cur) == batch {
			jobs <- cur
			cur = nil
		}
	}
	uid := func(kind, i, j int) string { return fmt.Sprintf("%08x-0000-4000-8000-%04x%08x", i, kind, j) }
	meta := func(name, namespace, u string, labels map[string]string) map[string]any {
		m := map[string]any{"name": name, "uid": u, "generation": 1, "creationTimestamp": created, "labels": labels}
		if namespace != "" {
			m["namespace"] = namespace
		}
		return m
	}
	// Tenants and Accounts carry the in-use finalizer the leader stamps on every one of them.
	held := func(m map[string]any) map[string]any {
		m["finalizers"] = []string{"cmk.apeiro.io/in-use"}
		return m
	}
	step := max(n/10, 1)
	for i := range n {
		id := ns(i)
		spec := map[string]any{"type": "Root", "region": "eu-central"}
		labels := map[string]string{cmkv1alpha1.TenantLabel: id}
		if i%10 != 0 {
			parent := ns(i - i%10)
			spec = map[string]any{"type": "Nested", "parent": parent, "region": "eu-central"}
			labels[admission.ParentLabel] = parent
		}
		emit("/registry/cmk.apeiro.io/tenants/"+id, map[string]any{"apiVersion": "cmk.apeiro.io/v1alpha1", "kind": "Tenant",
			"metadata": held(meta(id, "", uid(1, i, 0), labels)), "spec": spec})
		emit("/registry/namespaces/"+id, map[string]any{"apiVersion": "v1", "kind": "Namespace",
			"metadata": meta(id, "", uid(2, i, 0), map[string]string{cmkv1alpha1.TenantLabel: id, "kubernetes.io/metadata.name": id}),
			"spec":     map[string]any{"finalizers": []string{"kubernetes"}}, "status": map[string]any{"phase": "Active"}})
		for j := range per {
			name := fmt.Sprintf("a%d", j)
			emit("/registry/cmk.apeiro.io/accounts/"+id+"/"+name, map[string]any{"apiVersion": "cmk.apeiro.io/v1alpha1", "kind": "Account",
				"metadata": held(meta(name, id, uid(3, i, j), map[string]string{cmkv1alpha1.TenantLabel: id})),
				"spec":     map[string]any{"keystore": "local", "keyRef": id + "-" + name, "region": "eu-central"}})
		}
		if (i+1)%step == 0 {
			t.Logf("SCALE bulk: %d/%d tenants queued, %d objects written", i+1, n, written.Load())
		}
		select {
		case err := <-errc:
			close(jobs)
			wg.Wait()
			return written.Load(), err
		default:
		}
	}
	if len(cur) > 0 {
		jobs <- cur
	}
	close(jobs)
	wg.Wait()
	select {
	case err := <-errc:
		return written.Load(), err
	default:
	}
	return written.Load(), nil
}

// waitWatchCache waits until the API server's watch cache serves the newest Accounts: a list at the current etcd
// revision (NotOlderThan) is answered from the cache only once the cache has reached it.
func waitWatchCache(ctx context.Context) error {
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(cmkv1alpha1.GroupVersion.WithKind("AccountList"))
	if err := env.client.List(ctx, list, client.Limit(1)); err != nil {
		return err
	}
	rv := list.ResourceVersion
	return eventuallyErr(30*time.Minute, func() error {
		l := &metav1.PartialObjectMetadataList{}
		l.SetGroupVersionKind(cmkv1alpha1.GroupVersion.WithKind("AccountList"))
		return env.client.List(ctx, l, &client.ListOptions{Limit: 1, Raw: &metav1.ListOptions{ResourceVersion: rv,
			ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan}})
	})
}

// --- a second replica ---

type follower struct {
	proc             *controlplane.Process
	metrics, health  string
	url              string
	ready            time.Duration
	hc               *http.Client
	logPath, certDir string
}

func processCmdline(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil, err
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00"), nil
}

// startFollower starts the webhook binary of the suite with the suite webhook's flags, its own ports, and leader
// election against a Lease held by someone else, and waits for /readyz.
func startFollower(ctx context.Context, t *testing.T, cmdline []string) *follower {
	t.Helper()
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "apeiro-cmk-account-status"},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("memory-measurement"), LeaseDurationSeconds: ptr.To[int32](3600),
			AcquireTime: &metav1.MicroTime{Time: time.Now()}, RenewTime: &metav1.MicroTime{Time: time.Now()}}}
	if err := env.client.Create(ctx, lease); err != nil {
		t.Fatalf("creating the leader lease: %v", err)
	}
	t.Cleanup(func() { _ = env.client.Delete(context.Background(), lease) })
	ports, err := controlplane.FreePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	f := &follower{metrics: fmt.Sprintf("127.0.0.1:%d", ports[1]), health: fmt.Sprintf("127.0.0.1:%d", ports[2]),
		url: fmt.Sprintf("https://127.0.0.1:%d", ports[0])}
	var args []string
	for _, a := range cmdline[1:] {
		switch {
		case strings.HasPrefix(a, "--webhook-port="), strings.HasPrefix(a, "--metrics-bind-address="),
			strings.HasPrefix(a, "--health-probe-bind-address="), strings.HasPrefix(a, "--leader-elect"):
			continue
		case strings.HasPrefix(a, "--cert-dir="):
			f.certDir = strings.TrimPrefix(a, "--cert-dir=")
		}
		args = append(args, a)
	}
	args = append(args, fmt.Sprintf("--webhook-port=%d", ports[0]), "--metrics-bind-address="+f.metrics,
		"--health-probe-bind-address="+f.health, "--leader-elect=true", "--leader-election-namespace=default")
	f.logPath = filepath.Join(t.TempDir(), "follower.log")
	start := time.Now()
	envs := []string{"GODEBUG=gctrace=1", "APEIRO_LOCAL_KEYSTORE_DIR=" + filepath.Join(t.TempDir(), "keystore-local")}
	if l := os.Getenv("APEIRO_E2E_MEMORY_GOMEMLIMIT"); l != "" {
		envs = append(envs, "GOMEMLIMIT="+l) // as deploy/base sets it from the memory limit
	}
	f.proc, err = controlplane.StartProcess("webhook-follower", cmdline[0], args, f.logPath, envs...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.proc.Stop(10 * time.Second) })
	hc := &http.Client{Timeout: 2 * time.Second}
	if err := eventuallyErr(30*time.Minute, func() error {
		if done, err := f.proc.Exited(); done {
			return fmt.Errorf("follower exited: %v\n%s", err, f.proc.LogTail(30))
		}
		resp, err := hc.Get("http://" + f.health + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz: %s", resp.Status)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	f.ready = time.Since(start)
	pool := x509.NewCertPool()
	ca, err := os.ReadFile(filepath.Join(f.certDir, "ca.crt"))
	if err != nil || !pool.AppendCertsFromPEM(ca) {
		t.Fatalf("reading the webhook CA: %v", err)
	}
	f.hc = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64,
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	return f
}

func (f *follower) status(field string) int64 { return procStatus(f.proc.PID(), field) }

// procStatus reads a size field (VmRSS, VmHWM) of /proc/<pid>/status in bytes.
func procStatus(pid int, field string) int64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func (f *follower) rss() int64     { return f.status("VmRSS") }
func (f *follower) peakRSS() int64 { return f.status("VmHWM") }

var gcLine = regexp.MustCompile(`gc \d+ @[0-9.]+s .*?(\d+)->(\d+)->(\d+) MB`)

// liveHeap is the heap marked live by the last GC (the third number of a gctrace line).
func (f *follower) liveHeap() string {
	b, _ := os.ReadFile(f.logPath)
	m := gcLine.FindAllStringSubmatch(string(b), -1)
	if len(m) == 0 {
		return "no GC trace"
	}
	last := m[len(m)-1]
	return last[3] + " MB live (" + last[1] + " MB at GC start, " + strconv.Itoa(len(m)) + " GCs so far)"
}

// referenceLatency sends total key-create reviews, conc at a time, each referencing a different Account of the
// loaded set (a full reference check: namespace -> tenant, Account owner, ancestor walk), and returns the sorted
// round-trip latencies over the keep-alive TLS connection.
func (f *follower) referenceLatency(ctx context.Context, t *testing.T, conc, total, n, per int, ns func(int) string) ([]time.Duration, int) {
	t.Helper()
	lat := make([]time.Duration, total)
	var denied atomic.Int64
	var next atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	for range conc {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= total {
					return
				}
				tenant := (i * 7919) % n
				owner := ns(tenant)
				acct := fmt.Sprintf("a%d", i%per)
				body := admissiontest.Req{Kind: "ServiceEncryptionKey", Namespace: owner, Name: fmt.Sprintf("k%d", i), UID: strconv.Itoa(i),
					Object: admissiontest.KeyObject(owner, fmt.Sprintf("k%d", i), "", acct),
					User:   authenticationv1.UserInfo{Username: "admin", Groups: []string{"system:masters", "system:authenticated"}}}.Body()
				start := time.Now()
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, f.url+admission.PathValidateServiceEncryption, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				resp, err := f.hc.Do(req)
				if err != nil {
					t.Logf("SCALE review %d failed after %s: %v", i, time.Since(start), err)
					lat[i] = time.Since(start)
					denied.Add(1)
					continue
				}
				var ar admissionv1.AdmissionReview
				err = json.NewDecoder(resp.Body).Decode(&ar)
				resp.Body.Close()
				lat[i] = time.Since(start)
				if err != nil || ar.Response == nil {
					t.Errorf("decoding the review response: %v", err)
					continue
				}
				if !ar.Response.Allowed {
					denied.Add(1)
					once.Do(func() { t.Logf("SCALE first denial: %s", ar.Response.Result.Message) })
				}
			}
		})
	}
	wg.Wait()
	slices.Sort(lat)
	return lat, int(denied.Load())
}

// --- helpers ---

func createRetry(ctx context.Context, obj client.Object) error {
	return eventuallyErr(30*time.Second, func() error {
		err := env.client.Create(ctx, obj.DeepCopyObject().(client.Object))
		if err != nil && !strings.Contains(err.Error(), "already exists") {
			return err
		}
		return nil
	})
}

func parallel(t *testing.T, n int, f func(i int) error) { parallelN(t, 8, n, f) }

func parallelN(t *testing.T, workers, n int, f func(i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	next := make(chan int)
	for range workers {
		wg.Go(func() {
			for i := range next {
				if err := f(i); err != nil {
					errs <- err
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// scrape reads the untyped gauge values of a Prometheus text endpoint.
func scrape(ctx context.Context, url string) (map[string]float64, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		if !ok || strings.Contains(name, "{") {
			continue
		}
		if v, err := strconv.ParseFloat(val, 64); err == nil {
			out[name] = v
		}
	}
	return out, sc.Err()
}
