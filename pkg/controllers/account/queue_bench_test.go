package account

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/controller/priorityqueue"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// BenchmarkLeaderQueueMemory measures what the leader holds on top of a follower's caches: every controller queues
// every object of its kind once after it starts, and the status reconciler keeps one timer (RequeueAfter) per
// Account. It fills controller-runtime's default (priority) work queue with 1,000,000 Account requests due in five
// minutes, names as the Accounts have them (ten per tenant namespace), and reports retained heap per item.
// Run: go test -run '^$' -bench LeaderQueueMemory -benchtime=1x ./pkg/controllers/account/
func BenchmarkLeaderQueueMemory(b *testing.B) {
	const n = 1000000
	for range b.N {
		reqs := make([]reconcile.Request, n) // the names are held by the informer cache already: not counted
		for i := range reqs {
			reqs[i] = reconcile.Request{NamespacedName: types.NamespacedName{Namespace: fmt.Sprintf("tenant-%06d", i/10), Name: fmt.Sprintf("a%d", i%10)}}
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		q := priorityqueue.New[reconcile.Request]("bench")
		for _, r := range reqs {
			q.AddWithOpts(priorityqueue.AddOpts{After: 5 * time.Minute}, r)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/item")
		q.ShutDown()
		runtime.KeepAlive(reqs)
	}
}
