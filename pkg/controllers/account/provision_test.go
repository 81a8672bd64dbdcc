package account

import (
	"context"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/keychain"
	"github.com/apeirora/apeiro-cmk/pkg/keychain/localwrap"
)

// TestReconcileProvisionsLocalKey: an Account on the embedded local keystore whose key does not exist yet gets it
// created by the platform, then probed, and becomes Ready; with provisioning off it stays KeyNotFound.
func TestReconcileProvisionsLocalKey(t *testing.T) {
	for _, provision := range []bool{true, false} {
		scheme := runtime.NewScheme()
		_ = cmkv1.AddToScheme(scheme)
		a := &cmkv1.Account{
			ObjectMeta: metav1.ObjectMeta{Name: "main", Namespace: "acme", Labels: map[string]string{cmkv1.TenantLabel: "acme"}},
			Spec:       cmkv1.AccountSpec{Keystore: cmkv1.KeystoreLocal, KeyRef: "acme-l1", Region: "eu-central"},
		}
		cl := fake.NewClientBuilder().WithScheme(scheme).WithObjects(a).WithStatusSubresource(a).Build()
		w, err := localwrap.New(context.Background(), "dir: "+t.TempDir()+"\n")
		if err != nil {
			t.Fatal(err)
		}
		chain := keychain.NewChain(cl)
		chain.Register(cmkv1.KeystoreLocal, w)
		chain.SetProvisioning(cmkv1.KeystoreLocal, provision)
		// The probe asks the same keystore (production: GetKey through the plugin).
		prober := keychain.ProberFunc(func(ctx context.Context, a *cmkv1.Account) error {
			_, err := chain.L1KeyVersion(ctx, a)
			return err
		})
		rec := events.NewFakeRecorder(4)
		r := &Reconciler{Client: cl, Prober: prober, Chain: chain, Recorder: rec}
		if _, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Namespace: "acme", Name: "main"}}); err != nil {
			t.Fatal(err)
		}
		var got cmkv1.Account
		_ = cl.Get(context.Background(), types.NamespacedName{Namespace: "acme", Name: "main"}, &got)
		c := meta.FindStatusCondition(got.Status.Conditions, cmkv1.ConditionReady)
		var evs []string
		for len(rec.Events) > 0 {
			evs = append(evs, <-rec.Events)
		}
		all := strings.Join(evs, "\n")
		if provision {
			if c == nil || c.Status != metav1.ConditionTrue || !strings.Contains(all, EventL1KeyCreated) || !strings.Contains(all, EventAccountReady) {
				t.Fatalf("provisioning on: Ready %+v, events %q", c, evs)
			}
		} else if c == nil || c.Reason != ReasonKeyNotFound || strings.Contains(all, EventL1KeyCreated) {
			t.Fatalf("provisioning off: Ready %+v, events %q", c, evs)
		}
	}
}
