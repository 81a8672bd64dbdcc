package hierarchy

import (
	"fmt"
	"testing"
)

var fuzzNames = []string{"a", "b", "c", "d", "e", "f"}

const fuzzMaxDepth = 3

// FuzzModel drives the model with random sequences of upserts, deletes and
// checks. In every mode nothing panics, MayReference(T, T) is nil for every
// known T, Tenant/Len/AccountOwner mirror what was written and the internal
// indexes stay consistent. In validated mode (only writes and deletes the
// model approves are applied) it also checks, against naive reference
// implementations, that ValidateTenant approves exactly the writes that keep
// the whole hierarchy valid and that MayReference answers exactly Allowed(T).
func FuzzModel(f *testing.F) {
	f.Add([]byte{1, 0, 0, 6, 6, 0, 1, 1, 0, 6, 0, 2, 3, 6, 6, 1, 6, 0, 1, 2, 0, 1})
	f.Add([]byte{0, 0, 1, 1, 6, 0, 2, 1, 0, 6, 0, 0, 1, 1, 6, 1, 0, 6, 6, 0, 3})
	f.Add([]byte{1, 0, 0, 0, 6, 0, 1, 1, 0, 6, 0, 2, 1, 1, 6, 0, 3, 1, 2, 6, 2, 0, 0, 0, 4, 0, 0, 1, 0, 3, 0})
	f.Add([]byte{0, 0, 1, 1, 1, 0, 0, 2, 2, 6, 1, 0, 2, 3, 3, 0, 4, 1, 2, 6, 1, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		validated := data[0]&1 == 1
		data = data[1:]
		next := func() int {
			if len(data) == 0 {
				return 0
			}
			b := data[0]
			data = data[1:]
			return int(b)
		}
		name := func() string {
			i := next() % (len(fuzzNames) + 1)
			if i == len(fuzzNames) {
				return ""
			}
			return fuzzNames[i]
		}

		m := New(Config{MaxDepth: fuzzMaxDepth})
		tenants := map[string]Tenant{}
		accounts := map[AccountKey]string{}
		keys := map[KeyRef]AccountKey{}

		for steps := 0; len(data) > 0 && steps < 200; steps++ {
			switch next() % 7 {
			case 0:
				types := []Type{Root, Nested, Shadow, "Bad"}
				tn := Tenant{ID: name(), Type: types[next()%4], Parent: name(), ShadowOf: name()}
				err := m.ValidateTenant(tn)
				if validated {
					after := cloneTenants(tenants)
					after[tn.ID] = tn
					want := tn.ID != "" && naiveValid(after)
					if (err == nil) != want {
						t.Fatalf("ValidateTenant(%+v) = %v, naive valid = %v; model %v", tn, err, want, tenants)
					}
					if err != nil {
						continue
					}
				}
				m.UpsertTenant(tn)
				if tn.ID != "" {
					tenants[tn.ID] = tn
				}
			case 1:
				id := name()
				err := m.ValidateTenantDelete(id)
				if validated {
					want := true
					for _, o := range tenants {
						if id != "" && o.ID != id && (o.Parent == id || o.ShadowOf == id) {
							want = false
						}
					}
					if (err == nil) != want {
						t.Fatalf("ValidateTenantDelete(%q) = %v, want allowed %v; model %v", id, err, want, tenants)
					}
					if err != nil {
						continue
					}
				}
				m.DeleteTenant(id)
				delete(tenants, id)
			case 2:
				k, owner := AccountKey{"ns", fmt.Sprint(next() % 4)}, name()
				m.UpsertAccount(k, owner)
				accounts[k] = owner
			case 3:
				k := AccountKey{"ns", fmt.Sprint(next() % 4)}
				err := m.ValidateAccountDelete(k)
				inUse := false
				for _, a := range keys {
					inUse = inUse || a == k
				}
				if (err != nil) != inUse {
					t.Fatalf("ValidateAccountDelete(%v) = %v, in use %v", k, err, inUse)
				}
				if validated && err != nil {
					continue
				}
				m.DeleteAccount(k)
				delete(accounts, k)
			case 4:
				k, a := KeyRef{"ns", fmt.Sprint(next() % 4)}, AccountKey{"ns", fmt.Sprint(next() % 4)}
				m.UpsertKey(k, a)
				keys[k] = a
			case 5:
				k := KeyRef{"ns", fmt.Sprint(next() % 4)}
				m.DeleteKey(k)
				delete(keys, k)
			case 6:
				kt, k := name(), AccountKey{"ns", fmt.Sprint(next() % 4)}
				err := m.MayReferenceAccount(kt, k)
				if _, ok := accounts[k]; !ok && (err == nil || err.(*RuleError).Rule != RuleAccountUnknown) {
					t.Fatalf("MayReferenceAccount(%q, unknown %v) = %v", kt, k, err)
				}
			}
			checkModel(t, m, validated, tenants, accounts)
		}
	})
}

func checkModel(t *testing.T, m *Model, validated bool, tenants map[string]Tenant, accounts map[AccountKey]string) {
	t.Helper()
	if m.Len() != len(tenants) {
		t.Fatalf("Len = %d, want %d", m.Len(), len(tenants))
	}
	for _, id := range fuzzNames {
		want, known := tenants[id]
		got, ok := m.Tenant(id)
		if ok != known || got != want {
			t.Fatalf("Tenant(%q) = %+v, %v; want %+v, %v", id, got, ok, want, known)
		}
		if known {
			if err := m.MayReference(id, id); err != nil {
				t.Fatalf("MayReference(%q, itself) = %v", id, err)
			}
		} else if err := m.MayReference(id, id); err == nil {
			t.Fatalf("MayReference(%q, itself) allowed for an unknown tenant", id)
		}
	}
	for k, owner := range accounts {
		if got, ok := m.AccountOwner(k); !ok || got != owner {
			t.Fatalf("AccountOwner(%v) = %q, %v; want %q", k, got, ok, owner)
		}
	}
	if m.AccountCount() != len(accounts) {
		t.Fatalf("AccountCount = %d, want %d", m.AccountCount(), len(accounts))
	}
	checkIndexes(t, m)
	if !validated {
		return
	}
	if !naiveValid(tenants) {
		t.Fatalf("validated model became invalid: %v", tenants)
	}
	for _, a := range fuzzNames {
		for _, b := range fuzzNames {
			_, ka := tenants[a]
			_, kb := tenants[b]
			err := m.MayReference(a, b)
			want := ka && kb && naiveAllowed(tenants, a, b)
			if (err == nil) != want {
				t.Fatalf("MayReference(%q, %q) = %v, naive allowed %v; model %v", a, b, err, want, tenants)
			}
		}
	}
}

// checkIndexes recomputes the model's derived indexes from the raw edges.
func checkIndexes(t *testing.T, m *Model) {
	t.Helper()
	m.mu.RLock()
	defer m.mu.RUnlock()
	refs := make([]int32, len(m.names))
	present := 0
	for i := range m.names {
		if m.nodes[i].kind != kindAbsent {
			refs[i]++
			present++
		}
		if p := m.nodes[i].parent; p != none {
			refs[p]++
			if m.kids[p][m.kpos[i]] != int32(i) {
				t.Fatalf("kids index of %q broken", m.names[i])
			}
		}
		if s := m.nodes[i].target; s != none {
			refs[s]++
			if m.shads[s][m.spos[i]] != int32(i) {
				t.Fatalf("shadow index of %q broken", m.names[i])
			}
		}
	}
	for _, o := range m.accounts {
		if o != none {
			refs[o]++
		}
	}
	free := map[int32]bool{}
	for _, i := range m.free {
		free[i] = true
	}
	for i := range m.names {
		if free[int32(i)] {
			if refs[i] != 0 || m.names[i] != "" {
				t.Fatalf("free slot %d still referenced", i)
			}
			continue
		}
		if refs[i] != m.refs[i] {
			t.Fatalf("refs[%q] = %d, recomputed %d", m.names[i], m.refs[i], refs[i])
		}
		if m.ids[m.names[i]] != int32(i) {
			t.Fatalf("ids[%q] != %d", m.names[i], i)
		}
		if len(m.kids[i]) > 0 || len(m.shads[i]) > 0 {
			for _, c := range m.kids[i] {
				if m.nodes[c].parent != int32(i) {
					t.Fatalf("%q listed as child of %q", m.names[c], m.names[i])
				}
			}
			for _, c := range m.shads[i] {
				if m.nodes[c].target != int32(i) {
					t.Fatalf("%q listed as shadow of %q", m.names[c], m.names[i])
				}
			}
		}
	}
	if present != m.present || len(m.ids)+len(m.free) != len(m.names) {
		t.Fatalf("present %d/%d, ids %d + free %d != slots %d", present, m.present, len(m.ids), len(m.free), len(m.names))
	}
}

func cloneTenants(in map[string]Tenant) map[string]Tenant {
	out := make(map[string]Tenant, len(in)+1)
	for k, v := range in {
		out[k] = v
	}
	return out
}

// naiveValid checks the whole hierarchy against the rules, straight from
// their definition.
func naiveValid(ts map[string]Tenant) bool {
	for id, t := range ts {
		switch t.Type {
		case Root:
			if t.Parent != "" || t.ShadowOf != "" {
				return false
			}
		case Nested:
			p, ok := ts[t.Parent]
			if t.ShadowOf != "" || !ok || t.Parent == id || p.Type == Shadow {
				return false
			}
		case Shadow:
			s, ok := ts[t.ShadowOf]
			if t.Parent != "" || !ok || t.ShadowOf == id || s.Type == Shadow {
				return false
			}
		default:
			return false
		}
		d, ok := naiveDepth(ts, id)
		if !ok || d > fuzzMaxDepth {
			return false
		}
	}
	return true
}

func naiveDepth(ts map[string]Tenant, id string) (int, bool) {
	t := ts[id]
	if t.Type == Shadow {
		t = ts[t.ShadowOf]
	}
	for d := 1; d <= len(ts)+1; d++ {
		if t.Type != Nested {
			return d, true
		}
		t = ts[t.Parent]
	}
	return 0, false // cycle
}

// naiveAllowed is Allowed(T) from docs/hierarchy.md, for a valid hierarchy.
func naiveAllowed(ts map[string]Tenant, t, u string) bool {
	if t == u {
		return true
	}
	s := ts[t]
	if s.Type == Shadow {
		s = ts[s.ShadowOf]
	}
	chain := map[string]bool{}
	for {
		chain[s.ID] = true
		if s.Type != Nested {
			break
		}
		s = ts[s.Parent]
	}
	ut := ts[u]
	return chain[u] || (ut.Type == Shadow && chain[ut.ShadowOf])
}
