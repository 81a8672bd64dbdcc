package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	cmkv1alpha1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
)

// TestReplicaMemory is a measurement, not a check: it fills the suite's own control plane with
// APEIRO_E2E_MEMORY_TENANTS tenants (each with a namespace and 10 Accounts), then adds 200 Accounts carrying the
// largest annotations the metadata-size policy allows, and logs the webhook's heap and RSS (from its /metrics) after
// each step. Numbers are recorded in docs/performance.md. It only runs when APEIRO_E2E_MEMORY_TENANTS is set
// (it writes thousands of objects and takes minutes), and only on the suite's own control plane.
func TestReplicaMemory(t *testing.T) {
	needOwnCluster(t)
	n, _ := strconv.Atoi(os.Getenv("APEIRO_E2E_MEMORY_TENANTS"))
	if n <= 0 {
		t.Skip("a measurement: set APEIRO_E2E_MEMORY_TENANTS=<tenants> to run it (see docs/performance.md)")
	}
	ctx := testContext(t)
	f := newFixture(t)
	report := func(step string) {
		time.Sleep(3 * time.Second) // let informers catch up
		m, err := scrape(ctx, "http://"+env.stack.MetricsAddr+"/metrics")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("MEMORY %-40s heap_inuse=%6.1f MiB  heap_alloc=%6.1f MiB  rss=%6.1f MiB", step,
			m["go_memstats_heap_inuse_bytes"]/(1<<20), m["go_memstats_alloc_bytes"]/(1<<20), m["process_resident_memory_bytes"]/(1<<20))
	}
	report("baseline (examples world)")
	parallel(t, n, func(i int) error {
		id := f.n(fmt.Sprintf("m%05d", i))
		if err := createRetry(ctx, tenantObj(id, cmkv1alpha1.TenantTypeRoot, "", "")); err != nil {
			return err
		}
		if err := createRetry(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: id, Labels: map[string]string{cmkv1alpha1.TenantLabel: id}}}); err != nil {
			return err
		}
		for j := range 10 {
			if err := createRetry(ctx, accountObj(id, fmt.Sprintf("a%d", j))); err != nil {
				return err
			}
		}
		return nil
	})
	report(fmt.Sprintf("%d tenants, %d namespaces, %d accounts", n, n, 10*n))
	parallel(t, 200, func(i int) error {
		a := accountObj(f.n(fmt.Sprintf("m%05d", i%n)), fmt.Sprintf("fat%d", i))
		a.Annotations = map[string]string{"example.com/pad": strings.Repeat("x", 32000)}
		return createRetry(ctx, a)
	})
	report("+200 accounts with 32000-character annotations")
}

func createRetry(ctx context.Context, obj client.Object) error {
	return eventuallyErr(30*time.Second, func() error {
		err := env.client.Create(ctx, obj.DeepCopyObject().(client.Object))
		if err != nil && !strings.Contains(err.Error(), "already exists") {
			return err
		}
		return nil
	})
}

func parallel(t *testing.T, n int, f func(i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	next := make(chan int)
	for range 8 {
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
