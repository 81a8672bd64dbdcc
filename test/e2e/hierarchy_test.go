package e2e

import (
	"fmt"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/client"

	cmkv1alpha1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
)

// hierarchyWorld builds the fixture of docs/hierarchy.md (prefixed): acme (Root) with Nested acme-eu (child
// acme-eu-prod, shadows acme-eu-dr and acme-eu-mig) and acme-us (shadow acme-us-dr), shadow acme-dr; globex (Root)
// with globex-de; the chain l1…l8. Every tenant gets a namespace and an Account "main".
func hierarchyWorld(t *testing.T) *fixture {
	f := newFixture(t)
	type ten struct {
		name, parent, shadowOf string
		typ                    cmkv1alpha1.TenantType
	}
	tenants := []ten{
		{"acme", "", "", cmkv1alpha1.TenantTypeRoot},
		{"acme-eu", "acme", "", cmkv1alpha1.TenantTypeNested},
		{"acme-us", "acme", "", cmkv1alpha1.TenantTypeNested},
		{"acme-eu-prod", "acme-eu", "", cmkv1alpha1.TenantTypeNested},
		{"acme-eu-dr", "", "acme-eu", cmkv1alpha1.TenantTypeShadow},
		{"acme-eu-mig", "", "acme-eu", cmkv1alpha1.TenantTypeShadow},
		{"acme-us-dr", "", "acme-us", cmkv1alpha1.TenantTypeShadow},
		{"acme-dr", "", "acme", cmkv1alpha1.TenantTypeShadow},
		{"globex", "", "", cmkv1alpha1.TenantTypeRoot},
		{"globex-de", "globex", "", cmkv1alpha1.TenantTypeNested},
		{"l1", "", "", cmkv1alpha1.TenantTypeRoot},
	}
	for i := 2; i <= 8; i++ {
		tenants = append(tenants, ten{fmt.Sprintf("l%d", i), fmt.Sprintf("l%d", i-1), "", cmkv1alpha1.TenantTypeNested})
	}
	for _, tn := range tenants {
		f.tenant(tn.name, tn.typ, tn.parent, tn.shadowOf)
	}
	for _, tn := range tenants[:10] { // the chain needs no accounts
		f.namespace(tn.name)
		f.account(tn.name)
	}
	return f
}

// TestHierarchy checks the rows of the rule table in docs/hierarchy.md that can be reached through the API, on a
// prefixed copy of the documented fixture. Rows that need informer-only data (cycles, a child before its parent) are
// in TestWebhookOff; deletes in TestProtectedDeletes; rows the CRD's CEL rules already stop (type/parent/shadowOf
// are immutable, so no re-parenting) are asserted with the CEL message.
func TestHierarchy(t *testing.T) {
	needCluster(t)
	f := hierarchyWorld(t)

	t.Run("references", func(t *testing.T) {
		// Every refused reference gets the same answer, whatever the hierarchy rule behind it (docs/admission.md,
		// A-ACCOUNT-UNUSABLE): a denial must not tell a tenant whose an Account is.
		unusable := func(keyTenant, accountNS, account string) outcome {
			return deniedByWebhook(fmt.Sprintf(`account "%s/%s" is not found or not usable by tenant %q`, f.n(accountNS), account, f.n(keyTenant)))
		}
		cases := []struct {
			rule       string
			key, owner string // tenant owning the key, tenant owning the account
			account    string // default "main"
			want       outcome
		}{
			{"H-REF-SELF", "acme-eu", "acme-eu", "", allowed()},
			{"H-REF-ANCESTOR", "acme-eu-prod", "acme-eu", "", allowed()},
			{"H-REF-ANCESTOR", "acme-eu-prod", "acme", "", allowed()},
			{"H-REF-SHADOW", "acme-eu", "acme-eu-dr", "", allowed()},
			{"H-REF-SHADOW", "acme-eu-prod", "acme-dr", "", allowed()},
			{"H-REF-SHADOW-TARGET", "acme-eu-dr", "acme-eu", "", allowed()},
			{"H-REF-SHADOW-TARGET", "acme-eu-dr", "acme", "", allowed()},
			{"H-REF-SHADOW-TARGET", "acme-eu-dr", "acme-eu-mig", "", allowed()},
			{"H-REF-SHADOW-TARGET", "acme-eu-dr", "acme-dr", "", allowed()},
			{"H-CROSS-TENANT", "acme-eu", "acme-us", "", unusable("acme-eu", "acme-us", "main")},
			{"H-CROSS-TENANT", "acme-eu", "acme-us-dr", "", unusable("acme-eu", "acme-us-dr", "main")},
			{"H-CROSS-TENANT", "acme", "acme-eu", "", unusable("acme", "acme-eu", "main")},
			{"H-CROSS-TENANT", "acme", "acme-eu-dr", "", unusable("acme", "acme-eu-dr", "main")},
			{"H-CROSS-TENANT", "acme-eu", "globex", "", unusable("acme-eu", "globex", "main")},
			{"H-CROSS-TENANT", "acme-eu", "globex-de", "", unusable("acme-eu", "globex-de", "main")},
			{"H-CROSS-TENANT", "acme-eu-dr", "acme-eu-prod", "", unusable("acme-eu-dr", "acme-eu-prod", "main")},
			{"H-CROSS-TENANT", "acme-eu-dr", "acme-us", "", unusable("acme-eu-dr", "acme-us", "main")},
			{"H-ACCOUNT-UNKNOWN", "acme", "acme", "missing", unusable("acme", "acme", "missing")},
		}
		for _, tc := range cases {
			acct := tc.account
			if acct == "" {
				acct = "main"
			}
			t.Run(fmt.Sprintf("%s %s→%s/%s", tc.rule, tc.key, tc.owner, acct), func(t *testing.T) {
				key := keyObj(f.n(tc.key), "k", f.n(tc.owner), acct)
				expectEventually(t, tc.want, func() error {
					return env.client.Create(f.ctx, key.DeepCopy(), client.DryRunAll)
				})
			})
		}
	})

	t.Run("tenants", func(t *testing.T) {
		n := f.n("n")
		cases := []struct {
			rule, name string
			tenant     *cmkv1alpha1.Tenant
			want       outcome
		}{
			{"H-TENANT-VALID", "valid Root", tenantObj(n, cmkv1alpha1.TenantTypeRoot, "", ""), allowed()},
			{"H-TENANT-VALID", "valid Nested", tenantObj(n, cmkv1alpha1.TenantTypeNested, f.n("acme-eu"), ""), allowed()},
			{"H-TENANT-VALID", "valid Shadow", tenantObj(n, cmkv1alpha1.TenantTypeShadow, "", f.n("acme-us")), allowed()},
			{"H-TENANT-VALID", "Nested at exactly the maximum depth", tenantObj(n, cmkv1alpha1.TenantTypeNested, f.n("l7"), ""), allowed()},
			{"H-TYPE-INVALID", "unknown type (CRD enum)", tenantObj(n, "Leaf", "", ""), deniedByCRD(`Unsupported value: "Leaf"`)},
			{"H-ROOT-PARENT", "Root with parent (CEL)", tenantObj(n, cmkv1alpha1.TenantTypeRoot, f.n("acme"), ""), deniedByCRD("a Root tenant has neither spec.parent nor spec.shadowOf")},
			{"H-ROOT-SHADOWOF", "Root with shadowOf (CEL)", tenantObj(n, cmkv1alpha1.TenantTypeRoot, "", f.n("acme")), deniedByCRD("a Root tenant has neither spec.parent nor spec.shadowOf")},
			{"H-NESTED-NO-PARENT", "Nested without parent (CEL)", tenantObj(n, cmkv1alpha1.TenantTypeNested, "", ""), deniedByCRD("a Nested tenant needs spec.parent and no spec.shadowOf")},
			{"H-NESTED-SHADOWOF", "Nested with shadowOf (CEL)", tenantObj(n, cmkv1alpha1.TenantTypeNested, f.n("acme"), f.n("acme")), deniedByCRD("a Nested tenant needs spec.parent and no spec.shadowOf")},
			{"H-SHADOW-NO-TARGET", "Shadow without shadowOf (CEL)", tenantObj(n, cmkv1alpha1.TenantTypeShadow, "", ""), deniedByCRD("a Shadow tenant needs spec.shadowOf and no spec.parent")},
			{"H-SHADOW-PARENT", "Shadow with parent (CEL)", tenantObj(n, cmkv1alpha1.TenantTypeShadow, f.n("acme"), f.n("acme")), deniedByCRD("a Shadow tenant needs spec.shadowOf and no spec.parent")},
			{"H-SELF-REF", "self-parent (CEL)", tenantObj(n, cmkv1alpha1.TenantTypeNested, n, ""), deniedByCRD("a tenant cannot be its own parent")},
			{"H-SELF-REF", "self-shadow (CEL)", tenantObj(n, cmkv1alpha1.TenantTypeShadow, "", n), deniedByCRD("a tenant cannot shadow itself")},
			{"H-PARENT-UNKNOWN", "dangling parent", tenantObj(n, cmkv1alpha1.TenantTypeNested, f.n("ghost"), ""), deniedByWebhook(f.msg(`parent tenant %q does not exist`, "ghost"))},
			{"H-SHADOW-TARGET-UNKNOWN", "dangling shadow target", tenantObj(n, cmkv1alpha1.TenantTypeShadow, "", f.n("ghost")), deniedByWebhook(f.msg(`shadow target tenant %q does not exist`, "ghost"))},
			{"H-PARENT-SHADOW", "parent is a shadow", tenantObj(n, cmkv1alpha1.TenantTypeNested, f.n("acme-eu-dr"), ""), deniedByWebhook(f.msg(`parent tenant %q is a Shadow; a Shadow cannot have children`, "acme-eu-dr"))},
			{"H-SHADOW-OF-SHADOW", "shadow of a shadow", tenantObj(n, cmkv1alpha1.TenantTypeShadow, "", f.n("acme-dr")), deniedByWebhook(f.msg(`shadow target tenant %q is itself a Shadow`, "acme-dr"))},
			{"H-DEPTH", "new tenant over the limit", tenantObj(n, cmkv1alpha1.TenantTypeNested, f.n("l8"), ""), deniedByWebhook(f.msg(`tenant %q would be at depth 9, deeper than the maximum of 8`, "n"))},
		}
		for _, tc := range cases {
			t.Run(tc.rule+" "+tc.name, func(t *testing.T) {
				expectEventually(t, tc.want, func() error {
					return env.client.Create(f.ctx, tc.tenant.DeepCopy(), client.DryRunAll)
				})
			})
		}
	})

	// type, parent and shadowOf are immutable in the CRD, so the re-parenting rows of the table (H-CYCLE by
	// re-parenting, H-DEPTH by moving a subtree, H-SHADOW-HAS-DEPENDENTS) can only arise from informer data; through
	// the API they stop at CEL.
	t.Run("re-parenting is stopped by CEL", func(t *testing.T) {
		cases := []struct {
			name, tenant string
			mutate       func(*cmkv1alpha1.Tenant)
			want         outcome
		}{
			{"H-CYCLE acme under acme-eu-prod", "acme", func(tn *cmkv1alpha1.Tenant) {
				tn.Spec.Type, tn.Spec.Parent = cmkv1alpha1.TenantTypeNested, f.n("acme-eu-prod")
			}, deniedByCRD("spec.type is immutable")},
			{"H-TENANT-VALID acme-eu moves under acme-us", "acme-eu", func(tn *cmkv1alpha1.Tenant) {
				tn.Spec.Parent = f.n("acme-us")
			}, deniedByCRD("spec.parent is immutable")},
			{"H-SHADOW-HAS-DEPENDENTS acme-us becomes a Shadow of globex", "acme-us", func(tn *cmkv1alpha1.Tenant) {
				tn.Spec.Type, tn.Spec.Parent, tn.Spec.ShadowOf = cmkv1alpha1.TenantTypeShadow, "", f.n("globex")
			}, deniedByCRD("spec.type is immutable")},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				tn := &cmkv1alpha1.Tenant{}
				if err := env.client.Get(f.ctx, client.ObjectKey{Name: f.n(tc.tenant)}, tn); err != nil {
					t.Fatal(err)
				}
				tc.mutate(tn)
				if err := tc.want.match(env.client.Update(f.ctx, tn, client.DryRunAll)); err != nil {
					t.Fatal(err)
				}
			})
		}
	})
}
