package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/config"

	cmkv1alpha1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
)

// The attacks of the security review, each played through the real API server: an attacker is a user with RBAC on
// our kinds in their own namespaces (or more), never a cluster administrator. Requests are sent impersonating that
// user, so RBAC, the in-process admission policies of deploy/base and the webhook all take part.

// restConfig is the suite's admin connection.
func restConfig(t *testing.T) *rest.Config {
	t.Helper()
	if env.stack != nil {
		return rest.CopyConfig(env.stack.ControlPlane.RESTConfig())
	}
	rc, err := config.GetConfig()
	if err != nil {
		t.Fatal(err)
	}
	return rc
}

// as returns a client that impersonates user in groups (plus system:authenticated, as every real user has).
func as(t *testing.T, user string, groups ...string) client.Client {
	t.Helper()
	rc := restConfig(t)
	rc.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: append(groups, "system:authenticated")}
	c, err := client.New(rc, client.Options{Scheme: env.scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// grant binds a fresh ClusterRole with rules to user; both are removed when the test ends.
func (f *fixture) grant(user string, rules ...rbacv1.PolicyRule) {
	f.t.Helper()
	name := f.prefix + strings.NewReplacer(":", "-").Replace(user)
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: user}},
	}
	f.create(role)
	f.create(binding)
	f.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = env.client.Delete(ctx, binding)
		_ = env.client.Delete(ctx, role)
	})
}

var tenantObjectsRule = rbacv1.PolicyRule{
	APIGroups: []string{cmkv1alpha1.GroupVersion.Group},
	Resources: []string{"tenants", "accounts", "serviceencryptionkeys", "webhooknotifications"},
	Verbs:     []string{"get", "list", "create", "update", "patch", "delete"},
}

func tenantLabelOf(t *testing.T, ctx context.Context, name string) string {
	t.Helper()
	var ns corev1.Namespace
	if err := env.client.Get(ctx, client.ObjectKey{Name: name}, &ns); err != nil {
		t.Fatal(err)
	}
	return ns.Labels[cmkv1alpha1.TenantLabel]
}

// TestAttackNamespaceSideDoors: a user allowed to patch namespaces and their status and finalize subresources
// (but not a platform administrator) cannot move a namespace into another tenant through any of the three.
func TestAttackNamespaceSideDoors(t *testing.T) {
	needCluster(t)
	f := newFixture(t)
	f.tenant("mine", cmkv1alpha1.TenantTypeRoot, "", "")
	f.tenant("victim", cmkv1alpha1.TenantTypeRoot, "", "")
	f.namespace("mine")
	f.namespace("victim")
	f.account("victim")
	user := f.prefix + "attacker"
	f.grant(user, rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"namespaces", "namespaces/status", "namespaces/finalize"},
		Verbs: []string{"get", "update", "patch"}}, tenantObjectsRule)
	attacker := as(t, user, "apeiro-cmk:tenant:"+f.n("mine")+":admin")

	moves := map[string]func(ns *corev1.Namespace) error{
		"namespaces": func(ns *corev1.Namespace) error { return attacker.Update(f.ctx, ns) },
		"namespaces/status": func(ns *corev1.Namespace) error {
			return attacker.Status().Update(f.ctx, ns)
		},
		"namespaces/finalize": func(ns *corev1.Namespace) error {
			return attacker.SubResource("finalize").Update(f.ctx, ns)
		},
	}
	for path, move := range moves {
		t.Run(path, func(t *testing.T) {
			eventually(t, 20*time.Second, func() error {
				var ns corev1.Namespace
				if err := attacker.Get(f.ctx, client.ObjectKey{Name: f.n("mine")}, &ns); err != nil {
					return err
				}
				ns.Labels[cmkv1alpha1.TenantLabel] = f.n("victim")
				err := move(&ns)
				if got := tenantLabelOf(t, f.ctx, f.n("mine")); got != f.n("mine") {
					t.Fatalf("namespace moved to tenant %q through %s", got, path)
				}
				if err == nil {
					return fmt.Errorf("relabel through %s was not refused", path)
				}
				if !strings.Contains(err.Error(), "only platform administrators") {
					return fmt.Errorf("refused, but not by the namespace label policy: %v", err)
				}
				return nil
			})
		})
	}
	// The victim's Account stays out of reach: a key in "mine" naming it is refused.
	expectEventually(t, deniedByWebhook("is not found or not usable"), func() error {
		return attacker.Create(f.ctx, keyObj(f.n("mine"), "steal", f.n("victim"), "main"), client.DryRunAll)
	})
}

// TestAttackRelabelOccupiedNamespace: even a platform administrator cannot move a namespace that still holds our
// objects into another tenant (its keys would keep the old tenant's rights); an emptied namespace can move.
func TestAttackRelabelOccupiedNamespace(t *testing.T) {
	needCluster(t)
	f := newFixture(t)
	f.tenant("a", cmkv1alpha1.TenantTypeRoot, "", "")
	f.tenant("b", cmkv1alpha1.TenantTypeRoot, "", "")
	f.namespace("a")
	f.account("a")
	f.create(keyObj(f.n("a"), "k", f.n("a"), "main"))
	relabel := func(to string) error {
		var ns corev1.Namespace
		if err := env.client.Get(f.ctx, client.ObjectKey{Name: f.n("a")}, &ns); err != nil {
			return err
		}
		if to == "" {
			delete(ns.Labels, cmkv1alpha1.TenantLabel)
		} else {
			ns.Labels[cmkv1alpha1.TenantLabel] = to
		}
		return env.client.Update(f.ctx, &ns)
	}
	expectEventually(t, deniedByWebhook("still holds Accounts and ServiceEncryptionKeys"), func() error { return relabel(f.n("b")) })
	expectEventually(t, deniedByWebhook("still holds"), func() error { return relabel("") })
	if got := tenantLabelOf(t, f.ctx, f.n("a")); got != f.n("a") {
		t.Fatalf("namespace label is %q", got)
	}
	// Assigning a namespace to a tenant that does not exist is refused as well.
	f.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: f.n("spare")}})
	expectEventually(t, deniedByWebhook("does not exist"), func() error {
		var ns corev1.Namespace
		if err := env.client.Get(f.ctx, client.ObjectKey{Name: f.n("spare")}, &ns); err != nil {
			return err
		}
		ns.Labels = map[string]string{cmkv1alpha1.TenantLabel: f.n("nobody")}
		return env.client.Update(f.ctx, &ns)
	})
	// Emptied, it moves.
	for _, o := range []client.Object{keyObj(f.n("a"), "k", f.n("a"), "main"), accountObj(f.n("a"), "main")} {
		eventually(t, 10*time.Second, func() error {
			if err := env.client.Delete(f.ctx, o); err != nil && !apierrors.IsNotFound(err) {
				return err
			}
			return nil
		})
	}
	// The Account stays until its in-use finalizer goes (the grace, then a live "no keys" list), so this can take
	// longer than an informer's lag when the controller has a backlog (another test deleting thousands of objects).
	eventually(t, 60*time.Second, func() error { return allowed().match(relabel(f.n("b"))) })
}

// TestAttackTerminatingParents: an Account or Tenant held by a finalizer is deleted (nothing depended on it), then
// the attacker tries to hang new objects on it, which would be orphaned when the finalizer goes.
func TestAttackTerminatingParents(t *testing.T) {
	needCluster(t)
	f := newFixture(t)
	f.tenant("p", cmkv1alpha1.TenantTypeRoot, "", "")
	f.tenant("held", cmkv1alpha1.TenantTypeRoot, "", "")
	f.namespace("p")
	f.account("p")
	hold := "e2e.example.com/hold"
	setFinalizers := func(obj client.Object, fin ...string) error {
		if err := env.client.Get(f.ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		obj.SetFinalizers(fin)
		return env.client.Update(f.ctx, obj)
	}
	acct := accountObj(f.n("p"), "main")
	held := tenantObj(f.n("held"), "", "", "")
	for _, o := range []client.Object{acct, held} {
		eventually(t, 10*time.Second, func() error { return setFinalizers(o, hold) })
		eventually(t, 10*time.Second, func() error { return env.client.Delete(f.ctx, o) })
		t.Cleanup(func() { _ = setFinalizers(o) })
	}

	t.Run("key on a terminating Account", func(t *testing.T) {
		expectEventually(t, deniedByWebhook(f.msg(`account "%s/main" is not found or not usable`, "p")), func() error {
			return env.client.Create(f.ctx, keyObj(f.n("p"), "orphan", f.n("p"), "main"))
		})
	})
	t.Run("child of a terminating Tenant", func(t *testing.T) {
		expectEventually(t, deniedByWebhook(f.msg(`tenant %q is being deleted`, "held")), func() error {
			return env.client.Create(f.ctx, tenantObj(f.n("child"), cmkv1alpha1.TenantTypeNested, f.n("held"), ""))
		})
	})
	t.Run("namespace joining a terminating Tenant", func(t *testing.T) {
		expectEventually(t, deniedByWebhook(f.msg(`tenant %q is being deleted`, "held")), func() error {
			return env.client.Create(f.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
				Name: f.n("held"), Labels: map[string]string{cmkv1alpha1.TenantLabel: f.n("held")}}})
		})
	})
	t.Run("the finalizers go once nothing depends on them", func(t *testing.T) {
		for _, o := range []client.Object{acct, held} {
			eventually(t, 10*time.Second, func() error {
				if err := setFinalizers(o); err != nil && !apierrors.IsNotFound(err) {
					return err
				}
				return nil
			})
		}
	})
}

// TestAttackAccountOracle: a dry-run key in my namespace naming an Account elsewhere gets the same answer whether
// that Account exists, whose it is, or whether the namespace exists at all.
func TestAttackAccountOracle(t *testing.T) {
	needCluster(t)
	f := newFixture(t)
	f.tenant("me", cmkv1alpha1.TenantTypeRoot, "", "")
	f.tenant("other", cmkv1alpha1.TenantTypeRoot, "", "")
	f.namespace("me")
	f.namespace("other")
	f.account("other")
	refs := []struct{ ns, name string }{
		{f.n("other"), "main"},   // exists, another tenant's
		{f.n("other"), "nope"},   // does not exist
		{f.n("nowhere"), "main"}, // namespace does not exist
		{"kube-system", "main"},  // namespace not assigned to any tenant
	}
	var first string
	for _, r := range refs {
		var got string
		eventually(t, 10*time.Second, func() error {
			err := env.client.Create(f.ctx, keyObj(f.n("me"), "probe", r.ns, r.name), client.DryRunAll)
			if err == nil || !strings.Contains(err.Error(), "is not found or not usable") {
				return fmt.Errorf("ref %s/%s: %v", r.ns, r.name, err)
			}
			got = strings.ReplaceAll(err.Error(), r.ns+"/"+r.name, "<ref>")
			return nil
		})
		if first == "" {
			first = got
		} else if got != first {
			t.Errorf("answers differ:\n%s\n%s", first, got)
		}
	}
}

// TestAttackInUseDenialNamesOnlyOwnKeys: the owner of an Account that a child tenant's key uses learns that it is in
// use, not the child's key names.
func TestAttackInUseDenialNamesOnlyOwnKeys(t *testing.T) {
	needCluster(t)
	f := newFixture(t)
	f.tenant("p", cmkv1alpha1.TenantTypeRoot, "", "")
	f.tenant("c", cmkv1alpha1.TenantTypeNested, "p", "")
	f.namespace("p")
	f.namespace("c")
	f.account("p")
	f.create(keyObj(f.n("c"), "secret-key-name", f.n("p"), "main"))
	expectKubectlDeleteDenied(t, f, []string{"-n", f.n("p"), "account", "main"},
		f.msg(`account "%s/main" is still referenced by 1 ServiceEncryptionKey (1 not named`, "p"))
	res := runKubectl(f.ctx, "delete", "--dry-run=server", "-n", f.n("p"), "account", "main")
	if strings.Contains(res.output(), "secret-key-name") || strings.Contains(res.output(), f.n("c")+"/") {
		t.Fatalf("denial names another tenant's key: %s", res.output())
	}
}

// TestAttackPermissions: the tenant-admin check is on by default, and a pod in kube-system is no longer a bypass.
func TestAttackPermissions(t *testing.T) {
	needCluster(t)
	f := newFixture(t)
	f.tenant("t", cmkv1alpha1.TenantTypeRoot, "", "")
	f.namespace("t")
	user := f.prefix + "writer"
	f.grant(user, tenantObjectsRule)
	sa := "system:serviceaccount:kube-system:" + f.prefix + "any-pod"
	f.grant(sa, tenantObjectsRule)
	acct := accountObj(f.n("t"), "w")
	expectEventually(t, deniedByWebhook("requires group"), func() error {
		return as(t, user).Create(f.ctx, acct.DeepCopy(), client.DryRunAll)
	})
	expectEventually(t, deniedByWebhook("requires group"), func() error {
		return as(t, sa, "system:serviceaccounts", "system:serviceaccounts:kube-system").Create(f.ctx, acct.DeepCopy(), client.DryRunAll)
	})
	expectEventually(t, allowed(), func() error {
		return as(t, user, "apeiro-cmk:tenant:"+f.n("t")+":admin").Create(f.ctx, acct.DeepCopy(), client.DryRunAll)
	})
}

// TestAttackGenerateNameTenant: a Tenant created with generateName would be stored without its ownership label;
// it is refused with a message saying why.
func TestAttackGenerateNameTenant(t *testing.T) {
	needCluster(t)
	tn := tenantObj("", cmkv1alpha1.TenantTypeRoot, "", "")
	tn.GenerateName = "e2e-gen-"
	expectEventually(t, deniedByWebhook("generateName is not supported"), func() error {
		return env.client.Create(testContext(t), tn.DeepCopy())
	})
}

// TestAttackHugeMetadata: a tenant admin cannot make every replica hold megabytes per object: oversized annotations,
// label and finalizer lists are refused by the metadata-size policy (in-process, no webhook needed).
func TestAttackHugeMetadata(t *testing.T) {
	needCluster(t)
	f := newFixture(t)
	f.tenant("t", cmkv1alpha1.TenantTypeRoot, "", "")
	f.namespace("t")
	big := accountObj(f.n("t"), "big")
	big.Annotations = map[string]string{"example.com/pad": strings.Repeat("x", 200<<10)}
	expectEventually(t, deniedByCRD("may carry at most 32768 characters of annotations"), func() error {
		return env.client.Create(f.ctx, big.DeepCopy())
	})
	many := accountObj(f.n("t"), "many")
	many.Labels = map[string]string{}
	for i := 0; i < 40; i++ {
		many.Labels[fmt.Sprintf("example.com/l%d", i)] = "x"
	}
	expectEventually(t, deniedByCRD("may carry at most 32 labels"), func() error {
		return env.client.Create(f.ctx, many.DeepCopy())
	})
	ok := accountObj(f.n("t"), "fine")
	ok.Annotations = map[string]string{"example.com/note": strings.Repeat("x", 1000)}
	expectEventually(t, allowed(), func() error { return env.client.Create(f.ctx, ok.DeepCopy(), client.DryRunAll) })
}

// TestAttackFinalizerRace: a key reaches a terminating Account anyway (here: written while the webhook is switched
// off, standing in for a create racing the delete on another replica). Removing the Account's last finalizer is then
// refused until the key is gone, so the key never outlives its Account. Only on the suite's own control plane.
func TestAttackFinalizerRace(t *testing.T) {
	needOwnCluster(t)
	f := newFixture(t)
	f.tenant("p", cmkv1alpha1.TenantTypeRoot, "", "")
	f.namespace("p")
	f.account("p")
	acct := accountObj(f.n("p"), "main")
	setFinalizers := func(fin ...string) error {
		if err := env.client.Get(f.ctx, client.ObjectKeyFromObject(acct), acct); err != nil {
			return err
		}
		acct.SetFinalizers(fin)
		return env.client.Update(f.ctx, acct)
	}
	eventually(t, 10*time.Second, func() error { return setFinalizers("e2e.example.com/hold") })
	eventually(t, 10*time.Second, func() error { return env.client.Delete(f.ctx, acct) })

	if err := env.stack.RemoveWebhookConfigurations(f.ctx); err != nil {
		t.Fatal(err)
	}
	key := keyObj(f.n("p"), "late", f.n("p"), "main")
	key.Labels = map[string]string{cmkv1alpha1.TenantLabel: f.n("p")}
	createErr := env.client.Create(f.ctx, key.DeepCopy())
	if err := env.stack.InstallWebhookConfigurations(context.Background()); err != nil {
		t.Fatalf("re-installing the webhook configurations: %v", err)
	}
	if createErr != nil {
		t.Fatalf("creating the late key with the webhook off: %v", createErr)
	}
	expectEventually(t, deniedByWebhook(f.msg(`account "%s/main" is still referenced by`, "p")), func() error { return setFinalizers() })
	eventually(t, 10*time.Second, func() error { return env.client.Delete(f.ctx, key) })
	expectEventually(t, allowed(), func() error {
		if err := setFinalizers(); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		return nil
	})
}

// TestAttackUpstreamTenantInWebhookNamespace: the webhook namespace is excluded from the upstream OpenKCM Tenant
// webhook too, so the own-namespace policy must refuse upstream Tenants there. Installs a stand-in of the upstream CRD,
// hence only on the suite's own control plane.
func TestAttackUpstreamTenantInWebhookNamespace(t *testing.T) {
	needOwnCluster(t)
	f := newFixture(t)
	crd := &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: "tenants.operations.openkcm.io"},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: "operations.openkcm.io", Scope: apiextensionsv1.NamespaceScoped,
			Names: apiextensionsv1.CustomResourceDefinitionNames{Plural: "tenants", Singular: "tenant", Kind: "Tenant", ListKind: "TenantList"},
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{Name: "v1alpha1", Served: true, Storage: true,
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
					Type: "object", XPreserveUnknownFields: new(true)}}}},
		},
	}
	f.create(crd)
	f.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "apeiro-cmk-system"}})
	up := &unstructured.Unstructured{}
	up.SetAPIVersion("operations.openkcm.io/v1alpha1")
	up.SetKind("Tenant")
	up.SetNamespace("apeiro-cmk-system")
	up.SetName(f.n("upstream"))
	up.Object["spec"] = map[string]any{"region": "eu-central"}
	expectEventually(t, deniedByCRD("objects may not live in the webhook namespace"), func() error {
		return env.client.Create(f.ctx, up.DeepCopy(), client.DryRunAll)
	})
}
