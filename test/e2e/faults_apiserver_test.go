package e2e

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	cmkv1alpha1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
)

// TestFaultAPIServerRestart kills kube-apiserver (SIGKILL; etcd keeps running), leaves it down for a few seconds, and
// starts it again on the same etcd, port and certificates, as a control-plane upgrade or crash does. The webhook
// is not touched. Afterwards its informers must have resumed: the model it judges by holds what was written before
// the restart and follows what is written and deleted after it. Writes cannot reach etcd while the API server is
// down (no client has another way in), so the comparison is made through admission verdicts afterwards.
func TestFaultAPIServerRestart(t *testing.T) {
	needOwnCluster(t)
	f := newFixture(t)
	ctx := f.ctx
	s := env.stack
	cp := s.ControlPlane
	down := envDuration(t, "APEIRO_E2E_APISERVER_DOWN", 5*time.Second)

	// Before: a tenant with its namespace and Account, and a root tenant that will be deleted afterwards.
	f.tenant("p", cmkv1alpha1.TenantTypeRoot, "", "")
	f.namespace("p")
	f.account("p")
	f.tenant("gone", cmkv1alpha1.TenantTypeRoot, "", "")
	ns := f.n("p")

	// Evidence for the chart (nothing unless APEIRO_EVIDENCE_DIR is set): two probers send dry-run keys through the
	// API server, one on the Account (admitted), one on a missing Account (denied), across the restart.
	rec := recordFault(t, "apiserver-restart", "kube-apiserver killed (SIGKILL) and started again; dry-run writes through it")
	var probes atomic.Int32
	pc := evidenceClient(t, rec)
	stopProbes := probeAdmission(t, rec, 2, 100*time.Millisecond, func(ctx context.Context) error {
		account := []string{"main", "missing"}[probes.Add(1)%2]
		return pc.Create(ctx, keyObj(ns, "k-probe", ns, account), client.DryRunAll)
	})
	time.Sleep(evidenceLead(rec))

	start := time.Now()
	if err := cp.StopAPIServer(0); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			if err := cp.StartAPIServer(testContext(t)); err != nil {
				t.Errorf("starting the API server again: %v", err)
			}
		}
	})
	time.Sleep(down)
	if exited, err := s.Webhook.Exited(); exited {
		t.Fatalf("the webhook exited while the API server was down: %v\n%s", err, s.Webhook.LogTail(30))
	}
	if err := cp.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	restarted = true
	up := time.Now()
	if err := s.WaitWebhookAnswering(ctx); err != nil {
		t.Fatal(err)
	}
	answering := time.Now()
	rec.Mark("API server down", start, up)
	rec.Mark("until the webhook answers through it", up, answering)
	t.Logf("machine: %s; API server killed in %.1fs, down for %s, ready again in %.1fs; webhook answering through it %.1fs after that",
		machine(), stopped.Sub(start).Seconds(), down, up.Sub(stopped.Add(down)).Seconds(), answering.Sub(up).Seconds())
	if exited, err := s.Webhook.Exited(); exited {
		t.Fatalf("the webhook exited across the API server restart: %v", err)
	}

	// What was there before the restart is still known: a key on the Account is admitted, one on a missing
	// Account is still denied.
	expectEventually(t, allowed(), func() error {
		return env.client.Create(ctx, keyObj(ns, "k-before", ns, "main"), client.DryRunAll)
	})
	expectEventually(t, deniedByWebhook(fmt.Sprintf(`account "%s/missing" is not found or not usable`, ns)), func() error {
		return env.client.Create(ctx, keyObj(ns, "k-missing", ns, "missing"), client.DryRunAll)
	})

	// Written after the restart: a new root tenant must become a valid parent (the watch delivers the add).
	resumed := time.Now()
	f.tenant("after", cmkv1alpha1.TenantTypeRoot, "", "")
	f.tenant("after-child", cmkv1alpha1.TenantTypeNested, "after", "")
	t.Logf("a parent created after the restart was usable after %s", time.Since(resumed).Round(time.Millisecond))
	time.Sleep(evidenceLead(rec))
	stopProbes()

	// Deleted after the restart: once "gone" is gone (the in-use controller lifts its finalizer, which needs its
	// own informers), a child naming it is refused.
	if err := env.client.Delete(ctx, tenantObj(f.n("gone"), cmkv1alpha1.TenantTypeRoot, "", "")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() error {
		err := env.client.Get(ctx, client.ObjectKey{Name: f.n("gone")}, &cmkv1alpha1.Tenant{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("tenant %s still present (err %v)", f.n("gone"), err)
	})
	expectEventually(t, deniedByWebhook(fmt.Sprintf(`parent tenant "%s" does not exist`, f.n("gone"))), func() error {
		return env.client.Create(ctx, tenantObj(f.n("orphan"), cmkv1alpha1.TenantTypeNested, f.n("gone"), ""), client.DryRunAll)
	})
}
