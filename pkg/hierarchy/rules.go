package hierarchy

import (
	"fmt"
	"sort"
	"strings"
)

// Rule IDs carried in RuleError.Rule. They are stable: admission responses,
// metrics and docs/hierarchy.md refer to them. IDs named *-OK, H-REF-* and
// H-TENANT-VALID label allowed cases in the rule table and never appear in an
// error.
const (
	// Reference rule (FR-4.3).
	RuleRefSelf             = "H-REF-SELF"
	RuleRefAncestor         = "H-REF-ANCESTOR"
	RuleRefShadow           = "H-REF-SHADOW"
	RuleRefShadowTarget     = "H-REF-SHADOW-TARGET"
	RuleCrossTenant         = "H-CROSS-TENANT"
	RuleOwnerUnknown        = "H-OWNER-UNKNOWN"
	RuleAccountOwnerUnknown = "H-ACCOUNT-OWNER-UNKNOWN"
	RuleAccountUnknown      = "H-ACCOUNT-UNKNOWN"

	// Tenant writes.
	RuleTenantValid         = "H-TENANT-VALID"
	RuleIDEmpty             = "H-ID-EMPTY"
	RuleTypeInvalid         = "H-TYPE-INVALID"
	RuleRootParent          = "H-ROOT-PARENT"
	RuleRootShadowOf        = "H-ROOT-SHADOWOF"
	RuleNestedNoParent      = "H-NESTED-NO-PARENT"
	RuleNestedShadowOf      = "H-NESTED-SHADOWOF"
	RuleShadowNoTarget      = "H-SHADOW-NO-TARGET"
	RuleShadowParent        = "H-SHADOW-PARENT"
	RuleSelfRef             = "H-SELF-REF"
	RuleParentUnknown       = "H-PARENT-UNKNOWN"
	RuleShadowTargetUnknown = "H-SHADOW-TARGET-UNKNOWN"
	RuleParentShadow        = "H-PARENT-SHADOW"
	RuleShadowOfShadow      = "H-SHADOW-OF-SHADOW"
	RuleShadowHasDependents = "H-SHADOW-HAS-DEPENDENTS"
	RuleCycle               = "H-CYCLE"
	RuleDepth               = "H-DEPTH"

	// Deletes.
	RuleDeleteOK        = "H-DELETE-OK"
	RuleDeleteChildren  = "H-DELETE-CHILDREN"
	RuleDeleteShadows   = "H-DELETE-SHADOWS"
	RuleAccountDeleteOK = "H-ACCOUNT-DELETE-OK"
	RuleAccountInUse    = "H-ACCOUNT-IN-USE"
)

// JSON paths reported in RuleError.Field.
const (
	FieldName       = "metadata.name"
	FieldType       = "spec.type"
	FieldParent     = "spec.parent"
	FieldShadowOf   = "spec.shadowOf"
	FieldAccountRef = "spec.accountRef"
)

// maxNamed bounds how many dependents a message names.
const maxNamed = 5

// RuleError is returned for any rule violation. Rule is a stable identifier
// from the table in docs/hierarchy.md, Field the JSON path of the offending
// field, Msg the human-readable message.
type RuleError struct {
	Rule, Field, Msg string
}

// Error renders "field: message [RULE]".
func (e *RuleError) Error() string {
	if e.Field == "" {
		return e.Msg + " [" + e.Rule + "]"
	}
	return e.Field + ": " + e.Msg + " [" + e.Rule + "]"
}

func ruleErr(rule, field, format string, args ...any) *RuleError {
	return &RuleError{Rule: rule, Field: field, Msg: fmt.Sprintf(format, args...)}
}

// --- reference rule ---

// MayReference reports whether a ServiceEncryptionKey owned by keyOwner may
// reference an Account owned by accountOwner (FR-4.3). nil means allowed;
// otherwise the error is a *RuleError. The allowed path does not allocate.
func (m *Model) MayReference(keyOwner, accountOwner string) error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	t, ok := m.lookup(keyOwner)
	if !ok {
		return ruleErr(RuleOwnerUnknown, FieldAccountRef,
			"key owner tenant %q is not known to the hierarchy", keyOwner)
	}
	u, ok := m.lookup(accountOwner)
	if !ok {
		return ruleErr(RuleAccountOwnerUnknown, FieldAccountRef,
			"account owner tenant %q is not known to the hierarchy", accountOwner)
	}
	if m.allowed(t, u) {
		return nil
	}
	return m.crossTenant(t, u)
}

// MayReferenceAccount resolves the owner of Account k and applies
// MayReference.
func (m *Model) MayReferenceAccount(keyOwner string, k AccountKey) error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	o, ok := m.accounts[m.accountID(k)]
	if !ok {
		return ruleErr(RuleAccountUnknown, FieldAccountRef,
			"account %q is not known to the hierarchy", k.String())
	}
	t, ok := m.lookup(keyOwner)
	if !ok {
		return ruleErr(RuleOwnerUnknown, FieldAccountRef,
			"key owner tenant %q is not known to the hierarchy", keyOwner)
	}
	if o == none || m.nodes[o].kind == kindAbsent {
		owner := ""
		if o != none {
			owner = m.names[o]
		}
		return ruleErr(RuleAccountOwnerUnknown, FieldAccountRef,
			"account owner tenant %q of account %q is not known to the hierarchy", owner, k.String())
	}
	if m.allowed(t, o) {
		return nil
	}
	return m.crossTenant(t, o)
}

// allowed reports u ∈ Allowed(t) for present slots t and u:
//
//	Allowed(T) = {T} ∪ ancestors(T) ∪ shadows of T or of any ancestor   (T not a Shadow)
//	Allowed(T) = {T} ∪ Allowed(target(T))                                 (T a Shadow)
//
// Only Nested tenants contribute a parent edge and only Shadow tenants a
// target edge, whatever stray fields an informer delivered. The ancestor walk
// uses Brent's cycle detection so a cycle (possible only in informer data)
// terminates after visiting each of its members, without allocating.
func (m *Model) allowed(t, u int32) bool {
	if t == u {
		return true
	}
	start := t
	if m.nodes[t].kind == kindShadow {
		if s := m.nodes[t].target; s != none && m.nodes[s].kind != kindAbsent {
			start = s
		}
	}
	ut := none // u's target when u is a Shadow: u is allowed if that is on the chain
	if m.nodes[u].kind == kindShadow {
		ut = m.nodes[u].target
	}
	a, tortoise := start, start
	power, lam := 1, 0
	for {
		if a == u || a == ut {
			return true
		}
		if m.nodes[a].kind != kindNested {
			return false
		}
		next := m.nodes[a].parent
		if next == none || m.nodes[next].kind == kindAbsent {
			return false
		}
		if lam == power {
			tortoise, power, lam = a, power*2, 0
		}
		a = next
		lam++
		if a == tortoise {
			return false // went once round a cycle: every member was checked
		}
	}
}

func (m *Model) crossTenant(t, u int32) error {
	if m.nodes[t].kind == kindShadow && m.nodes[t].target != none && m.nodes[m.nodes[t].target].kind != kindAbsent {
		return ruleErr(RuleCrossTenant, FieldAccountRef,
			"cross-tenant reference: tenant %q may not use account of tenant %q (not itself, its shadow target %q, an ancestor of the target, or a shadow of those)",
			m.names[t], m.names[u], m.names[m.nodes[t].target])
	}
	return ruleErr(RuleCrossTenant, FieldAccountRef,
		"cross-tenant reference: tenant %q may not use account of tenant %q (not itself, an ancestor, or a shadow of either)",
		m.names[t], m.names[u])
}

// --- tenant writes ---

// ValidateTenant reports whether writing t (a create, or an update of an
// existing ID) keeps the model valid. It checks type/field consistency,
// self-reference, dangling parent or target, a Shadow parent, a shadow of a
// Shadow, turning a tenant with dependents into a Shadow, cycles and depth
// (including existing descendants). Immutability is for admission to check.
func (m *Model) ValidateTenant(t Tenant) error {
	if err := checkFields(t); err != nil {
		return err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()

	self, known := m.ids[t.ID] // may be a placeholder that already has dependents
	if !known {
		self = none
	}

	if t.Type == Shadow && self != none {
		kids, shads := m.dependents(self)
		if len(kids)+len(shads) > 0 {
			return ruleErr(RuleShadowHasDependents, FieldType,
				"tenant %q cannot become a Shadow: it has %s; a Shadow can have neither children nor shadows",
				t.ID, m.describeDependents(kids, shads))
		}
	}

	var (
		depth int
		chain []int32
		field string
	)
	switch t.Type {
	case Root:
		depth, field = 1, FieldType
	case Nested:
		field = FieldParent
		p, ok := m.lookup(t.Parent)
		if !ok {
			return ruleErr(RuleParentUnknown, field, "parent tenant %q does not exist", t.Parent)
		}
		if m.nodes[p].kind == kindShadow {
			return ruleErr(RuleParentShadow, field,
				"parent tenant %q is a Shadow; a Shadow cannot have children", t.Parent)
		}
		var cyc []int32
		depth, chain, cyc = m.walkUp(p, self)
		if cyc != nil {
			return m.cycleError(t.ID, field, self, chain, cyc)
		}
		depth++
	case Shadow:
		field = FieldShadowOf
		s, ok := m.lookup(t.ShadowOf)
		if !ok {
			return ruleErr(RuleShadowTargetUnknown, field, "shadow target tenant %q does not exist", t.ShadowOf)
		}
		if m.nodes[s].kind == kindShadow {
			return ruleErr(RuleShadowOfShadow, field,
				"shadow target tenant %q is itself a Shadow; shadows of shadows are not allowed", t.ShadowOf)
		}
		var cyc []int32
		depth, chain, cyc = m.walkUp(s, self)
		if cyc != nil {
			return m.cycleError(t.ID, field, self, chain, cyc)
		}
	}
	if depth > m.maxDepth {
		return ruleErr(RuleDepth, field,
			"tenant %q would be at depth %d, deeper than the maximum of %d (chain: %s)",
			t.ID, depth, m.maxDepth, m.pathString(t.ID, chain))
	}

	// Existing descendants move with the tenant. Only check them when the
	// write can push them down (the tenant is new — it may adopt children
	// that arrived first — or gets deeper), so an unrelated update is not
	// blocked by a limit that was lowered after the tree was built.
	if self != none && t.Type != Shadow && len(m.kids[self]) > 0 {
		if m.nodes[self].kind == kindAbsent || depth > m.currentDepth(self) {
			h, deepest := m.height(self)
			if depth+h > m.maxDepth {
				return ruleErr(RuleDepth, field,
					"tenant %q at depth %d would put its descendant %q at depth %d, deeper than the maximum of %d",
					t.ID, depth, m.names[deepest], depth+h, m.maxDepth)
			}
		}
	}
	return nil
}

// checkFields validates what needs no model: ID, type and field consistency,
// self-reference.
func checkFields(t Tenant) error {
	if t.ID == "" {
		return ruleErr(RuleIDEmpty, FieldName, "tenant ID must not be empty")
	}
	switch t.Type {
	case Root:
		if t.Parent != "" {
			return ruleErr(RuleRootParent, FieldParent,
				"a Root tenant has no parent, got parent %q", t.Parent)
		}
		if t.ShadowOf != "" {
			return ruleErr(RuleRootShadowOf, FieldShadowOf,
				"a Root tenant is not a shadow, got shadowOf %q", t.ShadowOf)
		}
	case Nested:
		if t.Parent == "" {
			return ruleErr(RuleNestedNoParent, FieldParent, "a Nested tenant requires a parent")
		}
		if t.ShadowOf != "" {
			return ruleErr(RuleNestedShadowOf, FieldShadowOf,
				"a Nested tenant is not a shadow, got shadowOf %q", t.ShadowOf)
		}
	case Shadow:
		if t.ShadowOf == "" {
			return ruleErr(RuleShadowNoTarget, FieldShadowOf, "a Shadow tenant requires shadowOf")
		}
		if t.Parent != "" {
			return ruleErr(RuleShadowParent, FieldParent,
				"a Shadow tenant has no parent (it inherits its place from shadowOf), got parent %q", t.Parent)
		}
	default:
		return ruleErr(RuleTypeInvalid, FieldType,
			"tenant type %q is not one of Root, Nested, Shadow", t.Type)
	}
	if t.Parent == t.ID {
		return ruleErr(RuleSelfRef, FieldParent, "tenant %q cannot be its own parent", t.ID)
	}
	if t.ShadowOf == t.ID {
		return ruleErr(RuleSelfRef, FieldShadowOf, "tenant %q cannot be a shadow of itself", t.ID)
	}
	return nil
}

// walkUp follows effective parent edges from a (a itself included) and
// returns a's depth and the chain walked. If the chain reaches self, or loops
// on itself, cyc is the looping part (self first, or the repeated member
// first). A dangling ancestor counts as one level: it must be at least a Root
// when it arrives.
func (m *Model) walkUp(a, self int32) (depth int, chain, cyc []int32) {
	seen := make(map[int32]int, 8)
	for {
		if a == self {
			return 0, chain, append([]int32{self}, chain...)
		}
		if at, ok := seen[a]; ok {
			return 0, chain, append(chain[at:len(chain):len(chain)], a)
		}
		seen[a] = len(chain)
		chain = append(chain, a)
		if m.nodes[a].kind != kindNested {
			return len(chain), chain, nil
		}
		next := m.nodes[a].parent
		if next == none {
			return len(chain), chain, nil
		}
		if m.nodes[next].kind == kindAbsent && next != self {
			chain = append(chain, next)
			return len(chain), chain, nil
		}
		a = next
	}
}

func (m *Model) cycleError(id, field string, self int32, chain, cyc []int32) error {
	if self != none && len(cyc) > 0 && cyc[0] == self {
		return ruleErr(RuleCycle, field, "tenant %q would form a cycle: %s",
			id, m.pathString(id, append(chain, self)))
	}
	names := make([]string, len(cyc))
	for i, c := range cyc {
		names[i] = m.names[c]
	}
	return ruleErr(RuleCycle, field,
		"the parent chain of %q already contains a cycle (%s); fix those tenants first",
		m.names[chain[0]], strings.Join(names, " → "))
}

func (m *Model) pathString(first string, chain []int32) string {
	var b strings.Builder
	b.WriteString(first)
	for _, c := range chain {
		b.WriteString(" → ")
		b.WriteString(m.names[c])
	}
	return b.String()
}

// currentDepth is the depth of a present tenant in the model as it stands,
// or MaxInt when its chain is cyclic (so any write counts as not deeper).
func (m *Model) currentDepth(i int32) int {
	a := i
	if m.nodes[a].kind == kindShadow && m.nodes[a].target != none {
		a = m.nodes[a].target
	}
	d, _, cyc := m.walkUp(a, none)
	if cyc != nil {
		return int(^uint(0) >> 1)
	}
	return d
}

// height is the number of Nested levels below i and the deepest descendant.
func (m *Model) height(i int32) (int, int32) {
	type item struct {
		n int32
		h int
	}
	seen := map[int32]bool{i: true}
	stack := []item{{i, 0}}
	best, deepest := 0, i
	for len(stack) > 0 {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if it.h > best {
			best, deepest = it.h, it.n
		}
		for _, c := range m.kids[it.n] {
			if m.nodes[c].kind != kindNested || seen[c] {
				continue
			}
			seen[c] = true
			stack = append(stack, item{c, it.h + 1})
		}
	}
	return best, deepest
}

// dependents are the present tenants naming i as parent or as shadow target,
// other than i itself.
func (m *Model) dependents(i int32) (kids, shads []string) {
	for _, c := range m.kids[i] {
		if c != i {
			kids = append(kids, m.names[c])
		}
	}
	for _, s := range m.shads[i] {
		if s != i {
			shads = append(shads, m.names[s])
		}
	}
	sort.Strings(kids)
	sort.Strings(shads)
	return kids, shads
}

func (m *Model) describeDependents(kids, shads []string) string {
	var parts []string
	if len(kids) > 0 {
		parts = append(parts, countNamed(len(kids), "child", "children", kids))
	}
	if len(shads) > 0 {
		parts = append(parts, countNamed(len(shads), "shadow", "shadows", shads))
	}
	return strings.Join(parts, " and ")
}

// countNamed renders `3 children (a, b, c)`, naming at most maxNamed.
func countNamed(n int, one, many string, names []string) string {
	noun := many
	if n == 1 {
		noun = one
	}
	shown := names
	more := ""
	if len(shown) > maxNamed {
		shown = shown[:maxNamed]
		more = ", …"
	}
	return fmt.Sprintf("%d %s (%s%s)", n, noun, strings.Join(shown, ", "), more)
}

// --- deletes ---

// ValidateTenantDelete denies deleting a tenant while tenants name it as
// parent or shadow target (up to five are named, with the total count).
// Deleting a tenant the model does not know, and nothing names, is allowed.
func (m *Model) ValidateTenantDelete(id string) error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	i, ok := m.ids[id]
	if !ok {
		return nil
	}
	kids, shads := m.dependents(i)
	switch {
	case len(kids) > 0:
		return ruleErr(RuleDeleteChildren, FieldName,
			"tenant %q still has %s; delete them first", id, m.describeDependents(kids, shads))
	case len(shads) > 0:
		return ruleErr(RuleDeleteShadows, FieldName,
			"tenant %q is still the target of %s; delete them first", id, countNamed(len(shads), "shadow", "shadows", shads))
	}
	return nil
}

// ValidateAccountDelete denies deleting an Account while ServiceEncryptionKeys
// reference it (up to five are named, with the total count).
func (m *Model) ValidateAccountDelete(k AccountKey) error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	set := m.keysByAccount[k]
	if len(set) == 0 {
		return nil
	}
	names := make([]string, 0, len(set))
	for r := range set {
		names = append(names, r.String())
	}
	sort.Strings(names)
	return ruleErr(RuleAccountInUse, FieldName,
		"account %q is still referenced by %s; delete them first",
		k.String(), countNamed(len(names), "ServiceEncryptionKey", "ServiceEncryptionKeys", names))
}
