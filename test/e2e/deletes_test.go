package e2e

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	cmkv1alpha1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
)

// TestProtectedDeletes: a Tenant with children or shadows and an Account with keys cannot be deleted (kubectl dry
// run and real delete agree, and nothing is removed); each delete goes through once its dependents are gone.
func TestProtectedDeletes(t *testing.T) {
	needCluster(t)
	f := newFixture(t)
	f.tenant("p", cmkv1alpha1.TenantTypeRoot, "", "")
	f.tenant("c", cmkv1alpha1.TenantTypeNested, "p", "")
	f.tenant("s", cmkv1alpha1.TenantTypeShadow, "", "p")
	f.namespace("p")
	f.account("p")
	key := keyObj(f.n("p"), "k", f.n("p"), "main")
	f.create(key)

	acctRef := []string{"-n", f.n("p"), "account", "main"}
	denied := func(t *testing.T, what []string, msg string) {
		t.Helper()
		expectKubectlDeleteDenied(t, f, what, msg)
	}
	allowedDelete := func(t *testing.T, obj client.Object) {
		t.Helper()
		eventually(t, 10*time.Second, func() error {
			if err := env.client.Delete(f.ctx, obj); err != nil && !apierrors.IsNotFound(err) {
				return err
			}
			return nil
		})
	}

	t.Run("H-ACCOUNT-IN-USE account with a key", func(t *testing.T) {
		denied(t, acctRef, f.msg(`account "%s/main" is still referenced by 1 ServiceEncryptionKey`, "p"))
	})
	t.Run("H-DELETE-CHILDREN tenant with a child and a shadow", func(t *testing.T) {
		denied(t, []string{"tenant", f.n("p")}, f.msg(`tenant %q still has 1 child (%s) and 1 shadow (%s)`, "p", "c", "s"))
	})
	t.Run("H-ACCOUNT-DELETE-OK after its last key is gone", func(t *testing.T) {
		allowedDelete(t, key)
		allowedDelete(t, accountObj(f.n("p"), "main"))
	})
	t.Run("H-DELETE-SHADOWS tenant with only a shadow left", func(t *testing.T) {
		allowedDelete(t, tenantObj(f.n("c"), "", "", "")) // H-DELETE-OK: a leaf
		eventually(t, 10*time.Second, func() error {
			return kubectlDeleteDenied(f, []string{"tenant", f.n("p")}, f.msg(`tenant %q is still the target of 1 shadow (%s)`, "p", "s"))
		})
	})
	t.Run("A-TENANT-IN-USE tenant that still owns a namespace", func(t *testing.T) {
		allowedDelete(t, tenantObj(f.n("s"), "", "", ""))
		eventually(t, 10*time.Second, func() error {
			return kubectlDeleteDenied(f, []string{"tenant", f.n("p")}, f.msg(`tenant %q still owns namespaces [%s]`, "p", "p"))
		})
	})
	t.Run("H-DELETE-OK tenant without dependents", func(t *testing.T) {
		// A platform administrator releases the namespace first (removing its tenant label).
		ns := &corev1.Namespace{}
		if err := env.client.Get(f.ctx, client.ObjectKey{Name: f.n("p")}, ns); err != nil {
			t.Fatal(err)
		}
		delete(ns.Labels, cmkv1alpha1.TenantLabel)
		if err := env.client.Update(f.ctx, ns); err != nil {
			t.Fatal(err)
		}
		allowedDelete(t, tenantObj(f.n("p"), "", "", ""))
	})
}

// expectKubectlDeleteDenied asserts that `kubectl delete --dry-run=server` and a real `kubectl delete` are both
// refused with msg by the webhook, and the object is still there.
func expectKubectlDeleteDenied(t *testing.T, f *fixture, what []string, msg string) {
	t.Helper()
	eventually(t, 10*time.Second, func() error { return kubectlDeleteDenied(f, what, msg) })
}

func kubectlDeleteDenied(f *fixture, what []string, msg string) error {
	for _, dry := range []bool{true, false} {
		args := append([]string{"delete", "--wait=false"}, what...)
		if dry {
			args = append(args, "--dry-run=server")
		}
		res := runKubectl(f.ctx, args...)
		out := res.output()
		if res.err == nil {
			return fmt.Errorf("kubectl %v succeeded: %s", args, out)
		}
		if !contains(out, "admission webhook") || !contains(out, msg) {
			return fmt.Errorf("kubectl %v: want a webhook denial with %q, got: %s", args, msg, out)
		}
		if get := runKubectl(f.ctx, append([]string{"get"}, what...)...); get.err != nil {
			return fmt.Errorf("after the refused delete (dry run %v) the object is gone: %s", dry, get.output())
		}
	}
	return nil
}
