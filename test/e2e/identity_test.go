package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/apeirora/apeiro-cmk/internal/devstack"
	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/identity/identitytest"
)

// TestIdentityThroughAPIServer runs the identity path end to end: a real kube-apiserver authenticates bearer tokens
// through the webhook binary's /tokenreview (started with --identity-config, Hydra as the platform IdP), and the
// webhook's own admission handlers decide with the roles the TokenReview answered. Users hold real Hydra ID tokens
// and talk to the API server with kubectl and client-go. RBAC lets every role write our kinds, so each denial below
// is the admission tenant-permission check's:
//   - a Viewer cannot create or change Accounts or keys;
//   - an Admin of one tenant cannot write in another;
//   - creating a Shadow of a tenant needs admin rights on the target, not only on the new tenant;
//   - an Admin writes in its own tenant.
//
// The suite's shared stack cannot take part: the API server reads its authentication webhook configuration once
// at start, so this test starts its own (devstack.Options.TokenReviewWebhook fixes the webhook's port and CA
// before the API server starts).
func TestIdentityThroughAPIServer(t *testing.T) {
	needOwnCluster(t)
	if env.webhookBin == "" {
		t.Skip("no webhook binary")
	}
	hydra := identitytest.StartHydra(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// The sidecar trusts Hydra as the platform IdP. Hydra runs on loopback with a throw-away CA: allowLoopback
	// and SSL_CERT_FILE are the two test-only settings; everything else is the production configuration.
	const audience = "cmk-kubectl"
	stack := identityStack(ctx, t, fmt.Sprintf("platform:\n  - url: %s\n    audiences: [%s]\nallowLoopback: true\n", hydra.Issuer, audience), hydra.CAPEM)

	admin := stack.Client
	for _, o := range []client.Object{
		&cmkv1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "acme"}, Spec: cmkv1.TenantSpec{Type: cmkv1.TenantTypeRoot, Region: "eu-central"}},
		&cmkv1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "globex"}, Spec: cmkv1.TenantSpec{Type: cmkv1.TenantTypeRoot, Region: "us-east"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "acme", Labels: map[string]string{cmkv1.TenantLabel: "acme"}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "globex", Labels: map[string]string{cmkv1.TenantLabel: "globex"}}},
		identityRBAC(),
		identityRBACBinding("acme", "globex", "globex-dr"),
	} {
		createAsAdmin(t, ctx, admin, o)
	}
	createAsAdmin(t, ctx, admin, account("acme", "main", "acme-l1"))

	// Real ID tokens from Hydra's authorization-code flow, all through one OIDC client (kubectl's).
	viv := hydra.UserIDToken(t, audience, "viv", []string{"acme:Viewer"})
	alice := hydra.UserIDToken(t, audience, "alice", []string{"acme:Admin", "globex:Viewer", "globex-dr:Admin"})
	gary := hydra.UserIDToken(t, audience, "gary", []string{"globex:Admin", "globex-dr:Admin"})

	t.Run("kubectl authenticates a Platform Mesh user", func(t *testing.T) {
		out, err := exec.CommandContext(ctx, stack.Kubectl(), "--kubeconfig="+stack.KubeconfigPath(), "--token="+viv,
			"auth", "whoami", "-o", "json").CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl auth whoami: %v\n%s", err, out)
		}
		var ssr struct {
			Status struct {
				UserInfo struct {
					Username string              `json:"username"`
					Groups   []string            `json:"groups"`
					Extra    map[string][]string `json:"extra"`
				} `json:"userInfo"`
			} `json:"status"`
		}
		if err := json.Unmarshal(out, &ssr); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		ui := ssr.Status.UserInfo
		if ui.Username != "platform:viv" || !slices.Contains(ui.Groups, "apeiro-cmk:tenant:acme:viewer") ||
			!slices.Contains(ui.Extra["cmk.apeiro.io/permissions"], "acme:keys.read") || slices.Contains(ui.Extra["cmk.apeiro.io/permissions"], "acme:keys.write") {
			t.Fatalf("whoami: %+v", ui)
		}
		out, err = exec.CommandContext(ctx, stack.Kubectl(), "--kubeconfig="+stack.KubeconfigPath(), "--token="+viv+"x",
			"auth", "whoami").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "Unauthorized") {
			t.Fatalf("tampered token: %v %s", err, out)
		}
	})

	as := func(token string) client.Client {
		rc := stack.ControlPlane.RESTConfig()
		rc.BearerToken, rc.BearerTokenFile = token, ""
		c, err := client.New(rc, client.Options{Scheme: stack.Scheme})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	vivC, aliceC, garyC := as(viv), as(alice), as(gary)
	// RBAC lets the Viewer read: the authorizer passes, admission has the last word on writes.
	if err := vivC.Get(ctx, client.ObjectKey{Namespace: "acme", Name: "main"}, &cmkv1.Account{}); err != nil {
		t.Fatalf("Viewer reading an Account: %v", err)
	}

	key := &cmkv1.ServiceEncryptionKey{ObjectMeta: metav1.ObjectMeta{Namespace: "acme", Name: "orders"},
		Spec: cmkv1.ServiceEncryptionKeySpec{AccountRef: cmkv1.AccountReference{Name: "main"}, Algorithm: cmkv1.AlgorithmAES256}}
	relabel := func(c client.Client) error {
		var a cmkv1.Account
		if err := c.Get(ctx, client.ObjectKey{Namespace: "acme", Name: "main"}, &a); err != nil {
			return err
		}
		if a.Labels == nil {
			a.Labels = map[string]string{}
		}
		a.Labels["team"] = "payments"
		return c.Update(ctx, &a)
	}
	denials := []struct {
		name, group string
		write       func() error
	}{
		{"Viewer creates an Account", "apeiro-cmk:tenant:acme:admin", func() error { return vivC.Create(ctx, account("acme", "viv", "acme-viv-l1")) }},
		{"Viewer changes an Account", "apeiro-cmk:tenant:acme:admin", func() error { return relabel(vivC) }},
		{"Viewer creates a key", "apeiro-cmk:tenant:acme:admin", func() error { return vivC.Create(ctx, key.DeepCopy()) }},
		{"Admin of acme creates an Account in globex", "apeiro-cmk:tenant:globex:admin", func() error { return aliceC.Create(ctx, account("globex", "alice", "globex-alice-l1")) }},
		{"Admin of the new tenant, Viewer of the target, creates a Shadow", "apeiro-cmk:tenant:globex:admin", func() error { return aliceC.Create(ctx, shadow("globex-dr", "globex")) }},
		{"Viewer creates a Shadow of its tenant", "apeiro-cmk:tenant:acme-viv-dr:admin", func() error { return vivC.Create(ctx, shadow("acme-viv-dr", "acme")) }},
	}
	for _, d := range denials {
		t.Run(d.name, func(t *testing.T) {
			// RBAC bindings reach the authorizer through an informer: retry while the refusal is RBAC's.
			var err error
			eventually(t, 20*time.Second, func() error {
				err = d.write()
				if err == nil || devstack.IsWebhookDenial(err) {
					return nil
				}
				return err
			})
			if err == nil {
				t.Fatal("admitted")
			}
			if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), fmt.Sprintf("requires group %q", d.group)) {
				t.Fatalf("denial without the precise reason (want a 403 naming group %q): %v", d.group, err)
			}
			t.Logf("denied: %v", err)
		})
	}

	allowed := []struct {
		name  string
		write func() error
	}{
		{"Admin of acme creates an Account in acme", func() error { return aliceC.Create(ctx, account("acme", "alice", "acme-alice-l1")) }},
		{"Admin of acme changes an Account in acme", func() error { return relabel(aliceC) }},
		{"Admin of acme creates a key in acme", func() error { return aliceC.Create(ctx, key.DeepCopy()) }},
		{"Admin of target and new tenant creates the Shadow", func() error { return garyC.Create(ctx, shadow("globex-dr", "globex")) }},
	}
	for _, a := range allowed {
		t.Run(a.name, func(t *testing.T) {
			eventually(t, 20*time.Second, func() error {
				if err := a.write(); err != nil && !apierrors.IsAlreadyExists(err) {
					return err
				}
				return nil
			})
		})
	}
	var dr cmkv1.Tenant
	if err := admin.Get(ctx, client.ObjectKey{Name: "globex-dr"}, &dr); err != nil || dr.Spec.ShadowOf != "globex" {
		t.Fatalf("Shadow created by the target's Admin: %v %+v", err, dr.Spec)
	}
}

// identityRBAC lets a role group write our kinds: RBAC is not what the test exercises.
func identityRBAC() *rbacv1.ClusterRole {
	return &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "apeiro-cmk-e2e-tenant-roles"}, Rules: []rbacv1.PolicyRule{{
		APIGroups: []string{cmkv1.GroupVersion.Group},
		Resources: []string{"tenants", "accounts", "serviceencryptionkeys", "webhooknotifications"},
		Verbs:     []string{"get", "list", "watch", "create", "update", "patch", "delete"},
	}}}
}

// identityRBACBinding binds the Admin and Viewer groups of the tenants (apeiro-cmk:tenant:<t>:<role>) cluster-wide.
func identityRBACBinding(tenants ...string) *rbacv1.ClusterRoleBinding {
	b := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "apeiro-cmk-e2e-tenant-roles"},
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "apeiro-cmk-e2e-tenant-roles"}}
	for _, tn := range tenants {
		for _, role := range []string{"admin", "viewer"} {
			b.Subjects = append(b.Subjects, rbacv1.Subject{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "apeiro-cmk:tenant:" + tn + ":" + role})
		}
	}
	return b
}

func account(ns, name, keyRef string) *cmkv1.Account {
	region := map[string]string{"acme": "eu-central", "globex": "us-east"}[ns]
	return &cmkv1.Account{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: cmkv1.AccountSpec{Keystore: "local", KeyRef: keyRef, Region: region}}
}

func shadow(name, of string) *cmkv1.Tenant {
	return &cmkv1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: cmkv1.TenantSpec{Type: cmkv1.TenantTypeShadow, ShadowOf: of, Region: "eu-west"}}
}

// createAsAdmin creates o with the cluster admin, retrying while the webhook's caches trail the API server.
func createAsAdmin(t *testing.T, ctx context.Context, c client.Client, o client.Object) {
	t.Helper()
	eventually(t, 20*time.Second, func() error {
		err := c.Create(ctx, o.DeepCopyObject().(client.Object))
		if err == nil || apierrors.IsAlreadyExists(err) {
			return nil
		}
		return err
	})
}

// identityStack starts a stack of its own whose webhook authenticates bearer tokens (the API server's token
// webhook) with the identity configuration idCfg, trusting caPEM for the IdP, and stops it when the test ends.
func identityStack(ctx context.Context, t *testing.T, idCfg string, caPEM []byte) *devstack.Stack {
	t.Helper()
	work := t.TempDir()
	cfgFile, caFile := filepath.Join(work, "identity.yaml"), filepath.Join(work, "idp-ca.pem")
	writeFile(t, cfgFile, idCfg)
	writeFile(t, caFile, string(caPEM))
	start := time.Now()
	stack, err := devstack.Up(ctx, devstack.Options{
		KubeBin: env.kubeBin, WebhookBin: env.webhookBin, Root: env.root, WorkDir: filepath.Join(work, "stack"),
		TokenReviewWebhook: true, WebhookArgs: []string{"--identity-config=" + cfgFile}, WebhookEnv: []string{"SSL_CERT_FILE=" + caFile},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("webhook log:\n%s", stack.Webhook.LogTail(40))
		}
		_ = stack.Down()
	})
	t.Logf("identity stack up in %.1fs", time.Since(start).Seconds())
	return stack
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
