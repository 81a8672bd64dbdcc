package account

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/keychain"
)

type proberFunc func(context.Context, *cmkv1.Account) error

func (f proberFunc) ProbeKey(ctx context.Context, a *cmkv1.Account) error { return f(ctx, a) }

func TestReconcile(t *testing.T) {
	notFound := proberFunc(func(context.Context, *cmkv1.Account) error {
		return fmt.Errorf("%w: gone", keychain.ErrKeyNotFound)
	})
	ok := proberFunc(func(context.Context, *cmkv1.Account) error { return nil })
	down := proberFunc(func(context.Context, *cmkv1.Account) error { return errors.New("connection refused") })

	cases := []struct {
		name       string
		prober     keychain.Prober
		wasReady   bool
		wantStatus metav1.ConditionStatus
		wantReason string
		wantEvent  string // reason of the one expected event, "" for none
		wantAfter  time.Duration
	}{
		{"no plugin", nil, false, metav1.ConditionFalse, ReasonNoKeystorePlugin, "", 30 * time.Second},
		{"key answers: becomes Ready", ok, false, metav1.ConditionTrue, ReasonKeyAnswered, EventAccountReady, 5 * time.Minute},
		{"ready key still answers: no new event", ok, true, metav1.ConditionTrue, ReasonKeyAnswered, "", 5 * time.Minute},
		{"key missing", notFound, false, metav1.ConditionFalse, ReasonKeyNotFound, "", 30 * time.Second},
		{"ready key stops answering", down, true, metav1.ConditionFalse, ReasonKeyUnreachable, EventL1KeyUnreachable, 30 * time.Second},
		{"unready key still down: no new event", down, false, metav1.ConditionFalse, ReasonKeyUnreachable, "", 30 * time.Second},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			scheme := runtime.NewScheme()
			if err := cmkv1.AddToScheme(scheme); err != nil {
				t.Fatal(err)
			}
			a := &cmkv1.Account{
				ObjectMeta: metav1.ObjectMeta{Name: "main", Namespace: "acme", Generation: 3},
				Spec:       cmkv1.AccountSpec{Keystore: cmkv1.KeystoreLocal, KeyRef: "root", Region: "eu-central"},
			}
			if c.wasReady {
				a.Status.Conditions = []metav1.Condition{{Type: cmkv1.ConditionReady, Status: metav1.ConditionTrue, Reason: ReasonKeyAnswered, LastTransitionTime: metav1.Now()}}
			}
			cl := fake.NewClientBuilder().WithScheme(scheme).WithObjects(a).WithStatusSubresource(a).Build()
			rec := events.NewFakeRecorder(4)
			r := &Reconciler{Client: cl, Prober: c.prober, Recorder: rec}
			res, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Namespace: "acme", Name: "main"}})
			if err != nil {
				t.Fatal(err)
			}
			if res.RequeueAfter != c.wantAfter {
				t.Errorf("RequeueAfter = %v, want %v", res.RequeueAfter, c.wantAfter)
			}
			var got cmkv1.Account
			if err := cl.Get(context.Background(), types.NamespacedName{Namespace: "acme", Name: "main"}, &got); err != nil {
				t.Fatal(err)
			}
			for _, typ := range []string{cmkv1.ConditionReady, cmkv1.ConditionKeyReachable} {
				cond := meta.FindStatusCondition(got.Status.Conditions, typ)
				if cond == nil || cond.Status != c.wantStatus || cond.Reason != c.wantReason || cond.ObservedGeneration != 3 {
					t.Errorf("condition %s = %+v, want status %s reason %s gen 3", typ, cond, c.wantStatus, c.wantReason)
				}
			}
			if got.Status.LastProbeTime == nil || got.Status.ObservedGeneration != 3 {
				t.Errorf("status not stamped: %+v", got.Status)
			}
			select {
			case e := <-rec.Events:
				if c.wantEvent == "" || !strings.Contains(e, c.wantEvent) {
					t.Errorf("unexpected event %q (want %q)", e, c.wantEvent)
				}
			default:
				if c.wantEvent != "" {
					t.Errorf("expected a %s event", c.wantEvent)
				}
			}
		})
	}
}

func TestReconcileMissingAccount(t *testing.T) {
	scheme := runtime.NewScheme()
	_ = cmkv1.AddToScheme(scheme)
	r := &Reconciler{Client: fake.NewClientBuilder().WithScheme(scheme).Build()}
	if _, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Namespace: "x", Name: "y"}}); err != nil {
		t.Fatalf("missing account: %v", err)
	}
}
