package account_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/openkcm/plugin-sdk/pkg/catalog"
	commonv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/common/v1"
	operationsv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/operations/v1"

	"github.com/apeirora/apeiro-cmk/pkg/admission/pluginbacked"
	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/controllers/account"
	"github.com/apeirora/apeiro-cmk/pkg/keychain"
	"github.com/apeirora/apeiro-cmk/pkg/keychain/localwrap"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/host"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/local"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/plugintest"
)

// TestLocalKeystoreKeyLoss runs the reconciler against the real embedded keystore as production wires it: the LOCAL
// operations plugin loaded through the plugin-sdk catalog answers the probes (pluginbacked.KeyProber → GetKey), and
// the local Wrapper on the same key directory provisions keys. The keys are then changed through the plugin's own
// Operations API, as an operator (or an accident) would:
//   - a provisioned, Ready key deleted at once: the Account turns KeyNotFound with L1KeyUnreachable and the key is
//     not created again (the keystore still has no such key after several probes);
//   - a Ready key disabled: KeyNotEnabled naming DISABLED, L1KeyUnreachable; enabled again: Ready (AccountReady).
func TestLocalKeystoreKeyLoss(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	yaml := "dir: " + t.TempDir() + "\n"
	set := plugintest.LoadSet(t, plugintest.ModeBuiltin, plugintest.Spec{Type: host.TypeKeyOperations, Name: "LOCAL", YAML: yaml,
		BuiltIn: func() catalog.BuiltInPlugin { return local.NewOperationsBuiltIn("LOCAL") }})
	ops, err := set[0].Plugins.KeyOperations("LOCAL")
	if err != nil {
		t.Fatal(err)
	}
	w, err := localwrap.New(ctx, yaml)
	if err != nil {
		t.Fatal(err)
	}

	scheme := runtime.NewScheme()
	_ = cmkv1.AddToScheme(scheme)
	newAcct := func(name, keyRef string) *cmkv1.Account {
		return &cmkv1.Account{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "acme", Labels: map[string]string{cmkv1.TenantLabel: "acme"}},
			Spec:       cmkv1.AccountSpec{Keystore: cmkv1.KeystoreLocal, KeyRef: keyRef, Region: "eu-central"},
		}
	}
	lost, toggled := newAcct("lost", "acme-l1-lost"), newAcct("toggled", "acme-l1-toggled")
	cl := fake.NewClientBuilder().WithScheme(scheme).WithObjects(lost, toggled).WithStatusSubresource(lost, toggled).Build()
	chain := keychain.NewChain(cl)
	chain.Register(cmkv1.KeystoreLocal, w)
	chain.SetProvisioning(cmkv1.KeystoreLocal, true)
	prober := &pluginbacked.KeyProber{
		Client:         func(cmkv1.KeystoreType) (pluginbacked.KeyOpsClient, error) { return ops, nil },
		InstanceConfig: chain.InstanceConfig,
	}
	rec := events.NewFakeRecorder(32)
	r := &account.Reconciler{Client: cl, Prober: prober, Chain: chain, Recorder: rec}

	// reconcile probes a once (cache dropped: the webhook's periodic probe after the cache TTL) and returns its Ready
	// condition and the event reasons it recorded.
	reconcile := func(a *cmkv1.Account) (*metav1.Condition, []string) {
		t.Helper()
		prober.Forget()
		if _, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(a)}); err != nil {
			t.Fatal(err)
		}
		var got cmkv1.Account
		if err := cl.Get(ctx, client.ObjectKeyFromObject(a), &got); err != nil {
			t.Fatal(err)
		}
		var evs []string
		for len(rec.Events) > 0 {
			evs = append(evs, strings.Fields(<-rec.Events)[1])
		}
		return meta.FindStatusCondition(got.Status.Conditions, cmkv1.ConditionReady), evs
	}
	params := func(a *cmkv1.Account) *operationsv1.RequestParameters {
		cfg, err := chain.InstanceConfig(a)
		if err != nil {
			t.Fatal(err)
		}
		return &operationsv1.RequestParameters{Config: &commonv1.KeystoreInstanceConfig{Values: cfg}, KeyId: a.Spec.KeyRef}
	}
	expect := func(what string, c *metav1.Condition, evs []string, reason, msg string, wantEvents ...string) {
		t.Helper()
		if c == nil || c.Reason != reason || !strings.Contains(c.Message, msg) || fmt.Sprint(evs) != fmt.Sprint(wantEvents) {
			t.Fatalf("%s: Ready %+v, events %v; want reason %s (message containing %q), events %v", what, c, evs, reason, msg, wantEvents)
		}
	}

	for _, a := range []*cmkv1.Account{lost, toggled} {
		c, evs := reconcile(a)
		expect(a.Name+" created", c, evs, account.ReasonKeyAnswered, "", account.EventL1KeyCreated, account.EventAccountReady)
	}

	// Deleted at once (window 0): lost, reported, never replaced.
	now := int32(0)
	if _, err := ops.DeleteKey(ctx, &operationsv1.DeleteKeyRequest{Parameters: params(lost), Window: &now}); err != nil {
		t.Fatal(err)
	}
	c, evs := reconcile(lost)
	expect("deleted key", c, evs, account.ReasonKeyNotFound, "is lost and is not re-created", account.EventL1KeyUnreachable)
	c, evs = reconcile(lost)
	expect("deleted key, next probe", c, evs, account.ReasonKeyNotFound, "is lost")
	if _, err := ops.GetKey(ctx, &operationsv1.GetKeyRequest{Parameters: params(lost)}); status.Code(err) != codes.NotFound {
		t.Fatalf("the lost key was re-created in the keystore: GetKey = %v", err)
	}

	// Disabled, then enabled again.
	if _, err := ops.DisableKey(ctx, &operationsv1.DisableKeyRequest{Parameters: params(toggled)}); err != nil {
		t.Fatal(err)
	}
	c, evs = reconcile(toggled)
	expect("disabled key", c, evs, account.ReasonKeyNotEnabled, "state DISABLED", account.EventL1KeyUnreachable)
	if _, err := ops.EnableKey(ctx, &operationsv1.EnableKeyRequest{Parameters: params(toggled)}); err != nil {
		t.Fatal(err)
	}
	c, evs = reconcile(toggled)
	expect("enabled again", c, evs, account.ReasonKeyAnswered, "", account.EventAccountReady)

	// Scheduled for deletion (the keystore's default window): not enabled, named as such.
	if _, err := ops.DeleteKey(ctx, &operationsv1.DeleteKeyRequest{Parameters: params(toggled)}); err != nil {
		t.Fatal(err)
	}
	c, evs = reconcile(toggled)
	expect("pending deletion", c, evs, account.ReasonKeyNotEnabled, "state PENDING_DELETION", account.EventL1KeyUnreachable)
}
