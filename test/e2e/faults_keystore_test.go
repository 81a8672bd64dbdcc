package e2e

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/apeirora/apeiro-cmk/internal/testpeers/moto"
	cmkv1alpha1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
)

// TestFaultKeystoreOutage puts a fault proxy between the webhook and the real AWS KMS API (moto, reached through
// IRSA as in TestKeychainAWS) and drives Account admission through the API server while the keystore answers,
// hangs (connections accepted, never answered) and refuses (connections reset), then answers again:
//   - answering: an Account naming a missing L1 key is denied (A-KEY-NOT-FOUND);
//   - hanging or refusing: the same write is admitted within the probe budget (--key-probe-timeout, 2 s; the API
//     server's own budget for the call is the configuration's timeoutSeconds, 5 s) with a warning that names the
//     cause, and nothing waits beyond it;
//   - answering again: the denial comes back without any restart, and an Account admitted during the outage turns
//     Ready on its own.
//
// The keystore is the only peer on the admission path. The IdP, kcp and Alertmanager are not consulted by
// admission; their outages are covered where they act (docs/reliability.md lists the tests).
func TestFaultKeystoreOutage(t *testing.T) {
	needOwnCluster(t)
	f := newFixture(t)
	ctx := f.ctx
	tenant := f.n("ks")
	srv := moto.Start(t, moto.Options{Tenants: []string{tenant}})
	srv.Setenv(t) // the test itself talks to moto directly
	proxy := newFaultProxy(t, strings.TrimPrefix(strings.TrimPrefix(srv.Endpoint, "http://"), "https://"))
	proxied := "http://" + proxy.addr()
	var webhookEnv []string
	for _, kv := range srv.Env() {
		if k, v, _ := strings.Cut(kv, "="); v == srv.Endpoint {
			kv = k + "=" + proxied
		}
		webhookEnv = append(webhookEnv, kv)
	}
	restartProbingWebhook(t, ctx, webhookEnv)
	at := newAWSTenant(t, f, srv, "ks")
	account := at.account
	warnings := &warningRecorder{}
	rc := rest.CopyConfig(env.stack.ControlPlane.RESTConfig())
	rc.WarningHandler = warnings
	wc, err := client.New(rc, client.Options{Scheme: env.scheme})
	if err != nil {
		t.Fatal(err)
	}
	// missingKey is a fresh key ARN per call, so no cached probe answer is reused.
	var n atomic.Int32
	missingKey := func() string {
		return srv.KeyARN(tenant, fmt.Sprintf("00000000-0000-4000-8000-%012d", n.Add(1)))
	}

	// Evidence for the chart (nothing unless APEIRO_EVIDENCE_DIR is set): two probers keep writing Accounts that
	// name a fresh missing key (dry run) through the whole sequence.
	rec := recordFault(t, "keystore-outage", "keystore (AWS KMS API, moto) hanging, then refusing; dry-run Accounts naming a missing key")
	pc := evidenceClient(t, rec)
	stopProbes := probeAdmission(t, rec, 2, 100*time.Millisecond, func(ctx context.Context) error {
		return pc.Create(ctx, account("probe-evidence", missingKey()), client.DryRunAll)
	})
	time.Sleep(evidenceLead(rec))

	// Answering: a missing key is denied.
	expectEventually(t, deniedByWebhook("does not exist"), func() error {
		return wc.Create(ctx, account("probe", missingKey()), client.DryRunAll)
	})

	outageAt := map[faultMode]time.Time{}
	for _, mode := range []faultMode{faultHang, faultRefuse} {
		proxy.set(mode)
		outageAt[mode] = time.Now()
		warnings.reset()
		start := time.Now()
		err := wc.Create(ctx, account("probe", missingKey()), client.DryRunAll)
		took := time.Since(start)
		w := warnings.all()
		t.Logf("keystore %s: admission answered in %s: err=%v warnings=%q", mode, took.Round(time.Millisecond), err, w)
		if err != nil {
			t.Errorf("keystore %s: want the Account admitted with a warning, got %v", mode, err)
		}
		if took > 4*time.Second {
			t.Errorf("keystore %s: admission took %s, beyond the 2 s probe budget plus slack", mode, took)
		}
		if !strings.Contains(strings.Join(w, "\n"), "L1 key not verified yet") {
			t.Errorf("keystore %s: want a warning that the L1 key could not be verified, got %q", mode, w)
		}
		if mode == faultRefuse {
			// An Account with a real key admitted during the outage; it must turn Ready without help afterwards.
			// (Created late in the outage: each failed reconcile doubles the reconciler's requeue delay, and the
			// time to Ready after recovery is that delay.)
			f.create(account("main", at.keyARN))
		}
	}

	proxy.set(faultPass)
	recovered := time.Now()
	rec.Mark("keystore hanging", outageAt[faultHang], outageAt[faultRefuse])
	rec.Mark("keystore refusing", outageAt[faultRefuse], recovered)
	expectEventually(t, deniedByWebhook("does not exist"), func() error {
		return wc.Create(ctx, account("probe", missingKey()), client.DryRunAll)
	})
	t.Logf("keystore back: a missing key denied again after %s", time.Since(recovered).Round(time.Millisecond))
	var a cmkv1alpha1.Account
	eventually(t, 60*time.Second, func() error {
		return conditionIs(ctx, types.NamespacedName{Namespace: tenant, Name: "main"}, &a, func() []metav1.Condition { return a.Status.Conditions }, cmkv1alpha1.ConditionReady, metav1.ConditionTrue, "KeyAnswered")
	})
	t.Logf("the Account admitted during the outage was Ready %s after the keystore came back", time.Since(recovered).Round(time.Millisecond))
	time.Sleep(evidenceLead(rec))
	stopProbes()
}

type warningRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warningRecorder) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, text)
}

func (w *warningRecorder) reset() { w.mu.Lock(); w.msgs = nil; w.mu.Unlock() }

func (w *warningRecorder) all() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.msgs...)
}

type faultMode int32

const (
	faultPass   faultMode = iota // forward to the peer
	faultHang                    // accept and never answer (a black-holed peer, the worst case for budgets)
	faultRefuse                  // accept and reset at once (a peer that is down)
)

func (m faultMode) String() string {
	return [...]string{"answering", "hanging", "refusing"}[m]
}

// faultProxy is a TCP proxy in front of a peer whose failure mode the test switches. Switching closes every open
// connection, so a kept-alive connection does not carry traffic past an outage.
type faultProxy struct {
	ln     net.Listener
	target string
	mode   atomic.Int32

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func newFaultProxy(t *testing.T, target string) *faultProxy {
	t.Helper()
	if u, err := url.Parse("tcp://" + target); err != nil || u.Port() == "" {
		t.Fatalf("fault proxy target %q is not host:port", target)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	go p.serve()
	t.Cleanup(func() { _ = ln.Close(); p.closeAll() })
	return p
}

func (p *faultProxy) addr() string { return p.ln.Addr().String() }

func (p *faultProxy) set(m faultMode) {
	p.mode.Store(int32(m))
	p.closeAll()
}

func (p *faultProxy) track(c net.Conn) {
	p.mu.Lock()
	p.conns[c] = struct{}{}
	p.mu.Unlock()
}

func (p *faultProxy) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		_ = c.Close()
	}
	clear(p.conns)
}

func (p *faultProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.handle(c)
	}
}

func (p *faultProxy) handle(c net.Conn) {
	switch faultMode(p.mode.Load()) {
	case faultRefuse:
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // RST, as from a closed port
		}
		_ = c.Close()
		return
	case faultHang:
		p.track(c) // held open until the mode changes
		return
	}
	b, err := net.DialTimeout("tcp", p.target, 2*time.Second)
	if err != nil {
		_ = c.Close()
		return
	}
	p.track(c)
	p.track(b)
	done := make(chan struct{}, 2)
	go func() { _, _ = copyConn(b, c); done <- struct{}{} }()
	go func() { _, _ = copyConn(c, b); done <- struct{}{} }()
	<-done
	_ = c.Close()
	_ = b.Close()
}
