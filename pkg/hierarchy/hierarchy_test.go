package hierarchy

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
)

// fixture builds the model every rule case runs against (MaxDepth 8):
//
//	acme (Root)
//	├── acme-eu (Nested)                acme-eu-dr, acme-eu-mig (Shadows of acme-eu)
//	│   └── acme-eu-prod (Nested)
//	├── acme-us (Nested)                acme-us-dr (Shadow of acme-us)
//	└── acme-dr (Shadow of acme)
//	globex (Root)
//	└── globex-de (Nested)
//	l1 (Root) → l2 → … → l8 (Nested chain, l8 at depth 8)
//	m1 (Root) → m2 → m3 → m4 (Nested chain)
//	c1 → c2 → c1 (Nested cycle, as informers may deliver it)
//	o-child (Nested, parent o-parent which has not arrived yet)
//
// Every tenant X owns Account X/main; ServiceEncryptionKeys acme-eu/k1..k7
// reference acme-eu/main and acme-us/k1 references acme-us/main.
func fixture() *Model {
	m := New(Config{})
	ts := []Tenant{
		{ID: "acme", Type: Root},
		{ID: "acme-eu", Type: Nested, Parent: "acme"},
		{ID: "acme-eu-prod", Type: Nested, Parent: "acme-eu"},
		{ID: "acme-eu-dr", Type: Shadow, ShadowOf: "acme-eu"},
		{ID: "acme-eu-mig", Type: Shadow, ShadowOf: "acme-eu"},
		{ID: "acme-us", Type: Nested, Parent: "acme"},
		{ID: "acme-us-dr", Type: Shadow, ShadowOf: "acme-us"},
		{ID: "acme-dr", Type: Shadow, ShadowOf: "acme"},
		{ID: "globex", Type: Root},
		{ID: "globex-de", Type: Nested, Parent: "globex"},
		{ID: "l1", Type: Root},
		{ID: "m1", Type: Root},
		{ID: "m2", Type: Nested, Parent: "m1"},
		{ID: "m3", Type: Nested, Parent: "m2"},
		{ID: "m4", Type: Nested, Parent: "m3"},
		{ID: "c1", Type: Nested, Parent: "c2"},
		{ID: "c2", Type: Nested, Parent: "c1"},
		{ID: "o-child", Type: Nested, Parent: "o-parent"},
	}
	for i := 2; i <= 8; i++ {
		ts = append(ts, Tenant{ID: fmt.Sprintf("l%d", i), Type: Nested, Parent: fmt.Sprintf("l%d", i-1)})
	}
	for _, t := range ts {
		m.UpsertTenant(t)
		m.UpsertAccount(AccountKey{t.ID, "main"}, t.ID)
	}
	m.UpsertAccount(AccountKey{"orphan", "main"}, "gone")
	for i := 1; i <= 7; i++ {
		m.UpsertKey(KeyRef{"acme-eu", fmt.Sprintf("k%d", i)}, AccountKey{"acme-eu", "main"})
	}
	m.UpsertKey(KeyRef{"acme-us", "k1"}, AccountKey{"acme-us", "main"})
	return m
}

type ruleCase struct {
	id, name, example string
	run               func(m *Model) error
	field             string // expected RuleError.Field when denied
	msg               string // expected message substring; "" = allowed
}

func ref(t, u string) func(*Model) error {
	return func(m *Model) error { return m.MayReference(t, u) }
}

func refAcct(t, ns string) func(*Model) error {
	return func(m *Model) error { return m.MayReferenceAccount(t, AccountKey{ns, "main"}) }
}

func write(t Tenant) func(*Model) error {
	return func(m *Model) error { return m.ValidateTenant(t) }
}

func del(id string) func(*Model) error {
	return func(m *Model) error { return m.ValidateTenantDelete(id) }
}

// ruleCases is docs/hierarchy.md's rule table, row for row
// (TestRuleTableMatchesDoc keeps the two in sync).
var ruleCases = []ruleCase{
	// Reference rule (FR-4.3).
	{RuleRefSelf, "reference to self", "acme-eu → acme-eu", ref("acme-eu", "acme-eu"), "", ""},
	{RuleRefAncestor, "reference to parent", "acme-eu-prod → acme-eu", ref("acme-eu-prod", "acme-eu"), "", ""},
	{RuleRefAncestor, "reference to grandparent (root)", "acme-eu-prod → acme", ref("acme-eu-prod", "acme"), "", ""},
	{RuleRefAncestor, "reference by account to an ancestor", "key of acme-eu-prod → account acme/main", refAcct("acme-eu-prod", "acme"), "", ""},
	{RuleRefShadow, "reference to shadow of self", "acme-eu → acme-eu-dr", ref("acme-eu", "acme-eu-dr"), "", ""},
	{RuleRefShadow, "reference to shadow of ancestor", "acme-eu-prod → acme-dr", ref("acme-eu-prod", "acme-dr"), "", ""},
	{RuleRefShadowTarget, "shadow uses its target's account", "acme-eu-dr → acme-eu", ref("acme-eu-dr", "acme-eu"), "", ""},
	{RuleRefShadowTarget, "shadow uses its target's ancestor's account", "acme-eu-dr → acme", ref("acme-eu-dr", "acme"), "", ""},
	{RuleRefShadowTarget, "shadow uses another shadow of its target", "acme-eu-dr → acme-eu-mig", ref("acme-eu-dr", "acme-eu-mig"), "", ""},
	{RuleRefShadowTarget, "shadow uses a shadow of its target's ancestor", "acme-eu-dr → acme-dr", ref("acme-eu-dr", "acme-dr"), "", ""},
	{RuleCrossTenant, "sibling", "acme-eu → acme-us", ref("acme-eu", "acme-us"), FieldAccountRef,
		`cross-tenant reference: tenant "acme-eu" may not use account of tenant "acme-us" (not itself, an ancestor, or a shadow of either)`},
	{RuleCrossTenant, "sibling's shadow", "acme-eu → acme-us-dr", ref("acme-eu", "acme-us-dr"), FieldAccountRef,
		`tenant "acme-eu" may not use account of tenant "acme-us-dr"`},
	{RuleCrossTenant, "descendant", "acme → acme-eu", ref("acme", "acme-eu"), FieldAccountRef,
		`tenant "acme" may not use account of tenant "acme-eu"`},
	{RuleCrossTenant, "descendant's shadow", "acme → acme-eu-dr", ref("acme", "acme-eu-dr"), FieldAccountRef,
		`tenant "acme" may not use account of tenant "acme-eu-dr"`},
	{RuleCrossTenant, "another root's tree", "acme-eu → globex", ref("acme-eu", "globex"), FieldAccountRef,
		`cross-tenant reference: tenant "acme-eu" may not use account of tenant "globex"`},
	{RuleCrossTenant, "another root's tree, by account", "key of acme-eu → account globex-de/main", refAcct("acme-eu", "globex-de"), FieldAccountRef,
		`tenant "acme-eu" may not use account of tenant "globex-de"`},
	{RuleCrossTenant, "shadow uses its target's child's account", "acme-eu-dr → acme-eu-prod", ref("acme-eu-dr", "acme-eu-prod"), FieldAccountRef,
		`tenant "acme-eu-dr" may not use account of tenant "acme-eu-prod" (not itself, its shadow target "acme-eu"`},
	{RuleCrossTenant, "shadow uses its target's sibling's account", "acme-eu-dr → acme-us", ref("acme-eu-dr", "acme-us"), FieldAccountRef,
		`tenant "acme-eu-dr" may not use account of tenant "acme-us"`},
	{RuleOwnerUnknown, "unknown key owner", "nobody → acme", ref("nobody", "acme"), FieldAccountRef,
		`key owner tenant "nobody" is not known to the hierarchy`},
	{RuleAccountOwnerUnknown, "unknown account owner", "acme → nobody", ref("acme", "nobody"), FieldAccountRef,
		`account owner tenant "nobody" is not known to the hierarchy`},
	{RuleAccountOwnerUnknown, "account whose owner tenant is not known", "key of acme → account orphan/main (owner gone)", refAcct("acme", "orphan"), FieldAccountRef,
		`account owner tenant "gone" of account "orphan/main" is not known`},
	{RuleAccountUnknown, "unknown account", "key of acme → account missing/main", refAcct("acme", "missing"), FieldAccountRef,
		`account "missing/main" is not known to the hierarchy`},

	// Tenant writes (ValidateTenant).
	{RuleTenantValid, "valid Root", "new Root n", write(Tenant{ID: "n", Type: Root}), "", ""},
	{RuleTenantValid, "valid Nested", "new n, parent acme-eu", write(Tenant{ID: "n", Type: Nested, Parent: "acme-eu"}), "", ""},
	{RuleTenantValid, "valid Shadow", "new n, shadowOf acme-us", write(Tenant{ID: "n", Type: Shadow, ShadowOf: "acme-us"}), "", ""},
	{RuleTenantValid, "Nested at exactly the maximum depth", "new n, parent l7 (depth 8)", write(Tenant{ID: "n", Type: Nested, Parent: "l7"}), "", ""},
	{RuleTenantValid, "re-parent within the limit", "acme-eu moves under acme-us", write(Tenant{ID: "acme-eu", Type: Nested, Parent: "acme-us"}), "", ""},
	{RuleTenantValid, "parent arriving after its child", "o-parent as Root (adopts o-child)", write(Tenant{ID: "o-parent", Type: Root}), "", ""},
	{RuleIDEmpty, "empty ID", "Root with ID \"\"", write(Tenant{Type: Root}), FieldName,
		`tenant ID must not be empty`},
	{RuleTypeInvalid, "unknown type", "n of type Leaf", write(Tenant{ID: "n", Type: "Leaf"}), FieldType,
		`tenant type "Leaf" is not one of Root, Nested, Shadow`},
	{RuleRootParent, "Root with parent", "Root n, parent acme", write(Tenant{ID: "n", Type: Root, Parent: "acme"}), FieldParent,
		`a Root tenant has no parent, got parent "acme"`},
	{RuleRootShadowOf, "Root with shadowOf", "Root n, shadowOf acme", write(Tenant{ID: "n", Type: Root, ShadowOf: "acme"}), FieldShadowOf,
		`a Root tenant is not a shadow, got shadowOf "acme"`},
	{RuleNestedNoParent, "Nested without parent", "Nested n", write(Tenant{ID: "n", Type: Nested}), FieldParent,
		`a Nested tenant requires a parent`},
	{RuleNestedShadowOf, "Nested with shadowOf", "Nested n, parent acme, shadowOf acme", write(Tenant{ID: "n", Type: Nested, Parent: "acme", ShadowOf: "acme"}), FieldShadowOf,
		`a Nested tenant is not a shadow, got shadowOf "acme"`},
	{RuleShadowNoTarget, "Shadow without shadowOf", "Shadow n", write(Tenant{ID: "n", Type: Shadow}), FieldShadowOf,
		`a Shadow tenant requires shadowOf`},
	{RuleShadowParent, "Shadow with parent", "Shadow n, shadowOf acme, parent acme", write(Tenant{ID: "n", Type: Shadow, ShadowOf: "acme", Parent: "acme"}), FieldParent,
		`a Shadow tenant has no parent`},
	{RuleSelfRef, "self-parent", "Nested n, parent n", write(Tenant{ID: "n", Type: Nested, Parent: "n"}), FieldParent,
		`tenant "n" cannot be its own parent`},
	{RuleSelfRef, "self-shadow", "Shadow n, shadowOf n", write(Tenant{ID: "n", Type: Shadow, ShadowOf: "n"}), FieldShadowOf,
		`tenant "n" cannot be a shadow of itself`},
	{RuleParentUnknown, "dangling parent", "Nested n, parent ghost", write(Tenant{ID: "n", Type: Nested, Parent: "ghost"}), FieldParent,
		`parent tenant "ghost" does not exist`},
	{RuleShadowTargetUnknown, "dangling shadow target", "Shadow n, shadowOf ghost", write(Tenant{ID: "n", Type: Shadow, ShadowOf: "ghost"}), FieldShadowOf,
		`shadow target tenant "ghost" does not exist`},
	{RuleParentShadow, "parent is a shadow", "Nested n, parent acme-eu-dr", write(Tenant{ID: "n", Type: Nested, Parent: "acme-eu-dr"}), FieldParent,
		`parent tenant "acme-eu-dr" is a Shadow; a Shadow cannot have children`},
	{RuleShadowOfShadow, "shadow of a shadow", "Shadow n, shadowOf acme-dr", write(Tenant{ID: "n", Type: Shadow, ShadowOf: "acme-dr"}), FieldShadowOf,
		`shadow target tenant "acme-dr" is itself a Shadow`},
	{RuleShadowHasDependents, "tenant with children becomes a Shadow", "acme-eu → Shadow of globex", write(Tenant{ID: "acme-eu", Type: Shadow, ShadowOf: "globex"}), FieldType,
		`tenant "acme-eu" cannot become a Shadow: it has 1 child (acme-eu-prod) and 2 shadows (acme-eu-dr, acme-eu-mig)`},
	{RuleShadowHasDependents, "tenant with shadows becomes a Shadow", "acme-us → Shadow of globex", write(Tenant{ID: "acme-us", Type: Shadow, ShadowOf: "globex"}), FieldType,
		`tenant "acme-us" cannot become a Shadow: it has 1 shadow (acme-us-dr)`},
	{RuleCycle, "re-parent under own descendant", "acme → Nested, parent acme-eu-prod", write(Tenant{ID: "acme", Type: Nested, Parent: "acme-eu-prod"}), FieldParent,
		`tenant "acme" would form a cycle: acme → acme-eu-prod → acme-eu → acme`},
	{RuleCycle, "parent chain already cyclic (informer data)", "Nested n, parent c1 (c1 ⇄ c2)", write(Tenant{ID: "n", Type: Nested, Parent: "c1"}), FieldParent,
		`the parent chain of "c1" already contains a cycle (c1 → c2 → c1)`},
	{RuleCycle, "late parent points at its own child", "o-parent as Nested, parent o-child", write(Tenant{ID: "o-parent", Type: Nested, Parent: "o-child"}), FieldParent,
		`tenant "o-parent" would form a cycle: o-parent → o-child → o-parent`},
	{RuleDepth, "new tenant over the limit", "Nested n, parent l8 (depth 8)", write(Tenant{ID: "n", Type: Nested, Parent: "l8"}), FieldParent,
		`tenant "n" would be at depth 9, deeper than the maximum of 8`},
	{RuleDepth, "re-parent pushes descendants over the limit", "m2 (with m3, m4 below) moves under l6", write(Tenant{ID: "m2", Type: Nested, Parent: "l6"}), FieldParent,
		`tenant "m2" at depth 7 would put its descendant "m4" at depth 9, deeper than the maximum of 8`},

	// Deletes.
	{RuleDeleteOK, "delete a leaf", "delete acme-eu-prod", del("acme-eu-prod"), "", ""},
	{RuleDeleteOK, "delete a tenant the model does not know", "delete nobody", del("nobody"), "", ""},
	{RuleDeleteChildren, "delete tenant with children", "delete acme", del("acme"), FieldName,
		`tenant "acme" still has 2 children (acme-eu, acme-us) and 1 shadow (acme-dr)`},
	{RuleDeleteChildren, "delete a parent whose child arrived first", "delete o-parent (not yet known)", del("o-parent"), FieldName,
		`tenant "o-parent" still has 1 child (o-child)`},
	{RuleDeleteShadows, "delete tenant with shadows", "delete acme-us", del("acme-us"), FieldName,
		`tenant "acme-us" is still the target of 1 shadow (acme-us-dr)`},
	{RuleAccountInUse, "delete account with keys", "delete acme-eu/main (7 keys)",
		func(m *Model) error { return m.ValidateAccountDelete(AccountKey{"acme-eu", "main"}) }, FieldName,
		`account "acme-eu/main" is still referenced by 7 ServiceEncryptionKeys (acme-eu/k1, acme-eu/k2, acme-eu/k3, acme-eu/k4, acme-eu/k5, …)`},
	{RuleAccountDeleteOK, "delete account without keys", "delete globex/main",
		func(m *Model) error { return m.ValidateAccountDelete(AccountKey{"globex", "main"}) }, "", ""},
	{RuleAccountDeleteOK, "delete account after its last key is gone", "delete key acme-us/k1, then acme-us/main",
		func(m *Model) error {
			m.DeleteKey(KeyRef{"acme-us", "k1"})
			return m.ValidateAccountDelete(AccountKey{"acme-us", "main"})
		}, "", ""},
}

func TestRules(t *testing.T) {
	for _, c := range ruleCases {
		t.Run(c.id+"/"+c.name, func(t *testing.T) {
			err := c.run(fixture())
			if c.msg == "" {
				if err != nil {
					t.Fatalf("want allowed, got %v", err)
				}
				return
			}
			var re *RuleError
			if !errors.As(err, &re) {
				t.Fatalf("want *RuleError %s, got %v", c.id, err)
			}
			if re.Rule != c.id {
				t.Errorf("rule = %s, want %s (%v)", re.Rule, c.id, err)
			}
			if re.Field != c.field {
				t.Errorf("field = %q, want %q", re.Field, c.field)
			}
			if !strings.Contains(re.Msg, c.msg) {
				t.Errorf("message %q\n  does not contain %q", re.Msg, c.msg)
			}
		})
	}
}

// docRow is one row of the rule table in docs/hierarchy.md.
type docRow struct{ id, name, example, verdict, msg string }

func (c ruleCase) docRow() docRow {
	r := docRow{c.id, c.name, c.example, "allowed", "—"}
	if c.msg != "" {
		r.verdict, r.msg = "denied", c.msg
	}
	return r
}

func (r docRow) markdown() string {
	msg := r.msg
	if msg != "—" {
		msg = "`" + msg + "`"
	}
	return fmt.Sprintf("| %s | %s | %s | %s | %s |", r.id, r.name, r.example, r.verdict, msg)
}

func parseDocTable(t *testing.T) []docRow {
	t.Helper()
	b, err := os.ReadFile("../../docs/hierarchy.md")
	if err != nil {
		t.Fatalf("read rule table: %v", err)
	}
	var rows []docRow
	for line := range strings.SplitSeq(string(b), "\n") {
		if !strings.HasPrefix(line, "| H-") {
			continue
		}
		cells := strings.Split(strings.Trim(strings.TrimSpace(line), "|"), " | ")
		if len(cells) != 5 {
			t.Fatalf("rule table row has %d cells, want 5: %s", len(cells), line)
		}
		for i := range cells {
			cells[i] = strings.Trim(strings.TrimSpace(cells[i]), "`")
		}
		rows = append(rows, docRow{cells[0], cells[1], cells[2], cells[3], cells[4]})
	}
	return rows
}

// TestRuleTableMatchesDoc keeps docs/hierarchy.md and ruleCases one-to-one:
// every documented row has a test case with the same rule ID, case name,
// example, verdict and message, and vice versa. Run with
// HIERARCHY_PRINT_TABLE=1 to print the rows as the doc expects them.
func TestRuleTableMatchesDoc(t *testing.T) {
	if os.Getenv("HIERARCHY_PRINT_TABLE") != "" {
		for _, c := range ruleCases {
			fmt.Println(c.docRow().markdown())
		}
	}
	doc := map[[2]string]docRow{}
	for _, r := range parseDocTable(t) {
		k := [2]string{r.id, r.name}
		if _, dup := doc[k]; dup {
			t.Errorf("doc row %s / %q appears twice", r.id, r.name)
		}
		doc[k] = r
	}
	seen := map[[2]string]bool{}
	for _, c := range ruleCases {
		k := [2]string{c.id, c.name}
		if seen[k] {
			t.Errorf("test case %s / %q appears twice", c.id, c.name)
		}
		seen[k] = true
		got, ok := doc[k]
		if !ok {
			t.Errorf("test case %s / %q has no row in docs/hierarchy.md; add:\n%s", c.id, c.name, c.docRow().markdown())
			continue
		}
		if want := c.docRow(); got != want {
			t.Errorf("doc row differs from test case:\n doc:  %s\n test: %s", got.markdown(), want.markdown())
		}
	}
	for k := range doc {
		if !seen[k] {
			t.Errorf("doc row %s / %q has no test case", k[0], k[1])
		}
	}
	// Every rule ID constant is covered by at least one row.
	ids := map[string]bool{}
	for _, c := range ruleCases {
		ids[c.id] = true
	}
	for _, id := range allRuleIDs {
		if !ids[id] {
			t.Errorf("rule %s has no row in the rule table", id)
		}
	}
}

var allRuleIDs = []string{
	RuleRefSelf, RuleRefAncestor, RuleRefShadow, RuleRefShadowTarget, RuleCrossTenant, RuleOwnerUnknown,
	RuleAccountOwnerUnknown, RuleAccountUnknown, RuleTenantValid, RuleIDEmpty, RuleTypeInvalid, RuleRootParent,
	RuleRootShadowOf, RuleNestedNoParent, RuleNestedShadowOf, RuleShadowNoTarget, RuleShadowParent, RuleSelfRef,
	RuleParentUnknown, RuleShadowTargetUnknown, RuleParentShadow, RuleShadowOfShadow, RuleShadowHasDependents,
	RuleCycle, RuleDepth, RuleDeleteOK, RuleDeleteChildren, RuleDeleteShadows, RuleAccountDeleteOK, RuleAccountInUse,
}

func TestRuleErrorString(t *testing.T) {
	err := fixture().MayReference("acme-eu", "globex")
	want := `spec.accountRef: cross-tenant reference: tenant "acme-eu" may not use account of tenant "globex" (not itself, an ancestor, or a shadow of either) [H-CROSS-TENANT]`
	if err == nil || err.Error() != want {
		t.Fatalf("Error() = %v\nwant      %s", err, want)
	}
	if got := (&RuleError{Rule: "H-X", Msg: "m"}).Error(); got != "m [H-X]" {
		t.Fatalf("Error() without field = %q", got)
	}
}

func TestConfigMaxDepth(t *testing.T) {
	m := New(Config{MaxDepth: 2})
	if m.MaxDepth() != 2 || New(Config{}).MaxDepth() != DefaultMaxDepth || New(Config{MaxDepth: -1}).MaxDepth() != DefaultMaxDepth {
		t.Fatal("MaxDepth defaulting")
	}
	m.UpsertTenant(Tenant{ID: "r", Type: Root})
	m.UpsertTenant(Tenant{ID: "a", Type: Nested, Parent: "r"})
	if err := m.ValidateTenant(Tenant{ID: "b", Type: Nested, Parent: "a"}); err == nil {
		t.Fatal("depth 3 allowed with MaxDepth 2")
	}
	if err := m.ValidateTenant(Tenant{ID: "s", Type: Shadow, ShadowOf: "a"}); err != nil {
		t.Fatalf("shadow at depth 2: %v", err)
	}
}

// An unrelated update of a tenant whose subtree exceeds a lowered limit is
// not blocked: only writes that push descendants deeper are.
func TestDepthLimitLoweredAfterTheFact(t *testing.T) {
	m := New(Config{MaxDepth: 2})
	m.UpsertTenant(Tenant{ID: "r", Type: Root})
	m.UpsertTenant(Tenant{ID: "a", Type: Nested, Parent: "r"})
	m.UpsertTenant(Tenant{ID: "b", Type: Nested, Parent: "a"}) // depth 3 > 2, via informer
	if err := m.ValidateTenant(Tenant{ID: "r", Type: Root}); err != nil {
		t.Fatalf("unchanged Root update blocked: %v", err)
	}
	if err := m.ValidateTenant(Tenant{ID: "a", Type: Nested, Parent: "r"}); err != nil {
		t.Fatalf("unchanged Nested update blocked: %v", err)
	}
}

func TestUpsertOutOfOrderAndTenantRoundTrip(t *testing.T) {
	m := New(Config{})
	m.UpsertTenant(Tenant{ID: "c", Type: Nested, Parent: "p"})
	m.UpsertAccount(AccountKey{"p", "main"}, "p")
	if m.Len() != 1 {
		t.Fatalf("Len = %d, want 1 (p is only named)", m.Len())
	}
	if _, ok := m.Tenant("p"); ok {
		t.Fatal("p known before it arrived")
	}
	if err := m.MayReference("c", "p"); err == nil || err.(*RuleError).Rule != RuleAccountOwnerUnknown {
		t.Fatalf("reference to not-yet-known parent: %v", err)
	}
	m.UpsertTenant(Tenant{ID: "p", Type: Root})
	if err := m.MayReference("c", "p"); err != nil {
		t.Fatalf("after parent arrived: %v", err)
	}
	if err := m.MayReferenceAccount("c", AccountKey{"p", "main"}); err != nil {
		t.Fatalf("by account after parent arrived: %v", err)
	}
	want := Tenant{ID: "c", Type: Nested, Parent: "p"}
	if got, ok := m.Tenant("c"); !ok || got != want {
		t.Fatalf("Tenant(c) = %+v, %v", got, ok)
	}
	// Inconsistent data is stored as given.
	odd := Tenant{ID: "odd", Type: "Weird", Parent: "c", ShadowOf: "p"}
	m.UpsertTenant(odd)
	if got, _ := m.Tenant("odd"); got != odd {
		t.Fatalf("Tenant(odd) = %+v", got)
	}
	if owner, ok := m.AccountOwner(AccountKey{"p", "main"}); !ok || owner != "p" {
		t.Fatalf("AccountOwner = %q, %v", owner, ok)
	}
	m.UpsertAccount(AccountKey{"p", "main"}, "c")
	if owner, _ := m.AccountOwner(AccountKey{"p", "main"}); owner != "c" {
		t.Fatalf("AccountOwner after move = %q", owner)
	}
	m.DeleteAccount(AccountKey{"p", "main"})
	if _, ok := m.AccountOwner(AccountKey{"p", "main"}); ok || m.AccountCount() != 0 {
		t.Fatal("account survived delete")
	}
	m.UpsertTenant(Tenant{ID: "", Type: Root})
	if m.Len() != 3 {
		t.Fatalf("Len = %d, want 3", m.Len())
	}
}

// Deleting everything must recycle every slot: the model does not grow
// under churn.
func TestSlotsRecycled(t *testing.T) {
	m := New(Config{})
	for round := range 3 {
		for i := range 100 {
			id := fmt.Sprintf("t%d-%d", round, i)
			if i == 0 {
				m.UpsertTenant(Tenant{ID: id, Type: Root})
			} else {
				m.UpsertTenant(Tenant{ID: id, Type: Nested, Parent: fmt.Sprintf("t%d-%d", round, i-1)})
			}
			m.UpsertAccount(AccountKey{id, "a"}, id)
			m.UpsertAccount(AccountKey{id, "b"}, "ghost-"+id)
		}
		for i := range 100 {
			id := fmt.Sprintf("t%d-%d", round, i)
			m.DeleteTenant(id)
			m.DeleteAccount(AccountKey{id, "a"})
			m.DeleteAccount(AccountKey{id, "b"})
		}
		if m.Len() != 0 || len(m.ids) != 0 {
			t.Fatalf("round %d: Len %d, %d interned names left", round, m.Len(), len(m.ids))
		}
	}
	if len(m.names) > 200 {
		t.Fatalf("slots grew to %d under churn", len(m.names))
	}
}

func TestMayReferenceTerminatesOnCycles(t *testing.T) {
	m := New(Config{})
	// a → b → c → d → b (cycle not through a), plus a self-parent.
	m.UpsertTenant(Tenant{ID: "a", Type: Nested, Parent: "b"})
	m.UpsertTenant(Tenant{ID: "b", Type: Nested, Parent: "c"})
	m.UpsertTenant(Tenant{ID: "c", Type: Nested, Parent: "d"})
	m.UpsertTenant(Tenant{ID: "d", Type: Nested, Parent: "b"})
	m.UpsertTenant(Tenant{ID: "s", Type: Nested, Parent: "s"})
	m.UpsertTenant(Tenant{ID: "x", Type: Root})
	for _, u := range []string{"b", "c", "d"} {
		if err := m.MayReference("a", u); err != nil {
			t.Errorf("a → %s (on its cyclic chain): %v", u, err)
		}
	}
	if err := m.MayReference("a", "x"); err == nil {
		t.Error("a → x allowed")
	}
	if err := m.MayReference("s", "x"); err == nil {
		t.Error("s → x allowed")
	}
	if err := m.ValidateTenant(Tenant{ID: "s", Type: Root}); err != nil {
		t.Errorf("fixing a self-parent: %v", err)
	}
	m.DeleteTenant("s")
	if m.Len() != 5 {
		t.Errorf("Len = %d", m.Len())
	}
}

// TestAllowedPathDoesNotAllocate guards the no-allocation promise.
func TestAllowedPathDoesNotAllocate(t *testing.T) {
	m := fixture()
	acct := AccountKey{"acme", "main"}
	n := testing.AllocsPerRun(100, func() {
		_ = m.MayReference("acme-eu-prod", "acme-dr")
		_ = m.MayReferenceAccount("acme-eu-dr", acct)
	})
	if n != 0 {
		t.Fatalf("allowed path allocates %.1f times per check", n)
	}
}

// TestConcurrentReadersAndWriters is meant for -race: readers check
// references while writers move tenants, accounts and keys around.
func TestConcurrentReadersAndWriters(t *testing.T) {
	m := fixture()
	const iters = 2000
	var readers, writers sync.WaitGroup
	stop := make(chan struct{})
	for r := range 4 {
		readers.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if err := m.MayReference("acme-eu-prod", "acme"); err != nil {
					t.Errorf("reader %d: stable reference denied: %v", r, err)
					return
				}
				_ = m.MayReference("w-child", "w-root")
				_ = m.MayReferenceAccount("acme-eu", AccountKey{"w", fmt.Sprint(i % 10)})
				_ = m.ValidateTenant(Tenant{ID: "w-child", Type: Nested, Parent: "w-root"})
				_ = m.ValidateTenantDelete("w-root")
				_ = m.ValidateAccountDelete(AccountKey{"w", "0"})
				_, _ = m.Tenant("w-child")
				_ = m.Len()
			}
		})
	}
	for w := range 2 {
		writers.Go(func() {
			for i := range iters {
				root := fmt.Sprintf("w-root-%d", w)
				m.UpsertTenant(Tenant{ID: root, Type: Root})
				m.UpsertTenant(Tenant{ID: "w-child", Type: Nested, Parent: root})
				m.UpsertTenant(Tenant{ID: "w-root", Type: Root})
				m.UpsertAccount(AccountKey{"w", fmt.Sprint(i % 10)}, root)
				m.UpsertKey(KeyRef{"w", fmt.Sprint(i % 7)}, AccountKey{"w", fmt.Sprint(i % 10)})
				if i%3 == 0 {
					m.DeleteTenant("w-child")
					m.DeleteKey(KeyRef{"w", fmt.Sprint(i % 7)})
					m.DeleteAccount(AccountKey{"w", fmt.Sprint(i % 10)})
				}
			}
		})
	}
	writers.Wait()
	close(stop)
	readers.Wait()
}
