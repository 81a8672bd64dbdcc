package e2e

import (
	"context"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	cmkv1alpha1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
)

// TestFaultReplicaKilled runs two webhook replicas behind one Service-like endpoint (tcpService below: a TCP
// balancer that spreads connections over the ready endpoints, like kube-proxy, with a TCP readiness probe that
// drops a dead endpoint within ~200 ms, like the endpoints controller after a failed probe). Writers keep writing
// admitted and denied objects while one replica is killed with SIGKILL and a fresh one (new port, like a new pod
// IP) joins.
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
	s := env.stack
	f.tenant("t", cmkv1alpha1.TenantTypeRoot, "", "")
	f.namespace("t")

	startReplica := func(name string) (pid int, addr string) {
		t.Helper()
		r, err := s.StartReplica(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = r.Process.Stop(10 * time.Second) })
		u, err := url.Parse(r.URL)
		if err != nil {
			t.Fatal(err)
		}
		return r.Process.PID(), u.Host
	}
	pidA, addrA := startReplica("webhook-fault-a")
	_, addrB := startReplica("webhook-fault-b")
	svc := newTCPService(t, addrA, addrB)
	if err := s.RegisterAt(ctx, "https://"+svc.addr()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.InstallWebhookConfigurations(testContext(t)); err != nil {
			t.Errorf("registering the webhook again: %v", err)
		}
	})

	lc := loadClient(t)
	t.Cleanup(func() { cleanupLoad(t, lc, f.prefix, f.n("t")) })
	writers := envInt(t, "APEIRO_E2E_FAULT_WRITERS", 50)
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
	droppedAt := svc.waitDropped(t, addrA, 10*time.Second)
	_, addrC := startReplica("webhook-fault-c")
	svc.add(addrC)
	joinedAt := time.Now()
	time.Sleep(3 * time.Second)
	stop.Store(true)
	r := <-done

	t.Logf("machine: %s; %d writers", machine(), writers)
	t.Logf("writes: %s", r)
	t.Logf("replica a killed; its endpoint dropped after %s; replica c joined %.1fs after the kill; connections per endpoint: %v",
		droppedAt.Sub(killedAt).Round(time.Millisecond), joinedAt.Sub(killedAt).Seconds(), svc.served())

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
	if n := svc.served(); n[addrB] == 0 || n[addrC] == 0 {
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

// tcpService stands in for a Kubernetes Service in front of webhook replicas: it accepts TCP connections and
// splices each one to the next ready endpoint (round robin per connection, as kube-proxy balances connections, not
// requests). A dial to an endpoint that has died is not retried elsewhere — the client's connection is closed, as
// a connection to a dead pod IP fails — until the readiness probe (a TCP connect every 100 ms) drops it.
type tcpService struct {
	ln net.Listener

	mu        sync.Mutex
	endpoints []string
	ready     map[string]bool
	droppedAt map[string]time.Time
	conns     map[string]int
	next      int
}

func newTCPService(t *testing.T, endpoints ...string) *tcpService {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &tcpService{ln: ln, ready: map[string]bool{}, droppedAt: map[string]time.Time{}, conns: map[string]int{}}
	for _, e := range endpoints {
		s.add(e)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); s.serve() }()
	go func() { defer wg.Done(); s.probe(ctx) }()
	t.Cleanup(func() { cancel(); _ = ln.Close(); wg.Wait() })
	return s
}

func (s *tcpService) addr() string { return s.ln.Addr().String() }

func (s *tcpService) add(endpoint string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endpoints = append(s.endpoints, endpoint)
	s.ready[endpoint] = true
}

func (s *tcpService) served() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for k, v := range s.conns {
		out[k] = v
	}
	return out
}

func (s *tcpService) pick() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range s.endpoints {
		e := s.endpoints[s.next%len(s.endpoints)]
		s.next++
		if s.ready[e] {
			s.conns[e]++
			return e
		}
	}
	return ""
}

func (s *tcpService) serve() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		go s.splice(c)
	}
}

func (s *tcpService) splice(c net.Conn) {
	defer c.Close()
	e := s.pick()
	if e == "" {
		return
	}
	b, err := net.DialTimeout("tcp", e, 2*time.Second)
	if err != nil {
		return
	}
	defer b.Close()
	// When either side ends, end both: a dead replica's connections reach the client as closed, as they do
	// through kube-proxy once the pod is gone.
	done := make(chan struct{}, 2)
	go func() { _, _ = copyConn(b, c); done <- struct{}{} }()
	go func() { _, _ = copyConn(c, b); done <- struct{}{} }()
	<-done
}

// probe drops an endpoint from rotation once a TCP connect to it fails.
func (s *tcpService) probe(ctx context.Context) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		s.mu.Lock()
		eps := append([]string(nil), s.endpoints...)
		s.mu.Unlock()
		for _, e := range eps {
			c, err := net.DialTimeout("tcp", e, 200*time.Millisecond)
			if err == nil {
				_ = c.Close()
				continue
			}
			s.mu.Lock()
			if s.ready[e] {
				s.ready[e] = false
				s.droppedAt[e] = time.Now()
			}
			s.mu.Unlock()
		}
	}
}

func (s *tcpService) waitDropped(t *testing.T, endpoint string, timeout time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		at, ok := s.droppedAt[endpoint]
		s.mu.Unlock()
		if ok {
			return at
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("endpoint %s not dropped within %s", endpoint, timeout)
	return time.Time{}
}

func copyConn(dst, src net.Conn) (int64, error) { return io.Copy(dst, src) }
