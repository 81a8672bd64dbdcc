package kcp_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
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

// BenchmarkKCPWatchScale measures the multi-cluster watch against a real kcp. While one watcher runs, it creates
// KCP_SCALE_WORKSPACES tenant workspaces (default 200) with KCP_SCALE_WRITERS writers (default 4); each writer
// creates its next workspace only once the previous one reached the model, so the creation rate is what kcp
// sustains rather than a flood that measures client-side queueing. It reports:
//
//   - the event lag from the create call returning to the tenant appearing in the model (p50/p99),
//   - kcp's resident memory (VmRSS) and the heap of the process holding the watcher, at the end,
//   - the initial sync of a second, fresh watcher over everything created (the cost of a webhook restart),
//   - a curve point every KCP_SCALE_REPORT (default 60 s) on stderr, so a long run that is stopped still has
//     numbers.
//
// KCP_SCALE_BUDGET (default 1h) stops creating when it is used up; the metrics then describe the size reached.
//
//	KCP_BIN=$(bash hack/peers/build-kcp.sh) KCP_SCALE_WORKSPACES=10000 nice -n 10 \
//	  go test -run '^$' -bench KCPWatchScale -benchtime 1x -timeout 3h ./test/kcp/
func BenchmarkKCPWatchScale(b *testing.B) {
	n := envInt("KCP_SCALE_WORKSPACES", 200)
	writers := envInt("KCP_SCALE_WRITERS", 4)
	budget := envDuration("KCP_SCALE_BUDGET", time.Hour)
	every := envDuration("KCP_SCALE_REPORT", time.Minute)
	s := kcptest.Start(b)
	ctx, cancel := context.WithTimeout(context.Background(), budget+30*time.Minute)
	defer cancel()
	if _, err := kcpserver.CreateWorkspace(ctx, s.Base, "root", "platform", nil); err != nil {
		b.Fatal(err)
	}
	if _, err := kcpserver.CreateWorkspace(ctx, s.Base, "root", "scale", nil); err != nil {
		b.Fatal(err)
	}
	heapBefore := heapMiB()
	model := hierarchy.New(hierarchy.Config{})
	graph := kcp.NewGraph(kcp.Options{}, model)
	wctx, wcancel := context.WithCancel(ctx)
	w := kcp.NewWatcher(s.Shard, graph, kcp.WatcherOptions{Log: logr.Discard()})
	if err := w.Start(wctx); err != nil {
		b.Fatal(err)
	}
	if err := w.WaitForSync(ctx); err != nil {
		b.Fatal(err)
	}
	dc, err := kcpserver.Client(s.Base, "root:scale")
	if err != nil {
		b.Fatal(err)
	}
	fmt.Fprintf(os.Stderr, "kcp-scale: start n=%d writers=%d budget=%s kcp-rss=%.0fMiB kcp-startup=%s\n", n, writers, budget,
		float64(s.RSSBytes())/(1<<20), s.StartupTime.Round(time.Second))

	var (
		mu    sync.Mutex
		lags  []time.Duration // in completion order
		done  atomic.Int64
		wg    sync.WaitGroup
		next  = make(chan int)
		start = time.Now()
	)
	record := func(d time.Duration) {
		mu.Lock()
		lags = append(lags, d)
		mu.Unlock()
		done.Add(1)
	}
	for range writers {
		wg.Go(func() {
			for i := range next {
				name := fmt.Sprintf("t%05d", i)
				u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "tenancy.kcp.io/v1alpha1", "kind": "Workspace",
					"metadata": map[string]any{"name": name}}}
				if _, err := dc.Resource(kcp.WorkspacesGVR).Create(ctx, u, metav1.CreateOptions{}); err != nil {
					b.Errorf("creating %s: %v", name, err)
					return
				}
				created := time.Now()
				for {
					if _, ok := model.Tenant("scale." + name); ok {
						record(time.Since(created))
						break
					}
					if time.Since(created) > 5*time.Minute {
						b.Errorf("%s never appeared in the model", name)
						return
					}
					time.Sleep(5 * time.Millisecond)
				}
			}
		})
	}
	// The curve: one line per interval with the lags of that interval only.
	stopCurve := make(chan struct{})
	curveDone := make(chan struct{})
	go func() {
		defer close(curveDone)
		t := time.NewTicker(every)
		defer t.Stop()
		seen := 0
		for {
			select {
			case <-stopCurve:
				return
			case <-t.C:
			}
			mu.Lock()
			window := append([]time.Duration(nil), lags[seen:]...)
			seen = len(lags)
			mu.Unlock()
			p50, p99 := percentiles(window)
			fmt.Fprintf(os.Stderr, "kcp-scale: t=%s workspaces=%d rate=%.1f/s lag-p50=%s lag-p99=%s kcp-rss=%.0fMiB heap=%.1fMiB\n",
				time.Since(start).Round(time.Second), done.Load(), float64(len(window))/every.Seconds(), p50, p99,
				float64(s.RSSBytes())/(1<<20), heapMiB()-heapBefore)
		}
	}()
	deadline := time.Now().Add(budget)
feed:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
		if time.Now().After(deadline) {
			fmt.Fprintf(os.Stderr, "kcp-scale: budget %s used up after %d workspaces\n", budget, i+1)
			break
		}
	}
	close(next)
	wg.Wait()
	close(stopCurve)
	<-curveDone
	total := time.Since(start)
	reached := int(done.Load())
	if reached == 0 {
		b.Fatal("no workspace reached the model")
	}
	watcherHeap := heapMiB() - heapBefore
	kcpRSS := float64(s.RSSBytes()) / (1 << 20)
	sort.Slice(lags, func(i, j int) bool { return lags[i] < lags[j] })
	p50, p99 := percentiles(lags)

	// A restart's cost: a second watcher lists everything from scratch.
	wcancel()
	runtime.GC()
	heap0 := heapMiB()
	model2 := hierarchy.New(hierarchy.Config{})
	w2 := kcp.NewWatcher(s.Shard, kcp.NewGraph(kcp.Options{}, model2), kcp.WatcherOptions{Log: logr.Discard()})
	syncStart := time.Now()
	if err := w2.Start(ctx); err != nil {
		b.Fatal(err)
	}
	if err := w2.WaitForSync(ctx); err != nil {
		b.Fatal(err)
	}
	syncTime := time.Since(syncStart)
	if got := model2.Len(); got != reached+1 { // + the "scale" tenant itself
		b.Errorf("the fresh watcher's model has %d tenants, want %d", got, reached+1)
	}
	syncHeap := heapMiB() - heap0
	fmt.Fprintf(os.Stderr, "kcp-scale: end workspaces=%d in %s (%.1f/s) lag-p50=%s lag-p99=%s kcp-rss=%.0fMiB watcher-heap=%.1fMiB initial-sync=%s fresh-watcher-heap=%.1fMiB\n",
		reached, total.Round(time.Second), float64(reached)/total.Seconds(), p50, p99, kcpRSS, watcherHeap, syncTime.Round(time.Millisecond), syncHeap)
	b.ReportMetric(float64(reached), "workspaces")
	b.ReportMetric(float64(p50.Milliseconds()), "lag-p50-ms")
	b.ReportMetric(float64(p99.Milliseconds()), "lag-p99-ms")
	b.ReportMetric(float64(reached)/total.Seconds(), "workspaces/s")
	b.ReportMetric(watcherHeap, "MiB-heap")
	b.ReportMetric(kcpRSS, "MiB-kcp-rss")
	b.ReportMetric(float64(syncTime.Milliseconds()), "initial-sync-ms")
	b.ReportMetric(syncHeap, "MiB-heap-fresh-sync")
}

func percentiles(d []time.Duration) (p50, p99 time.Duration) {
	if len(d) == 0 {
		return 0, 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2].Round(time.Millisecond), s[len(s)*99/100].Round(time.Millisecond)
}

// heapMiB is the live heap after a collection.
func heapMiB() float64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapAlloc) / (1 << 20)
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func envDuration(name string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
