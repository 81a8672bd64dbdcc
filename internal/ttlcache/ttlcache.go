// Package ttlcache is the one answer cache of the process: a bounded map of values that expire, with at most one
// load per key in flight. The region policy, the L1 key prober and the identity plugin's directory lookups use it,
// so bounding, expiry and deduplication are written (and tested) once.
//
// Bounding: when the cache holds Max entries, expired ones are dropped first and, if none had expired, everything
// (a flood of distinct keys, e.g. invented region names, then only costs asking again, never memory). Expired
// entries stay readable through Stale until they are dropped, for callers that prefer an old answer to none
// during an outage.
package ttlcache

import (
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// DefaultMax bounds a cache whose Max is zero.
const DefaultMax = 10000

// Cache maps string keys to values of type V. The zero value is ready to use (Max DefaultMax, time.Now).
type Cache[V any] struct {
	// Max bounds the number of entries (default DefaultMax).
	Max int
	// Now is the clock (tests); default time.Now.
	Now func() time.Time

	mu      sync.Mutex
	entries map[string]entry[V]
	group   singleflight.Group
}

type entry[V any] struct {
	val     V
	expires time.Time
}

func (c *Cache[V]) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// Get returns the value of key while it is fresh.
func (c *Cache[V]) Get(key string) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok || !c.now().Before(e.expires) {
		var zero V
		return zero, false
	}
	return e.val, true
}

// Stale returns the value of key even when it has expired (until the bound drops it).
func (c *Cache[V]) Stale(key string) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	return e.val, ok
}

// Put stores val for ttl; a ttl <= 0 stores nothing.
func (c *Cache[V]) Put(key string, val V, ttl time.Duration) {
	if ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	max := c.Max
	if max <= 0 {
		max = DefaultMax
	}
	if c.entries == nil {
		c.entries = map[string]entry[V]{}
	}
	if _, exists := c.entries[key]; !exists && len(c.entries) >= max {
		for k, e := range c.entries {
			if !now.Before(e.expires) {
				delete(c.entries, k)
			}
		}
		if len(c.entries) >= max {
			clear(c.entries)
		}
	}
	c.entries[key] = entry[V]{val: val, expires: now.Add(ttl)}
}

// Clear drops every entry.
func (c *Cache[V]) Clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.entries)
}

// Len is the number of entries, fresh or not.
func (c *Cache[V]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// Do runs load for key unless a load of the same key is already running, in which case it waits for that one and
// shares its result (singleflight). The caller decides what to Put; Do caches nothing by itself. The channel form
// lets a caller stop waiting when its own context ends without cancelling the shared load.
func (c *Cache[V]) Do(key string, load func() (V, error)) <-chan Result[V] {
	out := make(chan Result[V], 1)
	ch := c.group.DoChan(key, func() (any, error) { return load() })
	go func() {
		r := <-ch
		v, _ := r.Val.(V)
		out <- Result[V]{Val: v, Err: r.Err, Shared: r.Shared}
	}()
	return out
}

// Result of Do.
type Result[V any] struct {
	Val    V
	Err    error
	Shared bool
}
