package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/apeirora/apeiro-cmk/internal/devstack"
	cmkv1alpha1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
)

// fixture builds tenants, namespaces and accounts whose names carry a random prefix, so a test never collides
// with examples/00-world, another test or an earlier run on an existing cluster.
type fixture struct {
	t      *testing.T
	ctx    context.Context
	prefix string
}

func newFixture(t *testing.T) *fixture {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return &fixture{t: t, ctx: testContext(t), prefix: "e2e" + hex.EncodeToString(b) + "-"}
}

// n is the prefixed name of a tenant (and of its namespace).
func (f *fixture) n(name string) string { return f.prefix + name }

// msg formats a message whose %s/%q verbs take the prefixed names of the given tenants.
func (f *fixture) msg(format string, names ...string) string {
	args := make([]any, len(names))
	for i, n := range names {
		args[i] = f.n(n)
	}
	return fmt.Sprintf(format, args...)
}

func tenantObj(name string, typ cmkv1alpha1.TenantType, parent, shadowOf string) *cmkv1alpha1.Tenant {
	return &cmkv1alpha1.Tenant{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       cmkv1alpha1.TenantSpec{Type: typ, Parent: parent, ShadowOf: shadowOf, Region: "eu-central"},
	}
}

// create writes obj for real, retrying while the webhook has not seen what obj depends on yet.
func (f *fixture) create(obj client.Object) {
	f.t.Helper()
	eventually(f.t, 15*time.Second, func() error {
		err := env.client.Create(f.ctx, obj.DeepCopyObject().(client.Object))
		if err == nil || apierrors.IsAlreadyExists(err) {
			return nil
		}
		return fmt.Errorf("creating %T %s: %w", obj, obj.GetName(), err)
	})
}

// tenant creates a tenant named f.n(name); parent and shadowOf are unprefixed names.
func (f *fixture) tenant(name string, typ cmkv1alpha1.TenantType, parent, shadowOf string) {
	f.t.Helper()
	if parent != "" {
		parent = f.n(parent)
	}
	if shadowOf != "" {
		shadowOf = f.n(shadowOf)
	}
	f.create(tenantObj(f.n(name), typ, parent, shadowOf))
}

// namespace creates namespace f.n(tenant) labelled for tenant f.n(tenant).
func (f *fixture) namespace(tenant string) {
	f.t.Helper()
	f.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: f.n(tenant), Labels: map[string]string{cmkv1alpha1.TenantLabel: f.n(tenant)},
	}})
}

func accountObj(namespace, name string) *cmkv1alpha1.Account {
	return &cmkv1alpha1.Account{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec:       cmkv1alpha1.AccountSpec{Keystore: cmkv1alpha1.KeystoreLocal, KeyRef: name + "-l1", Region: "eu-central"},
	}
}

// account creates Account "main" in the namespace of tenant.
func (f *fixture) account(tenant string) {
	f.t.Helper()
	f.create(accountObj(f.n(tenant), "main"))
}

func keyObj(namespace, name, accountNamespace, account string) *cmkv1alpha1.ServiceEncryptionKey {
	return &cmkv1alpha1.ServiceEncryptionKey{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: cmkv1alpha1.ServiceEncryptionKeySpec{
			AccountRef: cmkv1alpha1.AccountReference{Name: account, Namespace: accountNamespace},
			Algorithm:  cmkv1alpha1.AlgorithmAES256,
		},
	}
}

// outcome is the expected answer to a write.
type outcome struct {
	allowed bool
	// message is a substring of the denial.
	message string
	// byWebhook: the denial comes from the admission webhook (false: CRD schema or CEL).
	byWebhook bool
}

func allowed() outcome                 { return outcome{allowed: true} }
func deniedByWebhook(m string) outcome { return outcome{message: m, byWebhook: true} }
func deniedByCRD(m string) outcome     { return outcome{message: m} }

// match returns nil when err is the expected outcome.
func (o outcome) match(err error) error {
	if o.allowed {
		if err != nil {
			return fmt.Errorf("expected allowed, got: %v", err)
		}
		return nil
	}
	if err == nil {
		return fmt.Errorf("expected denied with %q, but it was allowed", o.message)
	}
	if !strings.Contains(err.Error(), o.message) {
		return fmt.Errorf("denied, but without %q: %v", o.message, err)
	}
	if isWebhook := devstack.IsWebhookDenial(err); isWebhook != o.byWebhook {
		return fmt.Errorf("denied with the right message, but by the wrong layer (webhook=%v, want %v): %v", isWebhook, o.byWebhook, err)
	}
	return nil
}

// expectEventually retries write until it gives the expected outcome (informer lag) or 10s pass.
func expectEventually(t *testing.T, want outcome, write func() error) {
	t.Helper()
	eventually(t, 10*time.Second, func() error { return want.match(write()) })
}
