package account

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/structpb"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/keychain"
)

// provisioner is a keychain.Wrapper + Provisioner that records EnsureKey calls; a created key makes exists true.
type provisioner struct {
	ensured int
	exists  bool
}

func (p *provisioner) Wrap(context.Context, *structpb.Struct, string, []byte, map[string]string) (*keychain.Wrapped, error) {
	return nil, keychain.ErrUnavailable
}

func (p *provisioner) Unwrap(context.Context, *structpb.Struct, string, *keychain.Wrapped, map[string]string) ([]byte, error) {
	return nil, keychain.ErrUnavailable
}

func (p *provisioner) EnsureKey(context.Context, *structpb.Struct, string) (bool, error) {
	p.ensured++
	if p.exists {
		return false, nil
	}
	p.exists = true
	return true, nil
}

// TestReconcileKeyLossAndState: a key is provisioned only for an Account that never had a working key; a key that
// answered once and is missing is reported lost (KeyNotFound + L1KeyUnreachable), never re-created; a key that is
// not enabled makes the Account not Ready (KeyNotEnabled) with an event.
func TestReconcileKeyLossAndState(t *testing.T) {
	answered := metav1.NewTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	readySince := metav1.NewTime(time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC))
	ready := func(s metav1.ConditionStatus, reason string) []metav1.Condition {
		return []metav1.Condition{{Type: cmkv1.ConditionReady, Status: s, Reason: reason, LastTransitionTime: readySince}}
	}
	disabled := &keychain.KeyStateError{State: "DISABLED"}
	cases := []struct {
		name        string
		keystore    cmkv1.KeystoreType
		marker      *metav1.Time
		conds       []metav1.Condition
		keyExists   bool  // for the local keystore: the key is in the keystore
		probeErr    error // non-local keystores: the probe's answer
		wantEnsured bool
		wantReason  string
		wantMsg     string
		wantEvents  []string
		wantMarker  *metav1.Time // nil: "set to now"
	}{
		{name: "new local Account: key provisioned, Ready, first answer recorded", keystore: cmkv1.KeystoreLocal,
			wantEnsured: true, wantReason: ReasonKeyAnswered, wantEvents: []string{EventL1KeyCreated, EventAccountReady}},
		{name: "new local Account, provisioning failed earlier: still provisioned", keystore: cmkv1.KeystoreLocal,
			conds: ready(metav1.ConditionFalse, ReasonProvisionFailed), wantEnsured: true, wantReason: ReasonKeyAnswered,
			wantEvents: []string{EventL1KeyCreated, EventAccountReady}},
		{name: "Ready local Account, key deleted: lost, not re-created", keystore: cmkv1.KeystoreLocal, marker: &answered,
			conds: ready(metav1.ConditionTrue, ReasonKeyAnswered), wantReason: ReasonKeyNotFound, wantMsg: "is lost and is not re-created",
			wantEvents: []string{EventL1KeyUnreachable}, wantMarker: &answered},
		{name: "not Ready (outage) local Account, key deleted meanwhile: lost, raised", keystore: cmkv1.KeystoreLocal, marker: &answered,
			conds: ready(metav1.ConditionFalse, ReasonKeyUnreachable), wantReason: ReasonKeyNotFound, wantMsg: "2026-01-02T03:04:05Z",
			wantEvents: []string{EventL1KeyUnreachable}, wantMarker: &answered},
		{name: "lost key already reported: no new event, still not re-created", keystore: cmkv1.KeystoreLocal, marker: &answered,
			conds: ready(metav1.ConditionFalse, ReasonKeyNotFound), wantReason: ReasonKeyNotFound, wantMarker: &answered},
		{name: "Ready before the marker existed, key deleted: marker backfilled, lost", keystore: cmkv1.KeystoreLocal,
			conds: ready(metav1.ConditionTrue, ReasonKeyAnswered), wantReason: ReasonKeyNotFound, wantMsg: "is lost",
			wantEvents: []string{EventL1KeyUnreachable}, wantMarker: &readySince},
		{name: "lost key restored in the keystore: Ready again", keystore: cmkv1.KeystoreLocal, marker: &answered, keyExists: true,
			conds: ready(metav1.ConditionFalse, ReasonKeyNotFound), wantReason: ReasonKeyAnswered,
			wantEvents: []string{EventAccountReady}, wantMarker: &answered},
		{name: "Ready aws Account, key disabled", keystore: cmkv1.KeystoreAWS, marker: &answered, probeErr: disabled,
			conds: ready(metav1.ConditionTrue, ReasonKeyAnswered), wantReason: ReasonKeyNotEnabled, wantMsg: "state DISABLED",
			wantEvents: []string{EventL1KeyUnreachable}, wantMarker: &answered},
		{name: "new aws Account on a key pending deletion", keystore: cmkv1.KeystoreAWS, probeErr: &keychain.KeyStateError{State: "PENDING_DELETION"},
			wantReason: ReasonKeyNotEnabled, wantMsg: "state PENDING_DELETION", wantEvents: []string{EventL1KeyNotEnabled}},
		{name: "not-enabled key already reported: no new event", keystore: cmkv1.KeystoreAWS, probeErr: disabled,
			conds: ready(metav1.ConditionFalse, ReasonKeyNotEnabled), wantReason: ReasonKeyNotEnabled},
		{name: "key without a reported state", keystore: cmkv1.KeystoreAWS, probeErr: &keychain.KeyStateError{},
			wantReason: ReasonKeyNotEnabled, wantMsg: "its state is unknown", wantEvents: []string{EventL1KeyNotEnabled}},
		{name: "had a key, keystore down, now disabled: raised", keystore: cmkv1.KeystoreAWS, marker: &answered, probeErr: disabled,
			conds: ready(metav1.ConditionFalse, ReasonKeyUnreachable), wantReason: ReasonKeyNotEnabled,
			wantEvents: []string{EventL1KeyUnreachable}, wantMarker: &answered},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			scheme := runtime.NewScheme()
			_ = cmkv1.AddToScheme(scheme)
			a := &cmkv1.Account{
				ObjectMeta: metav1.ObjectMeta{Name: "main", Namespace: "acme", Generation: 1, Labels: map[string]string{cmkv1.TenantLabel: "acme"}},
				Spec:       cmkv1.AccountSpec{Keystore: c.keystore, KeyRef: "acme-l1", Region: "eu-central"},
				Status:     cmkv1.AccountStatus{KeyFirstAnsweredTime: c.marker, Conditions: c.conds},
			}
			cl := fake.NewClientBuilder().WithScheme(scheme).WithObjects(a).WithStatusSubresource(a).Build()
			prov := &provisioner{exists: c.keyExists}
			chain := keychain.NewChain(cl)
			chain.Register(cmkv1.KeystoreLocal, prov)
			chain.SetProvisioning(cmkv1.KeystoreLocal, true)
			prober := proberFunc(func(_ context.Context, a *cmkv1.Account) error {
				if a.Spec.Keystore != cmkv1.KeystoreLocal {
					return c.probeErr
				}
				if !prov.exists {
					return fmt.Errorf("%w: local keystore: key not found", keychain.ErrKeyNotFound)
				}
				return nil
			})
			rec := events.NewFakeRecorder(8)
			now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
			r := &Reconciler{Client: cl, Prober: prober, Chain: chain, Recorder: rec, Now: func() time.Time { return now }}
			if _, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Namespace: "acme", Name: "main"}}); err != nil {
				t.Fatal(err)
			}
			if (prov.ensured > 0) != c.wantEnsured {
				t.Errorf("EnsureKey called %d times, want called=%v", prov.ensured, c.wantEnsured)
			}
			var got cmkv1.Account
			if err := cl.Get(context.Background(), client.ObjectKeyFromObject(a), &got); err != nil {
				t.Fatal(err)
			}
			cond := meta.FindStatusCondition(got.Status.Conditions, cmkv1.ConditionReady)
			if cond == nil || cond.Reason != c.wantReason || (cond.Status == metav1.ConditionTrue) != (c.wantReason == ReasonKeyAnswered) ||
				!strings.Contains(cond.Message, c.wantMsg) {
				t.Errorf("Ready = %+v, want reason %s, message containing %q", cond, c.wantReason, c.wantMsg)
			}
			wantMarker := c.wantMarker
			if wantMarker == nil && c.wantReason == ReasonKeyAnswered {
				n := metav1.NewTime(now)
				wantMarker = &n
			}
			if (got.Status.KeyFirstAnsweredTime == nil) != (wantMarker == nil) ||
				(wantMarker != nil && !got.Status.KeyFirstAnsweredTime.Equal(wantMarker)) {
				t.Errorf("keyFirstAnsweredTime = %v, want %v", got.Status.KeyFirstAnsweredTime, wantMarker)
			}
			var evs []string
			for len(rec.Events) > 0 {
				evs = append(evs, <-rec.Events)
			}
			if len(evs) != len(c.wantEvents) {
				t.Fatalf("events %q, want reasons %v", evs, c.wantEvents)
			}
			for i, want := range c.wantEvents {
				if !strings.Contains(evs[i], " "+want+" ") {
					t.Errorf("event %d = %q, want reason %s", i, evs[i], want)
				}
			}
		})
	}
}
