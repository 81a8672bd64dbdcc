package apeiro

import (
	"sync"
	"time"
)

// maxCacheEntries bounds the cache; when full, expired entries are dropped, then everything (a lookup storm over
// many distinct IDs must not grow memory without bound).
const maxCacheEntries = 10000

// ttlCache caches directory answers (and NotFound, for a shorter time) per realm and call.
type ttlCache struct {
	mu      sync.Mutex
	entries map[string]cacheEntry
	now     func() time.Time
}

type cacheEntry struct {
	val     any
	err     error
	expires time.Time
}

func newTTLCache(now func() time.Time) *ttlCache {
	return &ttlCache{entries: map[string]cacheEntry{}, now: now}
}

func (c *ttlCache) get(key string) (any, error, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok || c.now().After(e.expires) {
		return nil, nil, false
	}
	return e.val, e.err, true
}

func (c *ttlCache) put(key string, val any, err error, ttl time.Duration) {
	if ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= maxCacheEntries {
		now := c.now()
		for k, e := range c.entries {
			if now.After(e.expires) {
				delete(c.entries, k)
			}
		}
		if len(c.entries) >= maxCacheEntries {
			clear(c.entries)
		}
	}
	c.entries[key] = cacheEntry{val: val, err: err, expires: c.now().Add(ttl)}
}

// cached runs fn once per key and TTL; NotFound answers are kept for negativeCacheTTL (a user created a moment
// ago shows up within half a minute), other errors are not cached.
func cached[T any](c *ttlCache, ttl time.Duration, key string, fn func() (T, error)) (T, error) {
	if v, err, ok := c.get(key); ok {
		if err != nil {
			var zero T
			return zero, err
		}
		return v.(T), nil
	}
	v, err := fn()
	switch {
	case err == nil:
		c.put(key, v, nil, ttl)
	case isNotFound(err):
		c.put(key, nil, err, min(ttl, negativeCacheTTL))
	}
	return v, err
}
