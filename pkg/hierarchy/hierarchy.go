package hierarchy

import (
	"hash/maphash"
	"sync"
)

// Type is a tenant's place in the hierarchy.
type Type string

const (
	// Root is the top of a tree: no parent, no shadow target.
	Root Type = "Root"
	// Nested has exactly one parent, which is a Root or a Nested tenant.
	Nested Type = "Nested"
	// Shadow is a replica of a Root or Nested tenant. It has no parent and can
	// have neither children nor shadows.
	Shadow Type = "Shadow"
)

// DefaultMaxDepth is the depth limit used when Config.MaxDepth is 0.
const DefaultMaxDepth = 8

// Tenant is the hierarchy-relevant part of a Tenant object.
type Tenant struct {
	ID       string
	Type     Type
	Parent   string // set only for Nested
	ShadowOf string // set only for Shadow
}

// AccountKey names an Account object.
type AccountKey struct{ Namespace, Name string }

// String renders the key as namespace/name (or name alone when cluster-scoped).
func (k AccountKey) String() string { return joinNsName(k.Namespace, k.Name) }

// KeyRef names a ServiceEncryptionKey object.
type KeyRef struct{ Namespace, Name string }

// String renders the key as namespace/name (or name alone when cluster-scoped).
func (k KeyRef) String() string { return joinNsName(k.Namespace, k.Name) }

func joinNsName(ns, name string) string {
	if ns == "" {
		return name
	}
	return ns + "/" + name
}

// Config tunes a Model.
type Config struct {
	// MaxDepth bounds tenant depth (a Root has depth 1). 0 means
	// DefaultMaxDepth; negative values are treated as 0.
	MaxDepth int
}

// kind is the compact form of Type kept per slot. kindAbsent marks a slot
// that exists only because something refers to its name (a parent that has
// not arrived yet, the owner of an Account) — it is not a known tenant.
type kind uint8

const (
	kindAbsent kind = iota
	kindRoot
	kindNested
	kindShadow
	kindOther // an unrecognised Type string received from an informer
)

func kindOf(t Type) kind {
	switch t {
	case Root:
		return kindRoot
	case Nested:
		return kindNested
	case Shadow:
		return kindShadow
	default:
		return kindOther
	}
}

const none int32 = -1

// node is the per-slot data the reference check reads. Keeping it in one
// array (12 bytes per slot) costs one memory access per ancestor.
type node struct {
	parent int32 // raw Parent edge as received, none if empty
	target int32 // raw ShadowOf edge as received, none if empty
	kind   kind
}

// Model is the indexed, concurrency-safe hierarchy model. Create it with New.
//
// Each tenant name is interned into a slot (an int32 index). A slot lives as
// long as something refers to it: the tenant itself, a tenant naming it as
// parent or shadow target, or an Account naming it as owner; then it is
// recycled through a free list, so churn does not grow the model.
type Model struct {
	maxDepth int

	mu sync.RWMutex

	ids   map[string]int32
	names []string
	nodes []node  // hot per-slot data, one cache line access per walk step
	refs  []int32 // presence + incoming edges + owned accounts

	// kids[p] / shads[s] list the present tenants whose Parent / ShadowOf
	// names p / s. kpos / spos are each tenant's position in that list, so an
	// edge is removed in O(1).
	kids  [][]int32
	kpos  []int32
	shads [][]int32
	spos  []int32

	free    []int32
	present int

	otherType map[int32]Type // raw Type of kindOther slots

	// accounts maps an Account (by accountID, see there) to its owner slot, none if it has no owner.
	accounts      map[accountID]int32
	seedA, seedB  maphash.Seed
	keys          map[KeyRef]AccountKey
	keysByAccount map[AccountKey]map[KeyRef]struct{}
}

// New returns an empty Model.
func New(cfg Config) *Model {
	d := cfg.MaxDepth
	if d <= 0 {
		d = DefaultMaxDepth
	}
	return &Model{
		maxDepth:      d,
		ids:           make(map[string]int32),
		otherType:     make(map[int32]Type),
		accounts:      make(map[accountID]int32),
		seedA:         maphash.MakeSeed(),
		seedB:         maphash.MakeSeed(),
		keys:          make(map[KeyRef]AccountKey),
		keysByAccount: make(map[AccountKey]map[KeyRef]struct{}),
	}
}

// MaxDepth reports the effective depth limit.
func (m *Model) MaxDepth() int { return m.maxDepth }

// --- slot management (callers hold m.mu for writing) ---

func (m *Model) intern(name string) int32 {
	if i, ok := m.ids[name]; ok {
		return i
	}
	var i int32
	if n := len(m.free); n > 0 {
		i = m.free[n-1]
		m.free = m.free[:n-1]
		m.names[i] = name
		m.nodes[i].kind = kindAbsent
		m.nodes[i].parent, m.nodes[i].target = none, none
		m.refs[i] = 0
		m.kpos[i], m.spos[i] = none, none
	} else {
		i = int32(len(m.names))
		m.names = append(m.names, name)
		m.nodes = append(m.nodes, node{parent: none, target: none})
		m.refs = append(m.refs, 0)
		m.kids = append(m.kids, nil)
		m.kpos = append(m.kpos, none)
		m.shads = append(m.shads, nil)
		m.spos = append(m.spos, none)
	}
	m.ids[name] = i
	return i
}

func (m *Model) unref(i int32) {
	m.refs[i]--
	if m.refs[i] > 0 {
		return
	}
	// Nothing names this slot any more: recycle it.
	delete(m.ids, m.names[i])
	m.names[i] = ""
	m.kids[i], m.shads[i] = nil, nil
	m.nodes[i].kind = kindAbsent
	m.free = append(m.free, i)
}

func (m *Model) setParent(i int32, name string) {
	if old := m.nodes[i].parent; old != none {
		if name != "" && m.names[old] == name {
			return
		}
		removeEdge(m.kids, m.kpos, old, i)
		m.nodes[i].parent = none
		m.unref(old)
	}
	if name == "" {
		return
	}
	p := m.intern(name)
	m.refs[p]++
	m.kpos[i] = int32(len(m.kids[p]))
	m.kids[p] = append(m.kids[p], i)
	m.nodes[i].parent = p
}

func (m *Model) setTarget(i int32, name string) {
	if old := m.nodes[i].target; old != none {
		if name != "" && m.names[old] == name {
			return
		}
		removeEdge(m.shads, m.spos, old, i)
		m.nodes[i].target = none
		m.unref(old)
	}
	if name == "" {
		return
	}
	s := m.intern(name)
	m.refs[s]++
	m.spos[i] = int32(len(m.shads[s]))
	m.shads[s] = append(m.shads[s], i)
	m.nodes[i].target = s
}

// removeEdge swap-removes i from lists[from], keeping pos consistent.
func removeEdge(lists [][]int32, pos []int32, from, i int32) {
	l := lists[from]
	at := pos[i]
	last := l[len(l)-1]
	l[at] = last
	pos[last] = at
	l = l[:len(l)-1]
	if len(l) == 0 {
		l = nil
	}
	lists[from] = l
	pos[i] = none
}

// lookup returns the slot of a present tenant.
func (m *Model) lookup(id string) (int32, bool) {
	i, ok := m.ids[id]
	if !ok || m.nodes[i].kind == kindAbsent {
		return none, false
	}
	return i, true
}

// --- tenants ---

// UpsertTenant records t as observed by an informer. It never validates:
// dangling parents, cycles and type/field mismatches are stored as given and
// tolerated by every read. A Tenant with an empty ID is ignored.
func (m *Model) UpsertTenant(t Tenant) {
	if t.ID == "" {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	i := m.intern(t.ID)
	if m.nodes[i].kind == kindAbsent {
		m.refs[i]++ // presence
		m.present++
	}
	k := kindOf(t.Type)
	m.nodes[i].kind = k
	if k == kindOther {
		m.otherType[i] = t.Type
	} else {
		delete(m.otherType, i)
	}
	m.setParent(i, t.Parent)
	m.setTarget(i, t.ShadowOf)
}

// DeleteTenant forgets a tenant. Its children and shadows keep naming it
// (they become dangling until they are deleted or re-pointed).
func (m *Model) DeleteTenant(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	i, ok := m.lookup(id)
	if !ok {
		return
	}
	// Hold the slot while detaching so a self-edge cannot recycle it early.
	m.setParent(i, "")
	m.setTarget(i, "")
	m.nodes[i].kind = kindAbsent
	delete(m.otherType, i)
	m.present--
	m.unref(i)
}

// Tenant returns the tenant as last upserted.
func (m *Model) Tenant(id string) (Tenant, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	i, ok := m.lookup(id)
	if !ok {
		return Tenant{}, false
	}
	return m.tenantAt(i), true
}

func (m *Model) tenantAt(i int32) Tenant {
	t := Tenant{ID: m.names[i], Type: m.typeAt(i)}
	if p := m.nodes[i].parent; p != none {
		t.Parent = m.names[p]
	}
	if s := m.nodes[i].target; s != none {
		t.ShadowOf = m.names[s]
	}
	return t
}

func (m *Model) typeAt(i int32) Type {
	switch m.nodes[i].kind {
	case kindRoot:
		return Root
	case kindNested:
		return Nested
	case kindShadow:
		return Shadow
	case kindOther:
		return m.otherType[i]
	}
	return ""
}

// Len is the number of known tenants.
func (m *Model) Len() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.present
}

// --- accounts and keys ---

// accountID is a 128-bit keyed hash of an AccountKey, the key of the Account index. With a million Accounts the
// index is far larger than the CPU caches, and a lookup by the two strings compares them in the slot, i.e. follows
// two pointers to wherever the informer allocated the stored names: two more likely cache and TLB misses per check.
// The 16 bytes of an accountID sit in the slot itself, and a slot shrinks from 40 to 24 bytes. The two seeds are
// random per Model, so names cannot be chosen to collide; two distinct keys share an ID with probability 2^-128
// (about 10^-27 for any pair among a million Accounts).
type accountID struct{ a, b uint64 }

func (m *Model) accountID(k AccountKey) accountID {
	return accountID{maphash.Comparable(m.seedA, k), maphash.Comparable(m.seedB, k)}
}

// UpsertAccount records that the Account k is owned by tenant owner (which
// need not be known yet).
func (m *Model) UpsertAccount(k AccountKey, owner string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	o := none
	if owner != "" {
		o = m.intern(owner)
		m.refs[o]++
	}
	id := m.accountID(k)
	if old, ok := m.accounts[id]; ok && old != none {
		m.unref(old)
	}
	m.accounts[id] = o
}

// DeleteAccount forgets an Account. Keys that reference it are kept.
func (m *Model) DeleteAccount(k AccountKey) {
	m.mu.Lock()
	defer m.mu.Unlock()
	id := m.accountID(k)
	old, ok := m.accounts[id]
	if !ok {
		return
	}
	delete(m.accounts, id)
	if old != none {
		m.unref(old)
	}
}

// AccountOwner returns the owner recorded for k.
func (m *Model) AccountOwner(k AccountKey) (string, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	o, ok := m.accounts[m.accountID(k)]
	if !ok {
		return "", false
	}
	if o == none {
		return "", true
	}
	return m.names[o], true
}

// AccountCount is the number of known Accounts.
func (m *Model) AccountCount() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.accounts)
}

// UpsertKey records that the ServiceEncryptionKey k references account.
func (m *Model) UpsertKey(k KeyRef, account AccountKey) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, ok := m.keys[k]; ok {
		if old == account {
			return
		}
		m.dropKey(k, old)
	}
	m.keys[k] = account
	set := m.keysByAccount[account]
	if set == nil {
		set = make(map[KeyRef]struct{})
		m.keysByAccount[account] = set
	}
	set[k] = struct{}{}
}

// DeleteKey forgets a ServiceEncryptionKey.
func (m *Model) DeleteKey(k KeyRef) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, ok := m.keys[k]; ok {
		m.dropKey(k, old)
		delete(m.keys, k)
	}
}

func (m *Model) dropKey(k KeyRef, account AccountKey) {
	set := m.keysByAccount[account]
	delete(set, k)
	if len(set) == 0 {
		delete(m.keysByAccount, account)
	}
}
