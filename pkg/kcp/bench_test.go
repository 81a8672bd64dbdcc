package kcp

import (
	"runtime"
	"strconv"
	"testing"

	"github.com/apeirora/apeiro-cmk/pkg/hierarchy"
)

// BenchmarkGraphFeed10k measures what the watch handlers cost for a tree of 10,000 workspaces (100 Root tenants with
// 99 Nested children each) plus one Account per workspace: events applied per second and the heap the graph and
// model hold afterwards (reported as MiB).
func BenchmarkGraphFeed10k(b *testing.B) {
	const roots, children = 100, 99
	for b.Loop() {
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		m := hierarchy.New(hierarchy.Config{})
		g := NewGraph(Options{}, m)
		for r := range roots {
			rp := "root:org" + strconv.Itoa(r)
			lc := "lc-" + strconv.Itoa(r)
			g.UpsertWorkspace(lc, "", "Ready")
			g.UpsertLogicalCluster(lc, rp)
			g.UpsertAccount(Account{Cluster: lc, Namespace: "keys", Name: "main"})
			for c := range children {
				clc := lc + "-" + strconv.Itoa(c)
				g.UpsertWorkspace(clc, "", "Ready")
				g.UpsertLogicalCluster(clc, rp+":team"+strconv.Itoa(c))
				g.UpsertAccount(Account{Cluster: clc, Namespace: "keys", Name: "main"})
			}
		}
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		if m.Len() != roots*(children+1) {
			b.Fatalf("model has %d tenants", m.Len())
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "MiB-held")
		runtime.KeepAlive(g)
	}
	b.ReportMetric(float64(roots*(children+1)*3)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
