package e2e

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"google.golang.org/protobuf/types/known/structpb"

	commonv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/common/v1"
	operationsv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/operations/v1"

	"github.com/apeirora/apeiro-cmk/cmd/cmkctl/cli"
	"github.com/apeirora/apeiro-cmk/internal/testpeers/moto"
	cmkv1alpha1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/keychain"
	"github.com/apeirora/apeiro-cmk/pkg/keychain/localwrap"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/aws"
)

// conditionIs returns nil once obj's condition typ has status want (and reason, when given).
func conditionIs(ctx context.Context, key types.NamespacedName, obj client.Object, conds func() []metav1.Condition, typ string, want metav1.ConditionStatus, reason string) error {
	if err := env.client.Get(ctx, key, obj); err != nil {
		return err
	}
	c := meta.FindStatusCondition(conds(), typ)
	if c == nil || c.Status != want || (reason != "" && c.Reason != reason) {
		return fmt.Errorf("%s %s: condition %s = %+v, want %s %s", obj.GetObjectKind().GroupVersionKind().Kind, key, typ, c, want, reason)
	}
	return nil
}

// eventWith returns nil once an Event with reason exists for the object named name in namespace ns.
func eventWith(ctx context.Context, ns, name, reason string) error {
	var list corev1.EventList
	if err := env.client.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return err
	}
	for _, e := range list.Items {
		if e.Reason == reason && e.InvolvedObject.Name == name {
			return nil
		}
	}
	if reason != "" {
		return fmt.Errorf("no %s event for %s/%s among %d events", reason, ns, name, len(list.Items))
	}
	return nil
}

// TestKeychainLocal: an Account on the embedded local keystore becomes Ready by default (its L1 key is created and
// probed), a ServiceEncryptionKey under it gets material stored only in wrapped form, and deleting the key removes
// the material.
func TestKeychainLocal(t *testing.T) {
	if env.skip != "" {
		t.Skip(env.skip)
	}
	if env.stack == nil {
		t.Skip("needs the local stack: cmkctl reads the embedded keystore's directory")
	}
	f := newFixture(t)
	ctx := f.ctx
	// The example world's Accounts (examples/00-world, keystore local) are Ready by default.
	for _, ns := range []string{"acme", "acme-eu", "globex"} {
		var wa cmkv1alpha1.Account
		eventually(t, 60*time.Second, func() error {
			return conditionIs(ctx, types.NamespacedName{Namespace: ns, Name: "main"}, &wa, func() []metav1.Condition { return wa.Status.Conditions }, cmkv1alpha1.ConditionReady, metav1.ConditionTrue, "KeyAnswered")
		})
	}
	f.tenant("kc", cmkv1alpha1.TenantTypeRoot, "", "")
	f.namespace("kc")
	ns := f.n("kc")
	f.create(accountObj(ns, "main"))

	acctKey := types.NamespacedName{Namespace: ns, Name: "main"}
	var a cmkv1alpha1.Account
	eventually(t, 60*time.Second, func() error {
		return conditionIs(ctx, acctKey, &a, func() []metav1.Condition { return a.Status.Conditions }, cmkv1alpha1.ConditionReady, metav1.ConditionTrue, "KeyAnswered")
	})
	eventually(t, 30*time.Second, func() error { return eventWith(ctx, ns, "main", "AccountReady") })

	f.create(keyObj(ns, "db", "", "main"))
	sekKey := types.NamespacedName{Namespace: ns, Name: "db"}
	var k cmkv1alpha1.ServiceEncryptionKey
	eventually(t, 60*time.Second, func() error {
		if err := conditionIs(ctx, sekKey, &k, func() []metav1.Condition { return k.Status.Conditions }, cmkv1alpha1.ConditionReady, metav1.ConditionTrue, "KeyWrapped"); err != nil {
			return err
		}
		if k.Status.KeyID != string(k.UID) {
			return fmt.Errorf("status.keyID = %q, want the key's UID %q", k.Status.KeyID, k.UID)
		}
		return nil
	})
	var s corev1.Secret
	if err := env.client.Get(ctx, types.NamespacedName{Namespace: ns, Name: keychain.SecretName("db")}, &s); err != nil {
		t.Fatalf("wrapped key secret: %v", err)
	}
	if s.Type != keychain.SecretType || !metav1.IsControlledBy(&s, &k) || len(s.Data[keychain.SecretKeyWrapped]) < 32+16 || string(s.Data[keychain.SecretKeyVersion]) == "" {
		t.Fatalf("wrapped key secret %s: type %s, owners %v, fields %d", s.Name, s.Type, s.OwnerReferences, len(s.Data))
	}

	// cmkctl encrypts and decrypts a payload with the key through the API server and the local keystore.
	ksDir := filepath.Join(env.stack.ControlPlane.WorkDir(), "keystore-local")
	t.Setenv("APEIRO_LOCAL_KEYSTORE_DIR", ksDir)
	cmkctlRoundTrip(t, ns+"/db")

	// Rotating the L1 key re-wraps the key's material under the new version (noticed when the Account changes).
	w, err := localwrap.New(ctx, "dir: "+ksDir+"\n")
	if err != nil {
		t.Fatal(err)
	}
	chain := keychain.NewChain(env.client)
	chain.Register(cmkv1alpha1.KeystoreLocal, w)
	if err := env.client.Get(ctx, acctKey, &a); err != nil {
		t.Fatal(err)
	}
	cfg, err := chain.InstanceConfig(&a)
	if err != nil {
		t.Fatal(err)
	}
	newVersion, err := w.Rotate(ctx, cfg, a.Spec.KeyRef)
	if err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(a.DeepCopy())
	if a.Annotations == nil {
		a.Annotations = map[string]string{}
	}
	a.Annotations["e2e.cmk.apeiro.io/rotated"] = newVersion
	if err := env.client.Patch(ctx, &a, patch); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, func() error {
		var rs corev1.Secret
		if err := env.client.Get(ctx, types.NamespacedName{Namespace: ns, Name: keychain.SecretName("db")}, &rs); err != nil {
			return err
		}
		if v := string(rs.Data[keychain.SecretKeyVersion]); v != newVersion {
			return fmt.Errorf("wrapped under version %q, want %q", v, newVersion)
		}
		return eventWith(ctx, ns, "db", "KeyRotated")
	})
	cmkctlRoundTrip(t, ns+"/db")

	if err := env.client.Delete(ctx, &k); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, func() error {
		if err := env.client.Get(ctx, types.NamespacedName{Namespace: ns, Name: keychain.SecretName("db")}, &corev1.Secret{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("wrapped key still present: %v", err)
		}
		if err := env.client.Get(ctx, sekKey, &cmkv1alpha1.ServiceEncryptionKey{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("key still present: %v", err)
		}
		return nil
	})
}

// TestKeychainAWS: against moto (KMS + STS + IAM), through IRSA only: an aws Account whose key does not exist is
// denied at admission, one whose key exists becomes Ready, a key under it gets KMS-wrapped material, and when moto
// goes away the Account turns not Ready (KeyUnreachable) with an L1KeyUnreachable event instead of hanging.
func TestKeychainAWS(t *testing.T) {
	if env.skip != "" {
		t.Skip(env.skip)
	}
	if env.stack == nil {
		t.Skip("needs the local stack: the webhook is restarted with moto's IRSA environment")
	}
	f := newFixture(t)
	ctx := f.ctx
	tenant := f.n("aws")
	srv := moto.Start(t, moto.Options{Tenants: []string{tenant}})
	srv.Setenv(t)
	// The webhook gets the IRSA environment (web-identity token, moto endpoints) and re-probes quickly.
	restartProbingWebhook(t, ctx, srv.Env())
	at := newAWSTenant(t, f, srv, "aws")
	role, ck, awsAccount := at.role, at.keyARN, at.account

	missing := awsAccount("missing", srv.KeyARN(tenant, "00000000-0000-4000-8000-000000000000"))
	expectEventually(t, deniedByWebhook("does not exist"), func() error { return env.client.Create(ctx, missing.DeepCopy()) })
	// Another tenant's role, even with a key that exists: the plugin refuses the binding, and admission denies it.
	stolen := awsAccount("stolen", ck)
	stolen.Spec.Auth.IRSARoleARN = strings.Replace(role, "apeiro-cmk-tenant-"+tenant, "apeiro-cmk-tenant-globex", 1)
	expectEventually(t, deniedByWebhook("refused the Account's credentials for its tenant"), func() error { return env.client.Create(ctx, stolen.DeepCopy()) })

	f.create(awsAccount("main", ck))
	acctKey := types.NamespacedName{Namespace: tenant, Name: "main"}
	var a cmkv1alpha1.Account
	eventually(t, 60*time.Second, func() error {
		return conditionIs(ctx, acctKey, &a, func() []metav1.Condition { return a.Status.Conditions }, cmkv1alpha1.ConditionReady, metav1.ConditionTrue, "KeyAnswered")
	})

	f.create(keyObj(tenant, "orders", "", "main"))
	var k cmkv1alpha1.ServiceEncryptionKey
	eventually(t, 60*time.Second, func() error {
		return conditionIs(ctx, types.NamespacedName{Namespace: tenant, Name: "orders"}, &k, func() []metav1.Condition { return k.Status.Conditions }, cmkv1alpha1.ConditionReady, metav1.ConditionTrue, "KeyWrapped")
	})
	if err := env.client.Get(ctx, types.NamespacedName{Namespace: tenant, Name: keychain.SecretName("orders")}, &corev1.Secret{}); err != nil {
		t.Fatalf("KMS-wrapped key secret: %v", err)
	}
	// The whole IRSA chain from the command line: the key's material is unwrapped by KMS through the tenant's role.
	cmkctlRoundTrip(t, tenant+"/orders")
	checkKeyLossAndState(t, f, at) // keyloss_test.go: disabled KMS key, lost embedded key

	// moto goes away: the next probes fail fast, the Account turns not Ready and the alert event is recorded.
	srv.Stop()
	eventually(t, 90*time.Second, func() error {
		return conditionIs(ctx, acctKey, &a, func() []metav1.Condition { return a.Status.Conditions }, cmkv1alpha1.ConditionReady, metav1.ConditionFalse, "KeyUnreachable")
	})
	eventually(t, 30*time.Second, func() error { return eventWith(ctx, tenant, "main", "L1KeyUnreachable") })
	t.Logf("not Ready after moto stopped: %s", meta.FindStatusCondition(a.Status.Conditions, cmkv1alpha1.ConditionReady).Message)
}

// restartProbingWebhook restarts the suite's webhook with extraEnv and quick re-probes (Accounts every 2 s, key probe
// answers cached 1 s), and restores the default webhook when the test ends.
func restartProbingWebhook(t *testing.T, ctx context.Context, extraEnv []string) {
	t.Helper()
	if err := env.stack.RestartWebhook(ctx, []string{"--account-probe-interval=2s", "--key-probe-cache-ttl=1s"}, extraEnv); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := env.stack.RestartWebhook(testContext(t), nil, nil); err != nil {
			t.Errorf("restoring the webhook: %v", err)
		}
	})
}

// awsTenant is an e2e tenant bound to moto through IRSA: its role and one KMS key created through that role.
type awsTenant struct {
	name, role, region string
	keyARN             string
}

// newAWSTenant creates a KMS key through the IRSA role of tenant f.n(short) (srv must have been started with that
// tenant, and the test process must hold moto's environment: srv.Setenv), then the root Tenant and its namespace.
func newAWSTenant(t *testing.T, f *fixture, srv *moto.Server, short string) *awsTenant {
	t.Helper()
	tenant := f.n(short)
	at := &awsTenant{name: tenant, role: srv.TenantRoleARN(tenant), region: srv.Region}
	cfg, _ := structpb.NewStruct(map[string]any{"tenant": tenant, "roleArn": at.role, "namespace": tenant, "region": srv.Region})
	ck, err := aws.NewOperations().CreateKey(f.ctx, &operationsv1.CreateKeyRequest{
		Config: &commonv1.KeystoreInstanceConfig{Values: cfg}, Algorithm: operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256,
		KeyType: operationsv1.KeyType_KEY_TYPE_SYSTEM_MANAGED,
	})
	if err != nil {
		t.Fatalf("creating the KMS key through IRSA: %v", err)
	}
	at.keyARN = ck.GetKeyId()
	f.tenant(short, cmkv1alpha1.TenantTypeRoot, "", "")
	f.namespace(short)
	return at
}

// account is an aws Account of the tenant naming keyRef and authenticating with the tenant's IRSA role.
func (at *awsTenant) account(name, keyRef string) *cmkv1alpha1.Account {
	return &cmkv1alpha1.Account{
		ObjectMeta: metav1.ObjectMeta{Namespace: at.name, Name: name},
		Spec: cmkv1alpha1.AccountSpec{Keystore: cmkv1alpha1.KeystoreAWS, KeyRef: keyRef, Region: at.region,
			Auth: &cmkv1alpha1.AccountAuth{IRSARoleARN: at.role}},
	}
}

// cmkctlRoundTrip encrypts and decrypts a payload with the ServiceEncryptionKey ref (namespace/name) through cmkctl
// (in process, with the suite's admin kubeconfig and the embedded profile).
func cmkctlRoundTrip(t *testing.T, ref string) {
	t.Helper()
	payload := "payload sealed by " + ref
	var ct, errb bytes.Buffer
	args := []string{"--kubeconfig", env.stack.KubeconfigPath(), "encrypt", "--key", ref, "--aad", "e2e"}
	if code := cli.Run(context.Background(), args, strings.NewReader(payload), &ct, &errb); code != 0 {
		t.Fatalf("cmkctl encrypt --key %s: exit %d: %s", ref, code, errb.String())
	}
	var pt bytes.Buffer
	args = []string{"--kubeconfig", env.stack.KubeconfigPath(), "decrypt", "--key", ref, "--aad", "e2e"}
	if code := cli.Run(context.Background(), args, bytes.NewReader(ct.Bytes()), &pt, &errb); code != 0 || pt.String() != payload {
		t.Fatalf("cmkctl decrypt --key %s: exit %d, %q: %s", ref, code, pt.String(), errb.String())
	}
}
