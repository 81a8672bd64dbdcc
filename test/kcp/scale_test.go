package kcp_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/apeirora/apeiro-cmk/pkg/hierarchy"
	"github.com/apeirora/apeiro-cmk/pkg/kcp"
	"github.com/apeirora/apeiro-cmk/pkg/kcp/kcpserver"
	"github.com/apeirora/apeiro-cmk/pkg/kcp/kcptest"
)

// BenchmarkKCPWatchScale measures the multi-cluster watch against a real kcp: it creates KCP_SCALE_WORKSPACES
// tenant workspaces (default 200) with 8 parallel writers while the watcher runs, and reports the event lag (from
// the create call returning to the tenant appearing in the model; p50/p99) and the heap the watcher holds.
//
//	KCP_BIN=$(bash hack/peers/build-kcp.sh) KCP_SCALE_WORKSPACES=1000 go test -run '^$' -bench KCPWatchScale -benchtime 1x ./test/kcp/
func BenchmarkKCPWatchScale(b *testing.B) {
	n := 200
	if v, err := strconv.Atoi(os.Getenv("KCP_SCALE_WORKSPACES")); err == nil && v > 0 {
		n = v
	}
	s := kcptest.Start(b)
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	if _, err := kcpserver.CreateWorkspace(ctx, s.Base, "root", "platform", nil); err != nil {
		b.Fatal(err)
	}
	if _, err := kcpserver.CreateWorkspace(ctx, s.Base, "root", "scale", nil); err != nil {
		b.Fatal(err)
	}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	model := hierarchy.New(hierarchy.Config{})
	graph := kcp.NewGraph(kcp.Options{}, model)
	w := kcp.NewWatcher(s.Shard, graph, kcp.WatcherOptions{Log: logr.Discard()})
	if err := w.Start(ctx); err != nil {
		b.Fatal(err)
	}
	if err := w.WaitForSync(ctx); err != nil {
		b.Fatal(err)
	}
	dc, err := kcpserver.Client(s.Base, "root:scale")
	if err != nil {
		b.Fatal(err)
	}
	lags := make([]time.Duration, n)
	var wg sync.WaitGroup
	next := make(chan int)
	start := time.Now()
	for range 8 {
		wg.Go(func() {
			for i := range next {
				name := fmt.Sprintf("t%05d", i)
				u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "tenancy.kcp.io/v1alpha1", "kind": "Workspace",
					"metadata": map[string]any{"name": name}}}
				if _, err := dc.Resource(kcp.WorkspacesGVR).Create(ctx, u, metav1.CreateOptions{}); err != nil {
					b.Error(err)
					return
				}
				created := time.Now()
				for {
					if _, ok := model.Tenant("scale." + name); ok {
						lags[i] = time.Since(created)
						break
					}
					if time.Since(created) > 5*time.Minute {
						b.Errorf("%s never appeared", name)
						return
					}
					time.Sleep(5 * time.Millisecond)
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	total := time.Since(start)
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	sort.Slice(lags, func(i, j int) bool { return lags[i] < lags[j] })
	b.ReportMetric(float64(n), "workspaces")
	b.ReportMetric(float64(lags[n/2].Milliseconds()), "lag-p50-ms")
	b.ReportMetric(float64(lags[n*99/100].Milliseconds()), "lag-p99-ms")
	b.ReportMetric(float64(n)/total.Seconds(), "workspaces/s")
	b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/(1<<20), "MiB-heap")
}
