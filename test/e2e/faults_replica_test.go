package e2e

import (
	"context"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/apeirora/apeiro-cmk/internal/devstack"
	cmkv1alpha1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
)

// TestFaultReplicaKilled runs two webhook replicas behind one Service-like endpoint (devstack.Service: a TCP
// balancer that spreads connections over the ready endpoints, like kube-proxy, with a /readyz probe every 100 ms
// that drops a dead endpoint at its first failure, like the endpoints controller after a failed probe). Writers keep
// writing admitted and denied objects while one replica is killed with SIGKILL and a fresh one (new port, like a
// new pod IP) joins.
//
// What the API server does, and what the test holds it to:
//   - it does not retry a webhook call that failed after the request was sent: a write whose admission call was
//     in flight on the killed replica, or whose new connection reached the dead endpoint before the probe dropped
//     it, fails with "failed calling webhook" (failurePolicy Fail) and the client sees an error — it is never
//     admitted unchecked. Its Go transport does retry a request on a kept-alive connection that turns out to be
//     closed before anything was written, so idle connections to the killed replica cost nothing.
//   - every failure ends after the kill and was sent inside the kill window (until the endpoint is dropped, plus
//     one second); a write sent after it, and after the new replica joins, does not fail;
//   - no object the webhook would deny is stored (nothing slipped through while a replica was down);
//   - both the surviving and the new replica answer.
func TestFaultReplicaKilled(t *testing.T) {
	needOwnCluster(t)
	f := newFixture(t)
	ctx := f.ctx
	f.tenant("t", cmkv1alpha1.TenantTypeRoot, "", "")
	f.namespace("t")

	repA := startFaultReplica(ctx, t, "webhook-fault-a")
	repB := startFaultReplica(ctx, t, "webhook-fault-b")
	pidA, addrA, addrB := repA.Process.PID(), repA.Endpoint().Addr, repB.Endpoint().Addr
	svc := serveBehindService(ctx, t, repA.Endpoint(), repB.Endpoint())

	lc := loadClient(t)
	t.Cleanup(func() { cleanupLoad(t, lc, f.prefix, f.n("t")) })
	writers := envInt(t, "APEIRO_E2E_FAULT_WRITERS", 50)
	rec := recordFault(t, "replica-killed", "one of two webhook replicas killed (SIGKILL), a new one joins; writers through the API server")
	var stop atomic.Bool
	done := make(chan *writeResult)
	go func() {
		done <- runWritersUntil(ctx, lc, writers, loadMix(f.prefix, f.n("t"))("r"), stop.Load, 5*time.Minute)
	}()

	time.Sleep(3 * time.Second)
	killedAt := time.Now()
	if err := syscall.Kill(-pidA, syscall.SIGKILL); err != nil {
		t.Fatalf("killing replica a: %v", err)
	}
	droppedAt := waitDropped(t, svc, addrA)
	repC := startFaultReplica(ctx, t, "webhook-fault-c")
	addrC := repC.Endpoint().Addr
	svc.Add(repC.Endpoint())
	joinedAt := time.Now()
	time.Sleep(3 * time.Second)
	stop.Store(true)
	r := <-done
	recordWrites(rec, r)
	rec.Mark("replica killed, endpoint not yet dropped", killedAt, droppedAt)
	rec.Mark("new replica starting", droppedAt, joinedAt)

	t.Logf("machine: %s; %d writers", machine(), writers)
	t.Logf("writes: %s", r)
	t.Logf("replica a killed; its endpoint dropped after %s; replica c joined %.1fs after the kill; connections per endpoint: %v",
		droppedAt.Sub(killedAt).Round(time.Millisecond), joinedAt.Sub(killedAt).Seconds(), svc.Served())

	window := droppedAt.Add(time.Second)
	r.mu.Lock()
	failures := r.failures
	r.mu.Unlock()
	for _, fl := range failures {
		if !strings.Contains(fl.err.Error(), "failed calling webhook") {
			t.Errorf("a write failed other than by the webhook being unreachable: %v", fl.err)
		}
		// A write sent before the kill may fail by it (it was in flight on the killed replica), but not before it.
		if fl.end.Before(killedAt) || fl.at.After(window) {
			t.Errorf("a write started %s after the kill failed, outside the kill window (endpoint dropped after %s): %v",
				fl.at.Sub(killedAt).Round(time.Millisecond), droppedAt.Sub(killedAt).Round(time.Millisecond), fl.err)
		}
	}
	t.Logf("%d writes failed, all inside the kill window (%s); first: %v", len(failures), window.Sub(killedAt).Round(time.Millisecond), r.firstFailures())
	if r.ok.Load() == 0 || r.denied.Load() == 0 {
		t.Errorf("want admitted and denied writes: %s", r)
	}
	if n := svc.Served(); n[addrB] == 0 || n[addrC] == 0 {
		t.Errorf("the surviving and the new replica must both have answered: %v", n)
	}

	// Nothing the webhook denies was stored meanwhile: the mix's keys all name a missing Account and its nested
	// Tenants a missing parent.
	var keys cmkv1alpha1.ServiceEncryptionKeyList
	if err := lc.List(ctx, &keys, sel(f.prefix)); err != nil {
		t.Fatal(err)
	}
	var tenants cmkv1alpha1.TenantList
	if err := lc.List(ctx, &tenants, sel(f.prefix)); err != nil {
		t.Fatal(err)
	}
	for _, tn := range tenants.Items {
		if tn.Spec.Type == cmkv1alpha1.TenantTypeNested {
			t.Errorf("nested tenant %s with a missing parent was stored", tn.Name)
		}
	}
	if len(keys.Items) > 0 {
		t.Errorf("%d keys naming a missing Account were stored, e.g. %s", len(keys.Items), keys.Items[0].Name)
	}
}

// startFaultReplica starts a webhook replica of the suite's stack (devstack.StartReplica; extraArgs come last) and
// stops it when the test ends.
func startFaultReplica(ctx context.Context, t *testing.T, name string, extraArgs ...string) *devstack.Replica {
	t.Helper()
	r, err := env.stack.StartReplica(ctx, name, extraArgs...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Process.Stop(30 * time.Second) })
	return r
}

// serveBehindService puts a Service stand-in (devstack.Service) in front of the endpoints and registers the webhook
// at it until the test ends; then the stack's own registration is put back.
func serveBehindService(ctx context.Context, t *testing.T, endpoints ...devstack.Endpoint) *devstack.Service {
	t.Helper()
	svc, err := devstack.NewService(endpoints...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Close() })
	if err := env.stack.RegisterAt(ctx, "https://"+svc.Addr()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := env.stack.InstallWebhookConfigurations(testContext(t)); err != nil {
			t.Errorf("registering the webhook again: %v", err)
		}
	})
	return svc
}

// waitDropped returns when the endpoint at addr left the Service's rotation.
func waitDropped(t *testing.T, svc *devstack.Service, addr string) time.Time {
	t.Helper()
	at, err := svc.WaitDropped(addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return at
}

// copyConn copies src to dst until either ends (used by the keystore fault proxy).
func copyConn(dst, src net.Conn) (int64, error) { return io.Copy(dst, src) }
