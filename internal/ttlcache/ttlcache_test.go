package ttlcache

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestExpiryAndStale(t *testing.T) {
	now := time.Unix(1000, 0)
	c := &Cache[string]{Now: func() time.Time { return now }}
	c.Put("a", "1", 10*time.Second)
	c.Put("zero", "x", 0) // nothing stored
	cases := []struct {
		name      string
		at        time.Duration
		key       string
		fresh     bool
		stale     bool
		wantValue string
	}{
		{name: "fresh", at: 0, key: "a", fresh: true, stale: true, wantValue: "1"},
		{name: "just before expiry", at: 9 * time.Second, key: "a", fresh: true, stale: true, wantValue: "1"},
		{name: "expired but stale-readable", at: 10 * time.Second, key: "a", stale: true, wantValue: "1"},
		{name: "ttl 0 stores nothing", key: "zero"},
		{name: "unknown", key: "b"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			now = time.Unix(1000, 0).Add(tc.at)
			v, ok := c.Get(tc.key)
			if ok != tc.fresh || (ok && v != tc.wantValue) {
				t.Fatalf("Get = %q, %v", v, ok)
			}
			v, ok = c.Stale(tc.key)
			if ok != tc.stale || (ok && v != tc.wantValue) {
				t.Fatalf("Stale = %q, %v", v, ok)
			}
		})
	}
}

// A flood of distinct keys never grows the cache beyond Max: expired entries go first, then everything.
func TestBound(t *testing.T) {
	now := time.Unix(0, 0)
	c := &Cache[int]{Max: 4, Now: func() time.Time { return now }}
	c.Put("old1", 1, time.Second)
	c.Put("old2", 2, time.Second)
	c.Put("live1", 3, time.Hour)
	c.Put("live2", 4, time.Hour)
	now = now.Add(2 * time.Second)
	c.Put("new", 5, time.Hour) // drops the two expired ones
	if c.Len() != 3 {
		t.Fatalf("len %d after dropping expired entries, want 3", c.Len())
	}
	if _, ok := c.Get("live1"); !ok {
		t.Fatal("a live entry was dropped while expired ones were available")
	}
	for i := range 100 {
		c.Put(string(rune('a'+i)), i, time.Hour)
		if c.Len() > 4 {
			t.Fatalf("len %d exceeds Max", c.Len())
		}
	}
	c.Put("a", 1, time.Hour) // overwriting an existing key at the bound keeps the others
	c.Clear()
	if c.Len() != 0 {
		t.Fatal("Clear left entries")
	}
}

// Concurrent loads of one key share one call; distinct keys do not.
func TestDoSharesInFlightLoads(t *testing.T) {
	var c Cache[int]
	var calls atomic.Int32
	release := make(chan struct{})
	var wg sync.WaitGroup
	results := make([]Result[int], 20)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = <-c.Do("k", func() (int, error) {
				calls.Add(1)
				<-release
				return 42, nil
			})
		}()
	}
	time.Sleep(50 * time.Millisecond)
	close(release)
	wg.Wait()
	if calls.Load() != 1 {
		t.Fatalf("%d loads for one key, want 1", calls.Load())
	}
	for _, r := range results {
		if r.Val != 42 || r.Err != nil {
			t.Fatalf("result %+v", r)
		}
	}
	boom := errors.New("boom")
	r := <-c.Do("other", func() (int, error) { return 0, boom })
	if !errors.Is(r.Err, boom) {
		t.Fatalf("error not passed through: %v", r.Err)
	}
	if _, ok := c.Get("k"); ok {
		t.Fatal("Do cached a value by itself")
	}
}
