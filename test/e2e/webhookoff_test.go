package e2e

import (
	"context"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	cmkv1alpha1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
)

// TestWebhookOff deletes the webhook configurations (only on the suite's own control plane) and shows:
//   - every `# by: cel` example is still refused, with its marker message, by the CRD alone;
//   - every `# by: webhook` denied example now goes through (a dry run), so those rules really need the webhook;
//   - tenants written while the webhook was down (a parent cycle c1 ⇄ c2, a child whose parent does not exist yet)
//     are handled once it is back: H-CYCLE on the existing cycle and on a late parent pointing at its own child,
//     H-TENANT-VALID for that parent arriving as a Root, H-DELETE-CHILDREN for a parent whose child came first.
//
// The configurations are re-installed afterwards (and on failure), and the suite waits until the webhook answers.
func TestWebhookOff(t *testing.T) {
	needOwnCluster(t)
	ctx := testContext(t)
	examples := loadExamples(t)
	f := newFixture(t)

	if err := env.stack.RemoveWebhookConfigurations(ctx); err != nil {
		t.Fatal(err)
	}
	restored := false
	restore := func() {
		if restored {
			return
		}
		restored = true
		rctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := env.stack.InstallWebhookConfigurations(rctx); err != nil {
			t.Fatalf("re-installing the webhook configurations: %v", err)
		}
	}
	t.Cleanup(restore)

	t.Run("CEL rules without the webhook", func(t *testing.T) {
		n := 0
		for _, ex := range examples {
			if ex.by != "cel" || ex.expect != "denied" {
				continue
			}
			n++
			t.Run(ex.name, func(t *testing.T) {
				res := runKubectl(ctx, "apply", "--dry-run=server", "-f", ex.path)
				v := verdict{admitted: res.err == nil, output: res.output()}
				reportProblems(t, ex.check(v, "kubectl apply --dry-run=server (webhook off)"))
			})
		}
		if n == 0 {
			t.Fatal("no `# by: cel` examples")
		}
	})

	t.Run("webhook rules are off", func(t *testing.T) {
		for _, ex := range examples {
			if ex.by != "webhook" || ex.expect != "denied" {
				continue
			}
			t.Run(ex.name, func(t *testing.T) {
				res := runKubectl(ctx, "apply", "--dry-run=server", "-f", ex.path)
				if res.err != nil {
					t.Errorf("denied with the webhook off, so the CRD decides, not the webhook (fix `# by:`?): %s", res.output())
				}
			})
		}
	})

	// Informer-only data: only possible while nothing checks the writes.
	for _, tn := range []*cmkv1alpha1.Tenant{
		tenantObj(f.n("c1"), cmkv1alpha1.TenantTypeNested, f.n("c2"), ""),
		tenantObj(f.n("c2"), cmkv1alpha1.TenantTypeNested, f.n("c1"), ""),
		tenantObj(f.n("o-child"), cmkv1alpha1.TenantTypeNested, f.n("o-parent"), ""),
	} {
		if err := env.client.Create(ctx, tn); err != nil {
			t.Fatalf("creating %s with the webhook off: %v", tn.Name, err)
		}
	}
	restore()

	t.Run("H-CYCLE parent chain already cyclic", func(t *testing.T) {
		tn := tenantObj(f.n("n"), cmkv1alpha1.TenantTypeNested, f.n("c1"), "")
		expectEventually(t, deniedByWebhook(f.msg(`the parent chain of %q already contains a cycle (%s → %s → %s)`, "c1", "c1", "c2", "c1")),
			func() error { return env.client.Create(ctx, tn.DeepCopy(), client.DryRunAll) })
	})
	t.Run("H-CYCLE late parent points at its own child", func(t *testing.T) {
		tn := tenantObj(f.n("o-parent"), cmkv1alpha1.TenantTypeNested, f.n("o-child"), "")
		expectEventually(t, deniedByWebhook(f.msg(`tenant %q would form a cycle: %s → %s → %s`, "o-parent", "o-parent", "o-child", "o-parent")),
			func() error { return env.client.Create(ctx, tn.DeepCopy(), client.DryRunAll) })
	})
	t.Run("H-TENANT-VALID parent arriving after its child", func(t *testing.T) {
		tn := tenantObj(f.n("o-parent"), cmkv1alpha1.TenantTypeRoot, "", "")
		expectEventually(t, allowed(), func() error { return env.client.Create(ctx, tn.DeepCopy(), client.DryRunAll) })
	})
	t.Run("H-DELETE-CHILDREN member of a cycle", func(t *testing.T) {
		expectKubectlDeleteDenied(t, f, []string{"tenant", f.n("c1")}, f.msg(`tenant %q still has 1 child (%s)`, "c1", "c2"))
	})
}
