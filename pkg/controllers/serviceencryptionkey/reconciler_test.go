package serviceencryptionkey_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	sek "github.com/apeirora/apeiro-cmk/pkg/controllers/serviceencryptionkey"
	"github.com/apeirora/apeiro-cmk/pkg/keychain"
	"github.com/apeirora/apeiro-cmk/pkg/keychain/localwrap"
)

type env struct {
	t     *testing.T
	cl    client.Client
	chain *keychain.Chain
	wrap  *localwrap.Wrapper
	rec   *events.FakeRecorder
	r     *sek.Reconciler
}

func setup(t *testing.T, accountReady bool) *env {
	t.Helper()
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = cmkv1.AddToScheme(scheme)
	a := &cmkv1.Account{
		ObjectMeta: metav1.ObjectMeta{Namespace: "acme", Name: "main", Labels: map[string]string{cmkv1.TenantLabel: "acme"}},
		Spec:       cmkv1.AccountSpec{Keystore: cmkv1.KeystoreLocal, KeyRef: "acme-l1", Region: "eu-central"},
	}
	if accountReady {
		a.Status.Conditions = []metav1.Condition{{Type: cmkv1.ConditionReady, Status: metav1.ConditionTrue, Reason: "KeyAnswered", LastTransitionTime: metav1.Now()}}
	}
	k := &cmkv1.ServiceEncryptionKey{
		ObjectMeta: metav1.ObjectMeta{Namespace: "acme", Name: "db", UID: "uid-db-1", Labels: map[string]string{cmkv1.TenantLabel: "acme"}},
		Spec:       cmkv1.ServiceEncryptionKeySpec{AccountRef: cmkv1.AccountReference{Name: "main"}, Algorithm: cmkv1.AlgorithmAES256},
	}
	cl := fake.NewClientBuilder().WithScheme(scheme).WithObjects(a, k).WithStatusSubresource(a, k).Build()
	w, err := localwrap.New(context.Background(), "dir: "+t.TempDir()+"\n")
	if err != nil {
		t.Fatal(err)
	}
	chain := keychain.NewChain(cl)
	chain.Register(cmkv1.KeystoreLocal, w)
	chain.SetProvisioning(cmkv1.KeystoreLocal, true)
	if _, err := chain.EnsureL1Key(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	rec := events.NewFakeRecorder(16)
	return &env{t: t, cl: cl, chain: chain, wrap: w, rec: rec, r: &sek.Reconciler{Client: cl, Chain: chain, Recorder: rec}}
}

func (e *env) reconcile() ctrl.Result {
	e.t.Helper()
	res, err := e.r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Namespace: "acme", Name: "db"}})
	if err != nil {
		e.t.Fatalf("Reconcile: %v", err)
	}
	return res
}

func (e *env) key() *cmkv1.ServiceEncryptionKey {
	e.t.Helper()
	var k cmkv1.ServiceEncryptionKey
	if err := e.cl.Get(context.Background(), types.NamespacedName{Namespace: "acme", Name: "db"}, &k); err != nil {
		e.t.Fatal(err)
	}
	return &k
}

func (e *env) secret() (*corev1.Secret, error) {
	var s corev1.Secret
	err := e.cl.Get(context.Background(), types.NamespacedName{Namespace: "acme", Name: keychain.SecretName("db")}, &s)
	return &s, err
}

func ready(k *cmkv1.ServiceEncryptionKey) *metav1.Condition {
	return meta.FindStatusCondition(k.Status.Conditions, cmkv1.ConditionReady)
}

func TestProvisionUnwrapRotateDelete(t *testing.T) {
	e := setup(t, true)
	ctx := context.Background()
	e.reconcile()
	k := e.key()
	if c := ready(k); c == nil || c.Status != metav1.ConditionTrue || c.Reason != sek.ReasonKeyWrapped || k.Status.KeyID != "uid-db-1" {
		t.Fatalf("after provisioning: keyID %q, Ready %+v", k.Status.KeyID, c)
	}
	if !strings.Contains(strings.Join(k.Finalizers, ","), sek.Finalizer) {
		t.Fatalf("finalizer missing: %v", k.Finalizers)
	}
	s, err := e.secret()
	if err != nil {
		t.Fatal(err)
	}
	if s.Type != keychain.SecretType || !metav1.IsControlledBy(s, k) || len(s.Data[keychain.SecretKeyWrapped]) == 0 {
		t.Fatalf("secret %+v", s)
	}

	material, err := e.chain.UnwrapServiceKey(ctx, "acme", "db")
	if err != nil || len(material) != 32 {
		t.Fatalf("UnwrapServiceKey = %d bytes, %v", len(material), err)
	}
	// Only the wrapped form is stored.
	for name, v := range s.Data {
		if bytes.Contains(v, material) {
			t.Fatalf("secret field %s contains the plaintext key", name)
		}
	}
	ct, err := e.chain.Encrypt(ctx, "acme", "db", []byte("payload"), []byte("ctx"))
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := e.chain.Decrypt(ctx, "acme", "db", ct, []byte("ctx")); err != nil || string(pt) != "payload" {
		t.Fatalf("Decrypt = %q, %v", pt, err)
	}
	if _, err := e.chain.Decrypt(ctx, "acme", "db", ct, []byte("other")); !errors.Is(err, keychain.ErrIntegrity) {
		t.Fatalf("Decrypt with other aad = %v, want ErrIntegrity", err)
	}

	// A second reconcile changes nothing.
	e.reconcile()
	s2, _ := e.secret()
	if !bytes.Equal(s2.Data[keychain.SecretKeyWrapped], s.Data[keychain.SecretKeyWrapped]) {
		t.Fatal("an idle reconcile re-wrapped the key")
	}

	// Rotation of the L1 key: the material is re-wrapped under the new version, and stays the same key.
	var a cmkv1.Account
	_ = e.cl.Get(ctx, types.NamespacedName{Namespace: "acme", Name: "main"}, &a)
	cfg, _ := e.chain.InstanceConfig(&a)
	v1, err := e.wrap.Rotate(ctx, cfg, "acme-l1")
	if err != nil {
		t.Fatal(err)
	}
	e.reconcile()
	s3, _ := e.secret()
	if string(s3.Data[keychain.SecretKeyVersion]) != v1 {
		t.Fatalf("after rotation the wrapped key has version %q, want %q", s3.Data[keychain.SecretKeyVersion], v1)
	}
	if got := <-e.rec.Events; !strings.Contains(got, sek.EventKeyRotated) {
		t.Fatalf("event %q, want %s", got, sek.EventKeyRotated)
	}
	if again, err := e.chain.UnwrapServiceKey(ctx, "acme", "db"); err != nil || !bytes.Equal(again, material) {
		t.Fatalf("after re-wrap: %v (same material: %v)", err, bytes.Equal(again, material))
	}
	if pt, err := e.chain.Decrypt(ctx, "acme", "db", ct, []byte("ctx")); err != nil || string(pt) != "payload" {
		t.Fatalf("payload sealed before the rotation: %q, %v", pt, err)
	}

	// Delete: the finalizer removes the wrapped material, then the key is gone.
	if err := e.cl.Delete(ctx, e.key()); err != nil {
		t.Fatal(err)
	}
	e.reconcile()
	if _, err := e.secret(); !apierrors.IsNotFound(err) {
		t.Fatalf("wrapped key still present after delete: %v", err)
	}
	var gone cmkv1.ServiceEncryptionKey
	if err := e.cl.Get(ctx, types.NamespacedName{Namespace: "acme", Name: "db"}, &gone); !apierrors.IsNotFound(err) {
		t.Fatalf("key still present after finalizing: %v", err)
	}
	if _, err := e.chain.UnwrapServiceKey(ctx, "acme", "db"); !errors.Is(err, keychain.ErrServiceKeyNotFound) {
		t.Fatalf("UnwrapServiceKey after delete = %v", err)
	}
}

func TestHalfCreatedStates(t *testing.T) {
	t.Run("account not ready", func(t *testing.T) {
		e := setup(t, false)
		res := e.reconcile()
		k := e.key()
		if c := ready(k); c == nil || c.Status != metav1.ConditionFalse || c.Reason != sek.ReasonAccountNotReady || res.RequeueAfter == 0 {
			t.Fatalf("Ready = %+v, requeue %v", c, res)
		}
		if _, err := e.chain.UnwrapServiceKey(context.Background(), "acme", "db"); !errors.Is(err, keychain.ErrServiceKeyNotReady) {
			t.Fatalf("UnwrapServiceKey of a key without material = %v", err)
		}
		if _, err := e.secret(); !apierrors.IsNotFound(err) {
			t.Fatalf("secret written for a key whose account is not ready: %v", err)
		}
	})
	t.Run("account missing", func(t *testing.T) {
		e := setup(t, true)
		_ = e.cl.Delete(context.Background(), &cmkv1.Account{ObjectMeta: metav1.ObjectMeta{Namespace: "acme", Name: "main"}})
		e.reconcile()
		if c := ready(e.key()); c == nil || c.Reason != sek.ReasonAccountNotFound {
			t.Fatalf("Ready = %+v", c)
		}
	})
	t.Run("wrap fails: L1 key disabled", func(t *testing.T) {
		e := setup(t, true)
		var a cmkv1.Account
		_ = e.cl.Get(context.Background(), types.NamespacedName{Namespace: "acme", Name: "main"}, &a)
		cfg, _ := e.chain.InstanceConfig(&a)
		if err := e.wrap.Disable(context.Background(), cfg, "acme-l1"); err != nil {
			t.Fatal(err)
		}
		e.reconcile()
		k := e.key()
		if c := ready(k); c == nil || c.Status != metav1.ConditionFalse || c.Reason != sek.ReasonWrapFailed || !strings.Contains(c.Message, "not enabled") {
			t.Fatalf("Ready = %+v", c)
		}
		if k.Status.KeyID != "" {
			t.Fatalf("keyID %q set although nothing was stored", k.Status.KeyID)
		}
	})
	t.Run("foreign secret with the same name", func(t *testing.T) {
		e := setup(t, true)
		_ = e.cl.Create(context.Background(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "acme", Name: keychain.SecretName("db")}})
		e.reconcile()
		if c := ready(e.key()); c == nil || c.Reason != sek.ReasonSecretConflict {
			t.Fatalf("Ready = %+v", c)
		}
	})
	t.Run("wrapped key lost after it was ready", func(t *testing.T) {
		e := setup(t, true)
		e.reconcile()
		s, _ := e.secret()
		_ = e.cl.Delete(context.Background(), s)
		e.reconcile()
		k := e.key()
		if c := ready(k); c == nil || c.Reason != sek.ReasonWrappedKeyLost {
			t.Fatalf("Ready = %+v", c)
		}
		if _, err := e.secret(); !apierrors.IsNotFound(err) {
			t.Fatal("new material was generated silently for a key that had material")
		}
	})
}

func TestGenerate(t *testing.T) {
	for _, alg := range []cmkv1.KeyAlgorithm{cmkv1.AlgorithmAES256, cmkv1.AlgorithmRSA3072} {
		b, err := sek.Generate(alg)
		if err != nil || len(b) < 32 {
			t.Fatalf("%s: %d bytes, %v", alg, len(b), err)
		}
	}
	if _, err := sek.Generate("DES"); err == nil {
		t.Fatal("Generate accepted an unknown algorithm")
	}
}
