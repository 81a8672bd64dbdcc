package apeiro

import (
	"time"

	"github.com/apeirora/apeiro-cmk/internal/ttlcache"
)

// maxCacheEntries bounds the cache (see ttlcache for how a full cache makes room).
const maxCacheEntries = 10000

// ttlCache caches directory answers (and NotFound, for a shorter time) per realm and call.
type ttlCache = ttlcache.Cache[cacheEntry]

type cacheEntry struct {
	val any
	err error
}

func newTTLCache(now func() time.Time) *ttlCache {
	return &ttlCache{Max: maxCacheEntries, Now: now}
}

// cached answers key from the cache or runs fn, once for all concurrent callers of the same key; NotFound answers
// are kept for negativeCacheTTL (a user created a moment ago shows up within half a minute), other errors are not
// cached.
func cached[T any](c *ttlCache, ttl time.Duration, key string, fn func() (T, error)) (T, error) {
	if e, ok := c.Get(key); ok {
		if e.err != nil {
			var zero T
			return zero, e.err
		}
		return e.val.(T), nil
	}
	r := <-c.Do(key, func() (cacheEntry, error) {
		v, err := fn()
		switch {
		case err == nil:
			c.Put(key, cacheEntry{val: v}, ttl)
		case isNotFound(err):
			c.Put(key, cacheEntry{err: err}, min(ttl, negativeCacheTTL))
		}
		return cacheEntry{val: v}, err
	})
	if r.Err != nil {
		var zero T
		return zero, r.Err
	}
	v, _ := r.Val.val.(T)
	return v, nil
}
