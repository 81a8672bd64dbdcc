package e2e

import (
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	cmkv1alpha1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
)

// TestMutationsAreStored checks, through the Go client, that the mutating webhook stamped cmk.apeiro.io/tenant
// (from the namespace, on CREATE and again on UPDATE) and defaulted spec.accountRef.namespace on the stored objects
// of examples/00-world's acme-eu namespace, and that a dry-run create returns the mutated object without storing it.
func TestMutationsAreStored(t *testing.T) {
	needCluster(t)
	f := newFixture(t)
	ctx := f.ctx
	const ns, tenant = "acme-eu", "acme-eu" // examples/00-world
	name := f.n("mut")

	acct := accountObj(ns, name)
	acct.Labels = nil
	eventually(t, 10*time.Second, func() error { return env.client.Create(ctx, acct.DeepCopy()) })
	t.Cleanup(func() { _ = env.client.Delete(ctx, acct) })

	key := keyObj(ns, name, "", name) // no accountRef.namespace, no label
	dry := key.DeepCopy()
	if err := env.client.Create(ctx, dry, client.DryRunAll); err != nil {
		t.Fatalf("dry-run create: %v", err)
	}
	if got := dry.Labels[cmkv1alpha1.TenantLabel]; got != tenant {
		t.Errorf("dry-run response: label %s=%q, want %q", cmkv1alpha1.TenantLabel, got, tenant)
	}
	if dry.Spec.AccountRef.Namespace != ns {
		t.Errorf("dry-run response: spec.accountRef.namespace=%q, want %q", dry.Spec.AccountRef.Namespace, ns)
	}
	if err := env.client.Get(ctx, client.ObjectKeyFromObject(key), &cmkv1alpha1.ServiceEncryptionKey{}); !apierrors.IsNotFound(err) {
		t.Fatalf("dry-run create stored the key (get: %v)", err)
	}

	if err := env.client.Create(ctx, key.DeepCopy()); err != nil {
		t.Fatalf("create: %v", err)
	}
	t.Cleanup(func() { _ = env.client.Delete(ctx, key) })

	storedKey := &cmkv1alpha1.ServiceEncryptionKey{}
	if err := env.client.Get(ctx, client.ObjectKeyFromObject(key), storedKey); err != nil {
		t.Fatal(err)
	}
	if got := storedKey.Labels[cmkv1alpha1.TenantLabel]; got != tenant {
		t.Errorf("stored key: label %s=%q, want %q", cmkv1alpha1.TenantLabel, got, tenant)
	}
	if storedKey.Spec.AccountRef.Namespace != ns {
		t.Errorf("stored key: spec.accountRef.namespace=%q, want %q", storedKey.Spec.AccountRef.Namespace, ns)
	}
	storedAcct := &cmkv1alpha1.Account{}
	if err := env.client.Get(ctx, client.ObjectKeyFromObject(acct), storedAcct); err != nil {
		t.Fatal(err)
	}
	if got := storedAcct.Labels[cmkv1alpha1.TenantLabel]; got != tenant {
		t.Errorf("stored account: label %s=%q, want %q", cmkv1alpha1.TenantLabel, got, tenant)
	}

	// An UPDATE that drops the label gets it stamped again.
	patch := client.MergeFrom(storedKey.DeepCopy())
	delete(storedKey.Labels, cmkv1alpha1.TenantLabel)
	storedKey.Labels["e2e"] = "touched"
	if err := env.client.Patch(ctx, storedKey, patch); err != nil {
		t.Fatalf("update dropping the label: %v", err)
	}
	again := &cmkv1alpha1.ServiceEncryptionKey{}
	if err := env.client.Get(ctx, client.ObjectKeyFromObject(key), again); err != nil {
		t.Fatal(err)
	}
	if got := again.Labels[cmkv1alpha1.TenantLabel]; got != tenant || again.Labels["e2e"] != "touched" {
		t.Errorf("after an update dropping it: labels %v, want %s=%s and e2e=touched", again.Labels, cmkv1alpha1.TenantLabel, tenant)
	}
}
