package e2e

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	commonv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/common/v1"
	operationsv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/operations/v1"
	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/apeirora/apeiro-cmk/internal/testpeers/vault"
	cmkv1alpha1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/keychain"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/cmkcompat"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/openbao"
)

// TestKeychainOpenBao: against the Vault-API-compatible transit peer, with Kubernetes auth checked by the suite's
// real kube-apiserver (the server calls its TokenReview for the service-account token the webhook presents). An
// openbao Account becomes Ready, a ServiceEncryptionKey under it gets a transit-wrapped key, an Account on an
// imported (BYOK) key becomes Ready and wraps a key too, and a sealed server turns the Account not Ready with the
// reason "sealed".
func TestKeychainOpenBao(t *testing.T) {
	if env.skip != "" {
		t.Skip(env.skip)
	}
	if env.stack == nil {
		t.Skip("needs the local stack: the webhook is restarted with the OpenBao settings")
	}
	f := newFixture(t)
	ctx := f.ctx
	tenant := f.n("bao")
	srv := vault.Start(t)

	// The platform identity: a ServiceAccount of the real API server; its token is what a projected token file
	// holds in a pod.
	saNS, saName := "default", f.n("bao-sa")
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: saNS, Name: saName}}
	if err := env.client.Create(ctx, sa); err != nil {
		t.Fatalf("service account: %v", err)
	}
	t.Cleanup(func() { _ = env.client.Delete(context.Background(), sa) })
	exp := int64(3600)
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &exp}}
	if err := env.client.SubResource("token").Create(ctx, sa, tr); err != nil {
		t.Fatalf("token request: %v", err)
	}
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(tr.Status.Token), 0o600); err != nil {
		t.Fatal(err)
	}

	// OpenBao side (operator setup): kubernetes auth pointing at the API server, a role bound to the ServiceAccount
	// with the plugin's least-privilege policy.
	cp := env.stack.ControlPlane
	root := srv.Root
	if err := root.Sys().PutPolicyWithContext(ctx, "apeiro-cmk", vault.PluginPolicy); err != nil {
		t.Fatal(err)
	}
	if _, err := root.Logical().WriteWithContext(ctx, "sys/auth/kubernetes", map[string]any{"type": "kubernetes"}); err != nil {
		t.Fatalf("enable kubernetes auth: %v", err)
	}
	if _, err := root.Logical().WriteWithContext(ctx, "auth/kubernetes/config", map[string]any{
		"kubernetes_host": cp.URL, "kubernetes_ca_cert": string(cp.CACertPEM), "token_reviewer_jwt": cp.Token,
	}); err != nil {
		t.Fatalf("kubernetes auth config: %v", err)
	}
	if _, err := root.Logical().WriteWithContext(ctx, "auth/kubernetes/role/apeiro-cmk", map[string]any{
		"bound_service_account_names": []string{saName}, "bound_service_account_namespaces": []string{saNS},
		"token_policies": []string{"apeiro-cmk"}, "token_ttl": "1h",
	}); err != nil {
		t.Fatalf("kubernetes auth role: %v", err)
	}

	// A role per tenant whose policy reaches only that tenant's mount: an Account naming it is served by a login with
	// that role, so the server confines the calls as well as the plugin. "other" is another tenant's role.
	for role, mount := range map[string]string{"tenant-" + tenant: "transit/" + tenant, "tenant-other": "transit/other"} {
		pol := fmt.Sprintf("path %q { capabilities = [\"create\", \"read\", \"update\", \"list\"] }\npath %q { capabilities = [\"read\"] }\n", mount+"/*", "sys/mounts/"+mount)
		if err := root.Sys().PutPolicyWithContext(ctx, role, pol); err != nil {
			t.Fatal(err)
		}
		if _, err := root.Logical().WriteWithContext(ctx, "auth/kubernetes/role/"+role, map[string]any{
			"bound_service_account_names": []string{saName}, "bound_service_account_namespaces": []string{saNS},
			"token_policies": []string{role}, "token_ttl": "1h",
		}); err != nil {
			t.Fatalf("kubernetes auth role %s: %v", role, err)
		}
	}

	baoEnv := []string{
		"APEIRO_OPENBAO_ADDR=" + srv.Addr, "APEIRO_OPENBAO_AUTH=kubernetes", "APEIRO_OPENBAO_ROLE=apeiro-cmk",
		"APEIRO_OPENBAO_TOKEN_FILE=" + tokenFile,
	}
	for _, kv := range baoEnv { // cmkctl below runs in this process with the embedded profile
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	if err := env.stack.RestartWebhook(ctx, []string{"--account-probe-interval=2s", "--key-probe-cache-ttl=1s"}, baoEnv); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := env.stack.RestartWebhook(context.Background(), nil, nil); err != nil {
			t.Errorf("restoring the webhook: %v", err)
		}
	})

	// Tenant onboarding: the tenant's transit mount and its L1 key, created through the plugin (Kubernetes auth).
	pluginYAML := fmt.Sprintf("address: %s\nauth: {method: kubernetes, role: apeiro-cmk, tokenFile: %q}\n", srv.Addr, tokenFile)
	cfg, err := openbao.ParseConfig(pluginYAML)
	if err != nil {
		t.Fatal(err)
	}
	w := openbao.NewWrapper(cfg)
	if _, err := w.EnsureMount(ctx, tenant); err != nil {
		t.Fatalf("tenant mount (kubernetes auth through the real TokenReview): %v", err)
	}
	ops := openbao.NewOperations()
	opsCfg, _ := structpb.NewStruct(map[string]any{"tenant": tenant})
	if _, err := ops.Configure(ctx, &configv1.ConfigureRequest{YamlConfiguration: pluginYAML}); err != nil {
		t.Fatal(err)
	}
	ck, err := ops.CreateKey(ctx, &operationsv1.CreateKeyRequest{Config: &commonv1.KeystoreInstanceConfig{Values: opsCfg},
		Algorithm: operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256, KeyType: operationsv1.KeyType_KEY_TYPE_SYSTEM_MANAGED})
	if err != nil {
		t.Fatalf("creating the transit key: %v", err)
	}

	f.tenant("bao", cmkv1alpha1.TenantTypeRoot, "", "")
	f.namespace("bao")
	baoAccount := func(name, keyRef, role string) *cmkv1alpha1.Account {
		return &cmkv1alpha1.Account{
			ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: name},
			Spec: cmkv1alpha1.AccountSpec{Keystore: cmkv1alpha1.KeystoreOpenBao, KeyRef: keyRef, Region: openbao.DefaultRegion,
				Auth: &cmkv1alpha1.AccountAuth{OpenBaoRole: role}},
		}
	}
	missing := baoAccount("missing", "no-such-key", "apeiro-cmk")
	expectEventually(t, deniedByWebhook("does not exist"), func() error { return env.client.Create(ctx, missing.DeepCopy()) })
	// Another tenant's role cannot read this tenant's mount: the server refuses the calls, so the Account never
	// becomes Ready (admission lets an unanswered probe through; readiness says why).
	f.create(baoAccount("intruder", ck.GetKeyId(), "tenant-other"))
	var ia cmkv1alpha1.Account
	intruderKey := types.NamespacedName{Namespace: tenant, Name: "intruder"}
	eventually(t, 60*time.Second, func() error {
		return conditionIs(ctx, intruderKey, &ia, func() []metav1.Condition { return ia.Status.Conditions }, cmkv1alpha1.ConditionReady, metav1.ConditionFalse, "")
	})
	t.Logf("Account naming another tenant's role: not Ready: %s", meta.FindStatusCondition(ia.Status.Conditions, cmkv1alpha1.ConditionReady).Message)

	f.create(baoAccount("main", ck.GetKeyId(), "tenant-"+tenant))
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
	var sec corev1.Secret
	if err := env.client.Get(ctx, types.NamespacedName{Namespace: tenant, Name: keychain.SecretName("orders")}, &sec); err != nil {
		t.Fatalf("transit-wrapped key secret: %v", err)
	}
	cmkctlRoundTrip(t, tenant+"/orders")

	// BYOK: the customer's own AES key, imported into the tenant's mount through the operations plugin (wrapped under
	// the mount's wrapping key as CMK's customer would), is an Account's L1 key like any other.
	byokID := "customer-l1"
	if _, err := ops.CreateKey(ctx, &operationsv1.CreateKeyRequest{Config: &commonv1.KeystoreInstanceConfig{Values: opsCfg}, Id: &byokID,
		Algorithm: operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256, KeyType: operationsv1.KeyType_KEY_TYPE_BYOK}); err != nil {
		t.Fatalf("CreateKey(BYOK): %v", err)
	}
	byokParams := &operationsv1.RequestParameters{Config: &commonv1.KeystoreInstanceConfig{Values: opsCfg}, KeyId: byokID}
	ip, err := ops.GetImportParameters(ctx, &operationsv1.GetImportParametersRequest{Parameters: byokParams})
	if err != nil {
		t.Fatalf("GetImportParameters: %v", err)
	}
	cip, err := cmkcompat.BuildImportParams(ip.GetImportParameters().AsMap())
	if err != nil {
		t.Fatal(err)
	}
	material := make([]byte, 32)
	_, _ = rand.Read(material)
	wrapped, err := cip.Wrap(material)
	if err != nil {
		t.Fatal(err)
	}
	sent, _ := cip.ProviderParamsMap()
	sentStruct, _ := structpb.NewStruct(sent)
	if _, err := ops.ImportKeyMaterial(ctx, &operationsv1.ImportKeyMaterialRequest{Parameters: byokParams, ImportParameters: sentStruct, EncryptedKeyMaterial: wrapped}); err != nil {
		t.Fatalf("ImportKeyMaterial: %v", err)
	}
	f.create(baoAccount("byok", byokID, "tenant-"+tenant))
	var ba cmkv1alpha1.Account
	eventually(t, 60*time.Second, func() error {
		return conditionIs(ctx, types.NamespacedName{Namespace: tenant, Name: "byok"}, &ba, func() []metav1.Condition { return ba.Status.Conditions }, cmkv1alpha1.ConditionReady, metav1.ConditionTrue, "KeyAnswered")
	})
	f.create(keyObj(tenant, "imported", "", "byok"))
	var bk cmkv1alpha1.ServiceEncryptionKey
	eventually(t, 60*time.Second, func() error {
		return conditionIs(ctx, types.NamespacedName{Namespace: tenant, Name: "imported"}, &bk, func() []metav1.Condition { return bk.Status.Conditions }, cmkv1alpha1.ConditionReady, metav1.ConditionTrue, "KeyWrapped")
	})

	// Sealed server: the probes fail fast and the Account turns not Ready, saying why.
	srv.Seal(t)
	eventually(t, 90*time.Second, func() error {
		if err := conditionIs(ctx, acctKey, &a, func() []metav1.Condition { return a.Status.Conditions }, cmkv1alpha1.ConditionReady, metav1.ConditionFalse, ""); err != nil {
			return err
		}
		if c := meta.FindStatusCondition(a.Status.Conditions, cmkv1alpha1.ConditionReady); !strings.Contains(c.Message, "sealed") {
			return fmt.Errorf("not Ready, but the message does not say sealed: %s", c.Message)
		}
		return nil
	})
	t.Logf("not Ready while sealed: %s", meta.FindStatusCondition(a.Status.Conditions, cmkv1alpha1.ConditionReady).Message)
	srv.Unseal(t)
	eventually(t, 60*time.Second, func() error {
		return conditionIs(ctx, acctKey, &a, func() []metav1.Condition { return a.Status.Conditions }, cmkv1alpha1.ConditionReady, metav1.ConditionTrue, "")
	})
}
