// Package account reconciles Account status: it probes the referenced L1 key through the keystore plugin and sets
// the KeyReachable and Ready conditions (FR-3.3: an Account is Ready only after its key was proven to exist and
// answer). It re-probes periodically and records events the alert handler forwards: "AccountReady" when an Account
// becomes Ready, "L1KeyUnreachable" when a Ready key stops answering or a key the Account once had is found lost or
// not enabled, "L1KeyNotEnabled" when a key that never answered is disabled or pending deletion. For the embedded
// local keystore, whose keys the platform holds, it creates a missing L1 key (keychain.Chain.EnsureL1Key) — but only
// for an Account that never had a working key (keychain.KeyEstablished, status.keyFirstAnsweredTime): a key that
// answered once and is gone is reported, never silently replaced by new material. It runs only on the elected
// leader.
package account

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/keychain"
)

// Reasons of the conditions.
const (
	ReasonKeyAnswered      = "KeyAnswered"
	ReasonKeyNotFound      = "KeyNotFound"
	ReasonKeyNotEnabled    = "KeyNotEnabled"
	ReasonKeyUnreachable   = "KeyUnreachable"
	ReasonNoKeystorePlugin = "NoKeystorePlugin"
	ReasonProvisionFailed  = "KeyProvisionFailed"
)

// Event reasons (the alert handler routes on them).
const (
	EventAccountReady     = "AccountReady"
	EventL1KeyUnreachable = "L1KeyUnreachable"
	EventL1KeyCreated     = "L1KeyCreated"
	EventL1KeyNotEnabled  = "L1KeyNotEnabled"
)

// Reconciler probes Accounts' L1 keys.
type Reconciler struct {
	// Client reads the Account being reconciled and patches its status. Give it a client that reads Accounts live
	// (admission.ClientOptions): a cached typed read would start an informer holding every Account.
	Client client.Client
	Prober keychain.Prober // nil: no keystore plugin is mapped; Accounts stay not Ready with a clear reason
	// Chain, when set, creates missing L1 keys of keystores the platform provisions (the embedded local keystore).
	Chain    *keychain.Chain
	Recorder events.EventRecorder
	// Interval between probes of a Ready key (default 5 min); RetryInterval after a failure (default 30 s).
	Interval, RetryInterval time.Duration
	// Timeout of one probe (default 10 s: off the admission path, the budget can be larger).
	Timeout time.Duration
	Now     func() time.Time
}

// SetupWithManager registers the reconciler.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	// Only spec changes (and creates/deletes) trigger a probe: the reconciler's own status writes would otherwise
	// re-queue it at once and defeat Interval/RetryInterval. The watch is metadata only (generation is metadata):
	// every replica may become the leader, and a typed watch would hold every Account of the cluster in memory.
	// Reconcile reads the one Account it works on through Client, which the webhook process configures to read
	// Accounts live (admission.ClientOptions).
	return ctrl.NewControllerManagedBy(mgr).
		For(&cmkv1.Account{}, builder.OnlyMetadata, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Named("account-status").Complete(r)
}

// Reconcile implements reconcile.Reconciler.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var a cmkv1.Account
	if err := r.Client.Get(ctx, req.NamespacedName, &a); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !a.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	now := r.now()
	wasReady := meta.IsStatusConditionTrue(a.Status.Conditions, cmkv1.ConditionReady)
	prevReason := ""
	if c := meta.FindStatusCondition(a.Status.Conditions, cmkv1.ConditionReady); c != nil {
		prevReason = c.Reason
	}
	base := a.DeepCopy()
	// An Account that was Ready before status.keyFirstAnsweredTime existed had a working key: record it (as of the
	// time it became Ready) before anything else, so the marker survives this probe turning it not Ready.
	if a.Status.KeyFirstAnsweredTime == nil && keychain.KeyEstablished(&a) {
		since := metav1.NewTime(now)
		if c := meta.FindStatusCondition(a.Status.Conditions, cmkv1.ConditionReady); c != nil && !c.LastTransitionTime.IsZero() {
			since = c.LastTransitionTime
		}
		a.Status.KeyFirstAnsweredTime = &since
	}

	reachable, reason, msg := r.probe(ctx, &a)
	status := metav1.ConditionFalse
	if reachable {
		status = metav1.ConditionTrue
		if a.Status.KeyFirstAnsweredTime == nil {
			// Written in the same patch as Ready=True: nothing can be wrapped under the key (the ServiceEncryptionKey
			// controller waits for Ready) before the Account records that it had a working key.
			t := metav1.NewTime(now)
			a.Status.KeyFirstAnsweredTime = &t
		}
	}
	meta.SetStatusCondition(&a.Status.Conditions, metav1.Condition{Type: cmkv1.ConditionKeyReachable, Status: status, Reason: reason, Message: msg, ObservedGeneration: a.Generation})
	meta.SetStatusCondition(&a.Status.Conditions, metav1.Condition{Type: cmkv1.ConditionReady, Status: status, Reason: reason, Message: msg, ObservedGeneration: a.Generation})
	a.Status.ObservedGeneration = a.Generation
	t := metav1.NewTime(now)
	a.Status.LastProbeTime = &t
	if err := r.Client.Status().Patch(ctx, &a, client.MergeFrom(base)); err != nil {
		if apierrors.IsNotFound(err) {
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, fmt.Errorf("updating status of account %s: %w", req.NamespacedName, err)
	}
	if r.Recorder != nil {
		// Verdicts about the key itself (gone, not enabled) are announced once per change of reason, even when the
		// Account was not Ready before (e.g. the key was deleted during a keystore outage): a lost key is data loss,
		// not a passing outage.
		keyVerdict := (reason == ReasonKeyNotFound || reason == ReasonKeyNotEnabled) && reason != prevReason
		established := a.Status.KeyFirstAnsweredTime != nil // when !reachable, set before this probe (or backfilled)
		switch {
		case wasReady && !reachable, !reachable && established && keyVerdict:
			r.Recorder.Eventf(&a, nil, corev1.EventTypeWarning, EventL1KeyUnreachable, "Probe", "L1 key %q stopped answering: %s", a.Spec.KeyRef, msg)
		case !reachable && reason == ReasonKeyNotEnabled && keyVerdict:
			r.Recorder.Eventf(&a, nil, corev1.EventTypeWarning, EventL1KeyNotEnabled, "Probe", "%s", msg)
		case !wasReady && reachable:
			r.Recorder.Eventf(&a, nil, corev1.EventTypeNormal, EventAccountReady, "Probe", "L1 key %q in keystore %q answered; the account is Ready", a.Spec.KeyRef, a.Spec.Keystore)
		}
	}
	if reachable {
		return ctrl.Result{RequeueAfter: orDefault(r.Interval, 5*time.Minute)}, nil
	}
	return ctrl.Result{RequeueAfter: orDefault(r.RetryInterval, 30*time.Second)}, nil
}

func (r *Reconciler) probe(ctx context.Context, a *cmkv1.Account) (bool, string, string) {
	if r.Prober == nil {
		return false, ReasonNoKeystorePlugin, fmt.Sprintf("no keystore plugin is configured for keystore %q (--keystore-plugins)", a.Spec.Keystore)
	}
	ctx, cancel := context.WithTimeout(ctx, orDefault(r.Timeout, 10*time.Second))
	defer cancel()
	// Only an Account that never had a working key gets one provisioned: once a key answered, anything may be
	// wrapped under it, and a new key under the old name would hide that loss behind a Ready Account.
	if r.Chain != nil && !keychain.KeyEstablished(a) {
		created, err := r.Chain.EnsureL1Key(ctx, a)
		if err != nil {
			return false, ReasonProvisionFailed, fmt.Sprintf("creating L1 key %q in keystore %q: %v", a.Spec.KeyRef, a.Spec.Keystore, err)
		}
		if created && r.Recorder != nil {
			r.Recorder.Eventf(a, nil, corev1.EventTypeNormal, EventL1KeyCreated, "Provision", "created L1 key %q in the embedded %q keystore", a.Spec.KeyRef, a.Spec.Keystore)
		}
	}
	err := r.Prober.ProbeKey(ctx, a)
	switch {
	case err == nil:
		return true, ReasonKeyAnswered, "the L1 key exists and answered"
	case errors.Is(err, keychain.ErrKeyNotFound) && a.Status.KeyFirstAnsweredTime != nil:
		return false, ReasonKeyNotFound, fmt.Sprintf("L1 key %q no longer exists in keystore %q although it answered on %s: "+
			"it is lost and is not re-created, since new material could not unwrap anything wrapped under the old key; "+
			"restore the key in the keystore, or move to a new Account", a.Spec.KeyRef, a.Spec.Keystore, a.Status.KeyFirstAnsweredTime.UTC().Format(time.RFC3339))
	case errors.Is(err, keychain.ErrKeyNotFound):
		return false, ReasonKeyNotFound, fmt.Sprintf("L1 key %q does not exist in keystore %q", a.Spec.KeyRef, a.Spec.Keystore)
	case errors.Is(err, keychain.ErrKeyDisabled):
		state := "its state is unknown"
		var se *keychain.KeyStateError
		if errors.As(err, &se) && se.State != "" {
			state = "state " + se.State
		}
		return false, ReasonKeyNotEnabled, fmt.Sprintf("L1 key %q in keystore %q is not enabled (%s): only an enabled key answers; "+
			"enable it (or cancel its deletion) in the keystore", a.Spec.KeyRef, a.Spec.Keystore, state)
	default:
		return false, ReasonKeyUnreachable, err.Error()
	}
}

func (r *Reconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}
