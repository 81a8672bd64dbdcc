// Package serviceencryptionkey gives every ServiceEncryptionKey real key material: it generates the material,
// wraps it with the Account's L1 key through the key chain (pkg/keychain), stores only the wrapped form in a Secret
// the key owns, and sets status.keyID and Ready. A finalizer removes the wrapped material when the key is deleted;
// when the L1 key gets a new version the material is re-wrapped under it ("KeyRotated" event; "RotationFailed" when
// that fails). Plaintext material exists only in memory, for the moment of wrapping, and is never logged.
//
// Half-created keys are visible: before anything is generated the key gets Ready=False/Provisioning, and every
// failure leaves Ready=False with a reason (AccountNotFound, AccountNotReady, WrapFailed, SecretConflict,
// WrappedKeyLost) and a message.
package serviceencryptionkey

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/keychain"
)

// Finalizer guards the wrapped material: the key is not gone until its Secret is.
const Finalizer = "cmk.apeiro.io/wrapped-key"

// Condition reasons.
const (
	ReasonProvisioning    = "Provisioning"
	ReasonKeyWrapped      = "KeyWrapped"
	ReasonAccountNotFound = "AccountNotFound"
	ReasonAccountNotReady = "AccountNotReady"
	ReasonWrapFailed      = "WrapFailed"
	ReasonSecretConflict  = "SecretConflict"
	ReasonWrappedKeyLost  = "WrappedKeyLost"
)

// Event reasons (the alert handler routes on them).
const (
	EventKeyRotated     = "KeyRotated"
	EventRotationFailed = "RotationFailed"
)

// accountIndex is the field index of keys by "namespace/name" of their Account.
const accountIndex = "cmk.apeiro.io/account"

// Reconciler provisions ServiceEncryptionKeys.
type Reconciler struct {
	// Client writes keys and Secrets, reads keys (cached) and Accounts (live in the webhook process, see
	// admission.ClientOptions: only the one Account a key uses is ever needed).
	Client client.Client
	// Reader reads Secrets live (Secrets are deliberately not cached by the manager). Defaults to Client.
	Reader   client.Reader
	Chain    *keychain.Chain
	Recorder events.EventRecorder
	// Interval between checks of a Ready key's L1 key version (default 10 min); RetryInterval after a failure
	// (default 30 s). Account changes trigger a check at once.
	Interval, RetryInterval time.Duration
	// Timeout of one reconcile's keystore calls (default 30 s: RSA-4096 generation plus a wrap).
	Timeout time.Duration
}

// SetupWithManager registers the reconciler, an index of keys by Account and a watch that re-queues an Account's
// keys when the Account changes (becomes Ready, is re-probed).
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &cmkv1.ServiceEncryptionKey{}, accountIndex, func(o client.Object) []string {
		k := o.(*cmkv1.ServiceEncryptionKey)
		return []string{accountKey(k)}
	}); err != nil {
		return fmt.Errorf("indexing keys by account: %w", err)
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&cmkv1.ServiceEncryptionKey{}).
		// Metadata only: any change of an Account (a status write included) bumps its resource version, which is
		// all this watch needs; the Account itself is read live in Reconcile.
		WatchesMetadata(&cmkv1.Account{}, handler.EnqueueRequestsFromMapFunc(r.keysOfAccount)).
		Named("serviceencryptionkey").Complete(r)
}

func accountKey(k *cmkv1.ServiceEncryptionKey) string {
	ns := k.Spec.AccountRef.Namespace
	if ns == "" {
		ns = k.Namespace
	}
	return ns + "/" + k.Spec.AccountRef.Name
}

func (r *Reconciler) keysOfAccount(ctx context.Context, o client.Object) []reconcile.Request {
	var list cmkv1.ServiceEncryptionKeyList
	if err := r.Client.List(ctx, &list, client.MatchingFields{accountIndex: o.GetNamespace() + "/" + o.GetName()}); err != nil {
		return nil
	}
	out := make([]reconcile.Request, 0, len(list.Items))
	for _, k := range list.Items {
		out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: k.Namespace, Name: k.Name}})
	}
	return out
}

func (r *Reconciler) reader() client.Reader {
	if r.Reader != nil {
		return r.Reader
	}
	return r.Client
}

// Reconcile implements reconcile.Reconciler.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var k cmkv1.ServiceEncryptionKey
	if err := r.Client.Get(ctx, req.NamespacedName, &k); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	ctx, cancel := context.WithTimeout(ctx, orDefault(r.Timeout, 30*time.Second))
	defer cancel()
	if !k.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.finalize(ctx, &k)
	}
	if !controllerutil.ContainsFinalizer(&k, Finalizer) {
		base := k.DeepCopy()
		controllerutil.AddFinalizer(&k, Finalizer)
		if err := r.Client.Patch(ctx, &k, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
			return ctrl.Result{}, client.IgnoreNotFound(err)
		}
	}
	retry := ctrl.Result{RequeueAfter: orDefault(r.RetryInterval, 30*time.Second)}

	acctNS, acctName := k.Spec.AccountRef.Namespace, k.Spec.AccountRef.Name
	if acctNS == "" {
		acctNS = k.Namespace
	}
	var a cmkv1.Account
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: acctNS, Name: acctName}, &a); err != nil {
		if !apierrors.IsNotFound(err) {
			return ctrl.Result{}, err
		}
		return retry, r.setStatus(ctx, &k, false, ReasonAccountNotFound, fmt.Sprintf("account %s/%s does not exist", acctNS, acctName))
	}

	var s corev1.Secret
	err := r.reader().Get(ctx, types.NamespacedName{Namespace: k.Namespace, Name: keychain.SecretName(k.Name)}, &s)
	switch {
	case apierrors.IsNotFound(err):
		if k.Status.KeyID != "" {
			// The key was Ready once: its material existed. Generating new material would silently make every
			// payload sealed under the old one unreadable, so say what happened instead.
			return retry, r.setStatus(ctx, &k, false, ReasonWrappedKeyLost, fmt.Sprintf("the wrapped key material (secret %s) is gone; restore it from a backup or re-create the key", keychain.SecretName(k.Name)))
		}
		return r.provision(ctx, &k, &a)
	case err != nil:
		return ctrl.Result{}, fmt.Errorf("reading the wrapped key of %s: %w", req.NamespacedName, err)
	}
	if !metav1.IsControlledBy(&s, &k) {
		return retry, r.setStatus(ctx, &k, false, ReasonSecretConflict, fmt.Sprintf("secret %s exists and does not belong to this key; remove or rename it", s.Name))
	}
	if k.Status.KeyID == "" || !meta.IsStatusConditionTrue(k.Status.Conditions, cmkv1.ConditionReady) {
		// Created earlier but the status write was lost (or the Account was not Ready then): finish.
		if err := r.setReady(ctx, &k, &a, s.Annotations[keychain.AnnotationKeyID], string(s.Data[keychain.SecretKeyVersion])); err != nil {
			return ctrl.Result{}, err
		}
	}
	if res, err := r.rewrapIfRotated(ctx, &k, &a, &s); err != nil || !res.IsZero() {
		return res, err
	}
	return ctrl.Result{RequeueAfter: orDefault(r.Interval, 10*time.Minute)}, nil
}

// provision generates, wraps and stores the material of a key that has none yet.
func (r *Reconciler) provision(ctx context.Context, k *cmkv1.ServiceEncryptionKey, a *cmkv1.Account) (ctrl.Result, error) {
	retry := ctrl.Result{RequeueAfter: orDefault(r.RetryInterval, 30*time.Second)}
	if !meta.IsStatusConditionTrue(a.Status.Conditions, cmkv1.ConditionReady) {
		return retry, r.setStatus(ctx, k, false, ReasonAccountNotReady, fmt.Sprintf("waiting for account %s/%s to become Ready (its L1 key must answer before it wraps keys)", a.Namespace, a.Name))
	}
	if c := meta.FindStatusCondition(k.Status.Conditions, cmkv1.ConditionReady); c == nil || c.Reason != ReasonProvisioning {
		if err := r.setStatus(ctx, k, false, ReasonProvisioning, "generating key material and wrapping it with the account's L1 key"); err != nil {
			return ctrl.Result{}, err
		}
	}
	material, err := Generate(k.Spec.Algorithm)
	if err != nil {
		return retry, r.setStatus(ctx, k, false, ReasonWrapFailed, err.Error())
	}
	defer clear(material)
	keyID := string(k.UID)
	probe := k.DeepCopy()
	probe.Status.KeyID = keyID
	w, err := r.Chain.WrapWithAccount(ctx, a, material, keychain.ServiceKeyAAD(probe))
	if err != nil {
		return retry, r.setStatus(ctx, k, false, ReasonWrapFailed, err.Error())
	}
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name: keychain.SecretName(k.Name), Namespace: k.Namespace,
			Labels: map[string]string{keychain.LabelServiceKey: keychain.ServiceKeyLabelValue(k.Name)},
			Annotations: map[string]string{
				keychain.AnnotationKeyID: keyID, keychain.AnnotationServiceKey: k.Name,
				keychain.AnnotationAccount: a.Namespace + "/" + a.Name, keychain.AnnotationL1KeyRef: a.Spec.KeyRef,
				keychain.AnnotationAlgorithm: string(k.Spec.Algorithm),
			},
		},
		Type: keychain.SecretType,
		Data: map[string][]byte{keychain.SecretKeyWrapped: w.Ciphertext, keychain.SecretKeyVersion: []byte(w.KeyVersion)},
	}
	if t := k.Labels[cmkv1.TenantLabel]; t != "" {
		s.Labels[cmkv1.TenantLabel] = t
	}
	if err := controllerutil.SetControllerReference(k, s, r.Client.Scheme()); err != nil {
		return ctrl.Result{}, err
	}
	if err := r.Client.Create(ctx, s); err != nil {
		if apierrors.IsAlreadyExists(err) { // a concurrent reconcile won; read its result next time
			return ctrl.Result{RequeueAfter: time.Second}, nil
		}
		return retry, r.setStatus(ctx, k, false, ReasonWrapFailed, fmt.Sprintf("storing the wrapped key: %v", err))
	}
	return ctrl.Result{RequeueAfter: orDefault(r.Interval, 10*time.Minute)}, r.setReady(ctx, k, a, keyID, w.KeyVersion)
}

// rewrapIfRotated re-wraps the material under the L1 key's current version when it was wrapped under an older one.
func (r *Reconciler) rewrapIfRotated(ctx context.Context, k *cmkv1.ServiceEncryptionKey, a *cmkv1.Account, s *corev1.Secret) (ctrl.Result, error) {
	if !meta.IsStatusConditionTrue(a.Status.Conditions, cmkv1.ConditionReady) {
		return ctrl.Result{}, nil // nothing can be re-wrapped while the L1 key does not answer
	}
	current, err := r.Chain.L1KeyVersion(ctx, a)
	if err != nil || current == "" {
		return ctrl.Result{}, nil // versions unknown (or not reported by the backend): the account probe reports outages
	}
	old, err := keychain.WrappedFromSecret(s, k)
	if err != nil {
		return ctrl.Result{RequeueAfter: orDefault(r.RetryInterval, 30*time.Second)}, r.setStatus(ctx, k, false, ReasonWrappedKeyLost, err.Error())
	}
	if old.KeyVersion == current {
		return ctrl.Result{}, nil
	}
	fail := func(err error) (ctrl.Result, error) {
		r.event(k, corev1.EventTypeWarning, EventRotationFailed, "Rewrap", "re-wrapping under L1 key %q version %q failed: %v", a.Spec.KeyRef, current, err)
		return ctrl.Result{RequeueAfter: orDefault(r.RetryInterval, 30*time.Second)}, nil
	}
	aad := keychain.ServiceKeyAAD(k)
	material, err := r.Chain.UnwrapWithAccount(ctx, a, old, aad)
	if err != nil {
		return fail(err)
	}
	defer clear(material)
	w, err := r.Chain.WrapWithAccount(ctx, a, material, aad)
	if err != nil {
		return fail(err)
	}
	base := s.DeepCopy()
	s.Data[keychain.SecretKeyWrapped] = w.Ciphertext
	s.Data[keychain.SecretKeyVersion] = []byte(w.KeyVersion)
	if err := r.Client.Patch(ctx, s, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
		return fail(fmt.Errorf("storing the re-wrapped key: %w", err))
	}
	r.event(k, corev1.EventTypeNormal, EventKeyRotated, "Rewrap", "key material re-wrapped under L1 key %q version %q (was %q)", a.Spec.KeyRef, w.KeyVersion, old.KeyVersion)
	return ctrl.Result{}, r.setReady(ctx, k, a, k.Status.KeyID, w.KeyVersion)
}

// finalize removes the wrapped material, then the finalizer.
func (r *Reconciler) finalize(ctx context.Context, k *cmkv1.ServiceEncryptionKey) error {
	if !controllerutil.ContainsFinalizer(k, Finalizer) {
		return nil
	}
	var s corev1.Secret
	err := r.reader().Get(ctx, types.NamespacedName{Namespace: k.Namespace, Name: keychain.SecretName(k.Name)}, &s)
	switch {
	case err == nil && metav1.IsControlledBy(&s, k):
		if err := r.Client.Delete(ctx, &s, client.Preconditions{UID: &s.UID}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting the wrapped key of %s/%s: %w", k.Namespace, k.Name, err)
		}
	case err != nil && !apierrors.IsNotFound(err):
		return fmt.Errorf("reading the wrapped key of %s/%s: %w", k.Namespace, k.Name, err)
	}
	base := k.DeepCopy()
	controllerutil.RemoveFinalizer(k, Finalizer)
	return client.IgnoreNotFound(r.Client.Patch(ctx, k, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})))
}

func (r *Reconciler) setReady(ctx context.Context, k *cmkv1.ServiceEncryptionKey, a *cmkv1.Account, keyID, version string) error {
	base := k.DeepCopy()
	k.Status.KeyID = keyID
	msg := fmt.Sprintf("key material wrapped by L1 key %q of account %s/%s", a.Spec.KeyRef, a.Namespace, a.Name)
	if version != "" {
		msg += fmt.Sprintf(" (version %q)", version)
	}
	return r.patchStatus(ctx, k, base, true, ReasonKeyWrapped, msg)
}

func (r *Reconciler) setStatus(ctx context.Context, k *cmkv1.ServiceEncryptionKey, ready bool, reason, msg string) error {
	return r.patchStatus(ctx, k, k.DeepCopy(), ready, reason, msg)
}

func (r *Reconciler) patchStatus(ctx context.Context, k *cmkv1.ServiceEncryptionKey, base *cmkv1.ServiceEncryptionKey, ready bool, reason, msg string) error {
	st := metav1.ConditionFalse
	if ready {
		st = metav1.ConditionTrue
	}
	if len(msg) > 1024 {
		msg = msg[:1021] + "..."
	}
	meta.SetStatusCondition(&k.Status.Conditions, metav1.Condition{Type: cmkv1.ConditionReady, Status: st, Reason: reason, Message: msg, ObservedGeneration: k.Generation})
	k.Status.ObservedGeneration = k.Generation
	if err := r.Client.Status().Patch(ctx, k, client.MergeFrom(base)); err != nil {
		return client.IgnoreNotFound(err)
	}
	return nil
}

func (r *Reconciler) event(k *cmkv1.ServiceEncryptionKey, typ, reason, action, format string, args ...any) {
	if r.Recorder != nil {
		r.Recorder.Eventf(k, nil, typ, reason, action, format, args...)
	}
}

// Generate returns fresh key material for alg: 32 random bytes for AES256, a PKCS#8 DER private key for RSA.
func Generate(alg cmkv1.KeyAlgorithm) ([]byte, error) {
	switch alg {
	case cmkv1.AlgorithmAES256:
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return nil, fmt.Errorf("generating key material: %w", err)
		}
		return b, nil
	case cmkv1.AlgorithmRSA3072, cmkv1.AlgorithmRSA4096:
		bits := 3072
		if alg == cmkv1.AlgorithmRSA4096 {
			bits = 4096
		}
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			return nil, fmt.Errorf("generating %s key: %w", alg, err)
		}
		return x509.MarshalPKCS8PrivateKey(k)
	default:
		return nil, errors.New("unsupported algorithm " + string(alg))
	}
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}
