package admission

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/hierarchy"
)

// racingReader returns the object, but the informer deletes it while the live read is in flight.
type racingReader struct {
	client.Reader
	during func()
}

func (r racingReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	err := r.Reader.Get(ctx, key, obj, opts...)
	r.during()
	return err
}

func TestLiveReadRacingADeleteIsNotReinserted(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := cmkv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	ghost := &cmkv1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "ghost"}, Spec: cmkv1.TenantSpec{Type: cmkv1.TenantTypeRoot, Region: "eu-central"}}
	acct := &cmkv1.Account{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "main", Labels: map[string]string{cmkv1.TenantLabel: "ghost"}}}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(ghost, acct).Build()
	key := hierarchy.AccountKey{Namespace: "ns", Name: "main"}

	d := &Directory{Model: hierarchy.New(hierarchy.Config{})}
	d.Live = racingReader{Reader: c, during: func() {
		d.forget(tenantKey("ghost"), func() { d.Model.DeleteTenant("ghost") })
		d.forget(accountKey(key), func() { d.Model.DeleteAccount(key) })
	}}
	if err := d.EnsureAccount(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	if _, ok := d.Model.AccountOwner(key); ok {
		t.Error("an account deleted during its live read was inserted into the model")
	}
	if err := d.EnsureTenant(context.Background(), "ghost"); err != nil {
		t.Fatal(err)
	}
	if _, ok := d.Model.Tenant("ghost"); ok {
		t.Error("a tenant deleted during its live read was inserted into the model")
	}

	// Without a concurrent delete the live read fills the model.
	d.Live = c
	if err := d.EnsureAccount(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	if owner, ok := d.Model.AccountOwner(key); !ok || owner != "ghost" {
		t.Errorf("live read not remembered: owner %q, %v", owner, ok)
	}
	if _, ok := d.Model.Tenant("ghost"); !ok {
		t.Error("live read of the owner tenant not remembered")
	}
}
