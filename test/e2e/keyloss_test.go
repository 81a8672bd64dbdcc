package e2e

import (
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

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	commonv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/common/v1"
	operationsv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/operations/v1"
	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"

	cmkv1alpha1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/keychain"
	"github.com/apeirora/apeiro-cmk/pkg/keychain/localwrap"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/aws"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/local"
)

// checkKeyLossAndState runs inside TestKeychainAWS, on its moto and its quickly re-probing webhook (Accounts every
// 2 s), against the real API server:
//   - a KMS key disabled through the AWS plugin (KMS DisableKey on moto) makes its Ready Account not Ready
//     (KeyNotEnabled, naming DISABLED) with L1KeyUnreachable, and a new Account on it is denied at admission
//     (A-KEY-NOT-ENABLED);
//   - an Account on the embedded keystore whose provisioned key is deleted in the keystore (its Operations API) turns
//     KeyNotFound with L1KeyUnreachable at the next probe and the key is not created again;
//   - status.keyFirstAnsweredTime, the record that the Account had a working key, cannot be cleared (CRD rule).
func checkKeyLossAndState(t *testing.T, f *fixture, at *awsTenant) {
	t.Helper()
	ctx := f.ctx
	ns := at.name
	start := time.Now()
	defer func() { t.Logf("key loss and key state checks: %s", time.Since(start).Round(100*time.Millisecond)) }()

	// --- disabled KMS key ---
	ops := aws.NewOperations()
	cfg, _ := structpb.NewStruct(map[string]any{"tenant": at.name, "roleArn": at.role, "namespace": at.name, "region": at.region})
	ck, err := ops.CreateKey(ctx, &operationsv1.CreateKeyRequest{Config: &commonv1.KeystoreInstanceConfig{Values: cfg},
		Algorithm: operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256, KeyType: operationsv1.KeyType_KEY_TYPE_SYSTEM_MANAGED})
	if err != nil {
		t.Fatalf("creating a second KMS key: %v", err)
	}
	kmsParams := &operationsv1.RequestParameters{Config: &commonv1.KeystoreInstanceConfig{Values: cfg}, KeyId: ck.GetKeyId()}
	f.create(at.account("toggled", ck.GetKeyId()))
	waitReady(t, ctx, types.NamespacedName{Namespace: ns, Name: "toggled"}, metav1.ConditionTrue, "KeyAnswered", "")
	if _, err := ops.DisableKey(ctx, &operationsv1.DisableKeyRequest{Parameters: kmsParams}); err != nil {
		t.Fatalf("KMS DisableKey: %v", err)
	}
	waitReady(t, ctx, types.NamespacedName{Namespace: ns, Name: "toggled"}, metav1.ConditionFalse, "KeyNotEnabled", "state DISABLED")
	eventually(t, 30*time.Second, func() error { return eventWith(ctx, ns, "toggled", "L1KeyUnreachable") })
	expectEventually(t, deniedByWebhook("is not enabled (state DISABLED)"), func() error {
		return env.client.Create(ctx, at.account("on-disabled", ck.GetKeyId()))
	})
	// Enabling it again makes the Account Ready at the next retry (30 s, not shortened by a flag): proven in
	// pkg/controllers/account (TestLocalKeystoreKeyLoss) instead of waiting here.

	// --- lost embedded key ---
	lostKey := types.NamespacedName{Namespace: ns, Name: "local-lost"}
	f.create(accountObj(ns, "local-lost"))
	a := waitReady(t, ctx, lostKey, metav1.ConditionTrue, "KeyAnswered", "")
	if a.Status.KeyFirstAnsweredTime == nil {
		t.Fatalf("a Ready Account without status.keyFirstAnsweredTime: %+v", a.Status)
	}
	cleared := a.DeepCopy()
	cleared.Status.KeyFirstAnsweredTime = nil
	if err := env.client.Status().Update(ctx, cleared); !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "keyFirstAnsweredTime") {
		t.Fatalf("clearing status.keyFirstAnsweredTime: %v, want the CRD rule to refuse it", err)
	}

	ksDir := filepath.Join(env.stack.ControlPlane.WorkDir(), "keystore-local")
	w, err := localwrap.New(ctx, "dir: "+ksDir+"\n")
	if err != nil {
		t.Fatal(err)
	}
	chain := keychain.NewChain(env.client)
	chain.Register(cmkv1alpha1.KeystoreLocal, w)
	lcfg, err := chain.InstanceConfig(a)
	if err != nil {
		t.Fatal(err)
	}
	lops := local.NewOperations()
	if _, err := lops.Configure(ctx, &configv1.ConfigureRequest{YamlConfiguration: "dir: " + ksDir + "\n"}); err != nil {
		t.Fatal(err)
	}
	defer lops.Close()
	lparams := &operationsv1.RequestParameters{Config: &commonv1.KeystoreInstanceConfig{Values: lcfg}, KeyId: a.Spec.KeyRef}
	now := int32(0)
	if _, err := lops.DeleteKey(ctx, &operationsv1.DeleteKeyRequest{Parameters: lparams, Window: &now}); err != nil {
		t.Fatalf("deleting the embedded L1 key: %v", err)
	}
	lost := waitReady(t, ctx, lostKey, metav1.ConditionFalse, "KeyNotFound", "is lost and is not re-created")
	eventually(t, 30*time.Second, func() error { return eventWith(ctx, ns, "local-lost", "L1KeyUnreachable") })
	if _, err := lops.GetKey(ctx, &operationsv1.GetKeyRequest{Parameters: lparams}); status.Code(err) != codes.NotFound {
		t.Fatalf("the lost key exists again in the keystore: GetKey = %v", err)
	}
	if n := countEvents(t, ctx, ns, "local-lost", "L1KeyCreated"); n != 1 {
		t.Fatalf("%d L1KeyCreated events for %s, want exactly the first one", n, lostKey)
	}
	if !lost.Status.KeyFirstAnsweredTime.Equal(a.Status.KeyFirstAnsweredTime) {
		t.Fatalf("keyFirstAnsweredTime changed from %v to %v", a.Status.KeyFirstAnsweredTime, lost.Status.KeyFirstAnsweredTime)
	}
}

// waitReady waits until the Account's Ready condition has status, reason and a message containing msg.
func waitReady(t *testing.T, ctx context.Context, key types.NamespacedName, want metav1.ConditionStatus, reason, msg string) *cmkv1alpha1.Account {
	t.Helper()
	var a cmkv1alpha1.Account
	eventually(t, 60*time.Second, func() error {
		if err := conditionIs(ctx, key, &a, func() []metav1.Condition { return a.Status.Conditions }, cmkv1alpha1.ConditionReady, want, reason); err != nil {
			return err
		}
		if c := meta.FindStatusCondition(a.Status.Conditions, cmkv1alpha1.ConditionReady); !strings.Contains(c.Message, msg) {
			return fmt.Errorf("Account %s: Ready message %q, want %q in it", key, c.Message, msg)
		}
		return nil
	})
	return &a
}

// countEvents counts Events with reason about the object named name in namespace ns.
func countEvents(t *testing.T, ctx context.Context, ns, name, reason string) int {
	t.Helper()
	var list corev1.EventList
	if err := env.client.List(ctx, &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range list.Items {
		if e.Reason == reason && e.InvolvedObject.Name == name {
			n++
		}
	}
	return n
}
