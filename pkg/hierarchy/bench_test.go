package hierarchy

import (
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
)

const (
	benchTenants  = 100_000
	benchRoots    = 1_000
	benchAccounts = 1_000_000
)

// benchForest is a generated hierarchy: benchRoots Roots, then Nested tenants
// (half of them extend the previous chain, so depth 8 is common) and 10%
// Shadows. depth and root are kept for building queries.
type benchForest struct {
	tenants []Tenant
	depth   []int
	parent  []int // index into tenants, -1 for none
	target  []int
}

func genForest(n int) *benchForest {
	rng := rand.New(rand.NewPCG(1, 2))
	f := &benchForest{}
	var nonShadow []int
	add := func(t Tenant, d, p, s int) {
		f.tenants = append(f.tenants, t)
		f.depth = append(f.depth, d)
		f.parent = append(f.parent, p)
		f.target = append(f.target, s)
	}
	last := -1
	for i := range n {
		id := "tenant-" + strconv.Itoa(i)
		switch {
		case i < benchRoots:
			add(Tenant{ID: id, Type: Root}, 1, -1, -1)
			nonShadow = append(nonShadow, i)
			last = i
		case rng.IntN(10) == 0:
			s := nonShadow[rng.IntN(len(nonShadow))]
			add(Tenant{ID: id, Type: Shadow, ShadowOf: f.tenants[s].ID}, f.depth[s], -1, s)
		default:
			p := last
			if rng.IntN(2) == 0 || f.depth[p] >= DefaultMaxDepth {
				for p = nonShadow[rng.IntN(len(nonShadow))]; f.depth[p] >= DefaultMaxDepth; p = nonShadow[rng.IntN(len(nonShadow))] {
				}
			}
			add(Tenant{ID: id, Type: Nested, Parent: f.tenants[p].ID}, f.depth[p]+1, p, -1)
			nonShadow = append(nonShadow, i)
			last = i
		}
	}
	return f
}

// rootOf is the root index of a non-shadow tenant.
func (f *benchForest) rootOf(i int) int {
	for f.parent[i] >= 0 {
		i = f.parent[i]
	}
	return i
}

// accountOf is the j-th Account of tenant i (each tenant owns
// benchAccounts/benchTenants of them).
func accountOf(i, j int) AccountKey {
	return AccountKey{Namespace: "tenant-" + strconv.Itoa(i), Name: "acct-" + strconv.Itoa(j)}
}

func (f *benchForest) build(m *Model, accounts int, clone bool) {
	c := func(s string) string { return s }
	if clone { // make the model's strings part of the measured heap
		c = strings.Clone
	}
	for _, t := range f.tenants {
		m.UpsertTenant(Tenant{ID: c(t.ID), Type: t.Type, Parent: c(t.Parent), ShadowOf: c(t.ShadowOf)})
	}
	n := len(f.tenants)
	for a := range accounts {
		k := accountOf(a%n, a/n)
		m.UpsertAccount(k, f.tenants[a%n].ID)
	}
}

var (
	benchOnce  sync.Once
	benchF     *benchForest
	benchModel *Model
)

// benchSetup builds, once per test binary run, the 100k-tenant model with 1M
// Accounts shared by the reference benchmarks.
func benchSetup(b *testing.B) (*benchForest, *Model) {
	b.Helper()
	benchOnce.Do(func() {
		benchF = genForest(benchTenants)
		benchModel = New(Config{})
		benchF.build(benchModel, benchAccounts, false)
	})
	return benchF, benchModel
}

// settle finishes the garbage collection the (large) setup left pending, so
// it does not run concurrently with — and get billed to — the timed loop.
func settle() { runtime.GC() }

type refQuery struct {
	keyOwner, accountOwner string
	account                AccountKey
}

// queries returns 4096 checks of the given kind:
//
//	deepest: a depth-8 tenant uses a shadow of its root (walks all 8 levels)
//	mixed:   a random tenant uses a random member of Allowed(T)
//	denied:  a random tenant uses a tenant of another root's tree
func (f *benchForest) queries(kind string) []refQuery { return f.queriesN(kind, 4096) }

// queriesN returns count checks of the given kind.
func (f *benchForest) queriesN(kind string, count int) []refQuery {
	rng := rand.New(rand.NewPCG(3, 4))
	n := len(f.tenants)
	perTenant := benchAccounts / benchTenants
	shadowsOf := map[int][]int{}
	for i, s := range f.target {
		if s >= 0 {
			shadowsOf[s] = append(shadowsOf[s], i)
		}
	}
	q := make([]refQuery, 0, count)
	for len(q) < cap(q) {
		t := rng.IntN(n)
		start := t
		if f.target[t] >= 0 {
			start = f.target[t]
		}
		var u int
		switch kind {
		case "deepest":
			if f.depth[t] != DefaultMaxDepth || f.target[t] >= 0 {
				continue
			}
			r := f.rootOf(t)
			if len(shadowsOf[r]) == 0 {
				continue
			}
			u = shadowsOf[r][0]
		case "mixed":
			var allowed []int
			for a := start; a >= 0; a = f.parent[a] {
				allowed = append(allowed, a)
				allowed = append(allowed, shadowsOf[a]...)
			}
			u = allowed[rng.IntN(len(allowed))]
		case "denied":
			u = rng.IntN(n)
			su := u
			if f.target[u] >= 0 {
				su = f.target[u]
			}
			if f.rootOf(su) == f.rootOf(start) {
				continue
			}
		}
		q = append(q, refQuery{f.tenants[t].ID, f.tenants[u].ID, accountOf(u, rng.IntN(perTenant))})
	}
	return q
}

// BenchmarkMayReference: 100k tenants (depth ≤ 8, 10% shadows), 1M accounts.
func BenchmarkMayReference(b *testing.B) {
	f, m := benchSetup(b)
	for _, kind := range []string{"deepest", "mixed", "denied"} {
		q := f.queries(kind)
		b.Run(kind, func(b *testing.B) {
			settle()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				r := q[i&4095]
				err := m.MayReference(r.keyOwner, r.accountOwner)
				if (err == nil) != (kind != "denied") {
					b.Fatalf("%s: MayReference(%q, %q) = %v", kind, r.keyOwner, r.accountOwner, err)
				}
				i++
			}
		})
	}
}

// BenchmarkMayReferenceAccount resolves one of 1M Accounts, then applies the
// rule.
func BenchmarkMayReferenceAccount(b *testing.B) {
	f, m := benchSetup(b)
	if got := m.AccountCount(); got != benchAccounts {
		b.Fatalf("AccountCount = %d", got)
	}
	for _, kind := range []string{"deepest", "mixed"} {
		q := f.queries(kind)
		b.Run(kind, func(b *testing.B) {
			settle()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				r := q[i&4095]
				if err := m.MayReferenceAccount(r.keyOwner, r.account); err != nil {
					b.Fatalf("MayReferenceAccount(%q, %v) = %v", r.keyOwner, r.account, err)
				}
				i++
			}
		})
	}
	// cold: 2^20 different "mixed" queries, so nearly every check touches index entries no recent check touched
	// (as on a replica whose requests spread over all tenants) instead of a cache-resident working set of 4096.
	q := f.queriesN("mixed", 1<<20)
	b.Run("cold", func(b *testing.B) {
		settle()
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			r := q[i&(1<<20-1)]
			if err := m.MayReferenceAccount(r.keyOwner, r.account); err != nil {
				b.Fatalf("MayReferenceAccount(%q, %v) = %v", r.keyOwner, r.account, err)
			}
			i++
		}
	})
}

// BenchmarkMayReferenceParallel shows read-lock scaling across GOMAXPROCS.
func BenchmarkMayReferenceParallel(b *testing.B) {
	f, m := benchSetup(b)
	q := f.queries("mixed")
	settle()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			r := q[i&4095]
			if err := m.MayReferenceAccount(r.keyOwner, r.account); err != nil {
				b.Errorf("MayReferenceAccount: %v", err)
				return
			}
			i++
		}
	})
}

// BenchmarkValidateTenant: admission-time check of a new Nested tenant under a
// random parent of the 100k-tenant model.
func BenchmarkValidateTenant(b *testing.B) {
	f, m := benchSetup(b)
	var parents []string
	for i, t := range f.tenants {
		if t.Type != Shadow && f.depth[i] < DefaultMaxDepth {
			parents = append(parents, t.ID)
		}
	}
	settle()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := m.ValidateTenant(Tenant{ID: "new", Type: Nested, Parent: parents[i%len(parents)]}); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// heapDelta returns the live heap that build leaves behind.
func heapDelta(build func() any) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	v := build()
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(v)
	if after.HeapAlloc < before.HeapAlloc {
		return 0
	}
	return after.HeapAlloc - before.HeapAlloc
}

// BenchmarkModelMemory reports the live heap of a 100k-tenant model per
// tenant (IDs included), and of 1M Accounts per Account (key strings
// included). The measurement runs once, outside the timed loop, whatever
// -benchtime says.
func BenchmarkModelMemory(b *testing.B) {
	f := genForest(benchTenants)
	var m *Model
	tb := heapDelta(func() any {
		m = New(Config{})
		f.build(m, 0, true)
		return m
	})
	keys := make([]AccountKey, benchAccounts) // allocated before measuring: the model does not hold this slice
	ab := heapDelta(func() any {
		for a := range keys {
			keys[a] = accountOf(a%benchTenants, a/benchTenants)
			m.UpsertAccount(keys[a], f.tenants[a%benchTenants].ID)
		}
		return m
	})
	runtime.KeepAlive(keys)
	for b.Loop() {
	}
	b.ReportMetric(float64(tb)/benchTenants, "B/tenant")
	b.ReportMetric(float64(ab)/benchAccounts, "B/account")
	b.ReportMetric(0, "ns/op") // nothing is timed
}
