package admission

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/hierarchy"
	"github.com/apeirora/apeiro-cmk/pkg/keychain"
)

// A live read on a model miss fills the model at once on a real request. A dry run prefers the informers' copy: it
// waits for them and writes only when they lag beyond dryRunInformerWait (so its verdict is still a real request's).
// The informer's copy below differs from the live one (Nested instead of Root), which shows whose write won.
func TestDryRunLiveReadWritesNothing(t *testing.T) {
	s := runtime.NewScheme()
	if err := cmkv1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	parent := &cmkv1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "acme"}, Spec: cmkv1.TenantSpec{Type: cmkv1.TenantTypeRoot, Region: "eu"}}
	live := fake.NewClientBuilder().WithScheme(s).WithObjects(parent).Build()
	old := dryRunInformerWait
	dryRunInformerWait = 50 * time.Millisecond
	t.Cleanup(func() { dryRunInformerWait = old })

	cases := []struct {
		name        string
		dryRun      bool
		informerLag time.Duration // >0: the "informer" delivers the tenant after this long; 0: never
		wantType    hierarchy.Type
	}{
		{name: "real request fills the model at once", wantType: hierarchy.Root},
		{name: "dry run leaves the write to the informer", dryRun: true, informerLag: 10 * time.Millisecond, wantType: hierarchy.Nested},
		{name: "dry run fills the model when the informer lags", dryRun: true, wantType: hierarchy.Root},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := &Directory{Model: hierarchy.New(hierarchy.Config{}), Live: live}
			ctx := context.Background()
			if tc.dryRun {
				ctx = keychain.WithDryRun(ctx)
			}
			if tc.informerLag > 0 {
				go func() {
					time.Sleep(tc.informerLag)
					d.Model.UpsertTenant(hierarchy.Tenant{ID: "acme", Type: hierarchy.Nested, Parent: "elsewhere"})
				}()
			}
			if err := d.EnsureTenant(ctx, "acme"); err != nil {
				t.Fatal(err)
			}
			time.Sleep(40 * time.Millisecond) // let a late "informer" write land, as it would
			if got, ok := d.Model.Tenant("acme"); !ok || got.Type != tc.wantType {
				t.Fatalf("tenant in the model: %+v (present %v), want type %s", got, ok, tc.wantType)
			}
		})
	}
}
