package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"google.golang.org/protobuf/types/known/structpb"

	commonv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/common/v1"
	operationsv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/operations/v1"
	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"

	"github.com/apeirora/apeiro-cmk/internal/testpeers/softhsm"
	cmkv1alpha1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/keychain"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/thales"
)

// TestKeychainThales: against SoftHSM2 through the embedded profile's THALES entry (module, token label and PIN
// from the environment): a thales Account whose key does not exist is denied at admission, one whose key exists
// (an AES-256 key generated inside the token) becomes Ready, and a ServiceEncryptionKey under it gets material
// wrapped inside the token, which cmkctl then unwraps for a payload round trip.
func TestKeychainThales(t *testing.T) {
	if env.skip != "" {
		t.Skip(env.skip)
	}
	if env.stack == nil {
		t.Skip("needs the local stack: the webhook is restarted with the SoftHSM environment")
	}
	tok := softhsm.Start(t, softhsm.Main)
	t.Cleanup(softhsm.Cleanup) // the only SoftHSM user of this binary; registered first, so it runs last
	f := newFixture(t)
	ctx := f.ctx
	tenant := f.n("thales")
	hsmEnv := map[string]string{
		"SOFTHSM2_CONF":        tok.Conf,
		"APEIRO_PKCS11_MODULE": tok.Module,
		"APEIRO_THALES_TOKEN":  tok.Label,
		"APEIRO_THALES_PIN":    tok.PIN,
	}
	var extraEnv []string
	for k, v := range hsmEnv {
		t.Setenv(k, v) // for the key created below and for cmkctl, which runs in this process
		extraEnv = append(extraEnv, k+"="+v)
	}

	// The tenant's L1 key, generated inside the token with the same configuration the profile's entry expands to.
	yaml := "module: " + tok.Module + "\ntokens:\n  - label: " + tok.Label + "\n    pin: {source: env, env: APEIRO_THALES_PIN}\n"
	cfg, err := thales.ParseConfig(yaml)
	if err != nil {
		t.Fatal(err)
	}
	ops := thales.NewOperations()
	if _, err := ops.Configure(ctx, &configv1.ConfigureRequest{YamlConfiguration: yaml}); err != nil {
		t.Fatal(err)
	}
	extra, err := thales.NewWrapper(cfg).AccessData(&cmkv1alpha1.Account{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{cmkv1alpha1.TenantLabel: tenant}}})
	if err != nil {
		t.Fatal(err)
	}
	values, _ := structpb.NewStruct(map[string]any{"tenant": tenant, thales.FieldAccessKey: extra[thales.FieldAccessKey]})
	ck, err := ops.CreateKey(ctx, &operationsv1.CreateKeyRequest{Config: &commonv1.KeystoreInstanceConfig{Values: values},
		Algorithm: operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256, KeyType: operationsv1.KeyType_KEY_TYPE_SYSTEM_MANAGED})
	if err != nil {
		t.Fatalf("generating the L1 key in SoftHSM: %v", err)
	}

	if err := env.stack.RestartWebhook(ctx, []string{"--account-probe-interval=2s", "--key-probe-cache-ttl=1s"}, extraEnv); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := env.stack.RestartWebhook(context.Background(), nil, nil); err != nil {
			t.Errorf("restoring the webhook: %v", err)
		}
	})

	f.tenant("thales", cmkv1alpha1.TenantTypeRoot, "", "")
	f.namespace("thales")
	// The PIN Secret the Account names (the CRD requires one for thales Accounts).
	f.create(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: "thales-pin"}, StringData: map[string]string{"pin": tok.PIN}})
	hsmAccount := func(name, keyRef string) *cmkv1alpha1.Account {
		return &cmkv1alpha1.Account{
			ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: name},
			Spec: cmkv1alpha1.AccountSpec{Keystore: cmkv1alpha1.KeystoreThales, KeyRef: keyRef, Region: "hsm",
				Auth: &cmkv1alpha1.AccountAuth{SecretRef: &cmkv1alpha1.SecretKeySelector{Name: "thales-pin", Key: "pin"}}},
		}
	}
	missing := hsmAccount("missing", "pkcs11:token="+tok.Label+";object=no-such-key;type=secret-key")
	expectEventually(t, deniedByWebhook("does not exist"), func() error { return env.client.Create(ctx, missing.DeepCopy()) })

	f.create(hsmAccount("main", ck.GetKeyId()))
	acctKey := types.NamespacedName{Namespace: tenant, Name: "main"}
	var a cmkv1alpha1.Account
	eventually(t, 60*time.Second, func() error {
		return conditionIs(ctx, acctKey, &a, func() []metav1.Condition { return a.Status.Conditions }, cmkv1alpha1.ConditionReady, metav1.ConditionTrue, "KeyAnswered")
	})

	f.create(keyObj(tenant, "ledger", "", "main"))
	var k cmkv1alpha1.ServiceEncryptionKey
	eventually(t, 60*time.Second, func() error {
		return conditionIs(ctx, types.NamespacedName{Namespace: tenant, Name: "ledger"}, &k, func() []metav1.Condition { return k.Status.Conditions }, cmkv1alpha1.ConditionReady, metav1.ConditionTrue, "KeyWrapped")
	})
	var s corev1.Secret
	if err := env.client.Get(ctx, types.NamespacedName{Namespace: tenant, Name: keychain.SecretName("ledger")}, &s); err != nil {
		t.Fatalf("token-wrapped key secret: %v", err)
	}
	if n := len(s.Data[keychain.SecretKeyWrapped]); n < 1+12+32+16 {
		t.Fatalf("wrapped key is %d bytes, want a THALES blob (version, IV, 32-byte key, tag)", n)
	}
	// cmkctl unwraps the key inside the token (this process, same SoftHSM) and round-trips a payload.
	cmkctlRoundTrip(t, tenant+"/ledger")

	// The webhook restarted with a wrong PIN: the login fails (CKR_PIN_INCORRECT, an authentication error, not
	// "key not found"), so the Account turns not Ready as unreachable instead of its key being reported missing.
	wrongEnv := []string{}
	for _, e := range extraEnv {
		if strings.HasPrefix(e, "APEIRO_THALES_PIN=") {
			e = "APEIRO_THALES_PIN=not-the-pin"
		}
		wrongEnv = append(wrongEnv, e)
	}
	if err := env.stack.RestartWebhook(ctx, []string{"--account-probe-interval=2s", "--key-probe-cache-ttl=1s"}, wrongEnv); err != nil {
		t.Fatal(err)
	}
	eventually(t, 90*time.Second, func() error {
		return conditionIs(ctx, acctKey, &a, func() []metav1.Condition { return a.Status.Conditions }, cmkv1alpha1.ConditionReady, metav1.ConditionFalse, "KeyUnreachable")
	})
	t.Logf("not Ready with a wrong PIN: %s", meta.FindStatusCondition(a.Status.Conditions, cmkv1alpha1.ConditionReady).Message)
}
