package store

import "sync"

// rowCacheSize bounds each cache of decoded rows: a pacman -Syu touches a
// few hundred packages, and the daemon's memory is meant to stay small.
const rowCacheSize = 1024

// rowCache keeps decoded index rows that every warm request reads (the db
// entry of a file name, the row of a blob), so a hit costs a map lookup
// instead of a badger read and a JSON decode (measured 65 and 150 µs per
// lookup on a busy 2-core machine against about 1 µs).
//
// It never returns a row older than the index: every writer of a cached key
// calls invalidate (or clear) before and after its write, and a reader only
// stores what it read when no invalidation happened since it took its
// generation, so a value read before a write can never land after it.
// The same holds for a row's absence, which the blob cache keeps too.
type rowCache[K comparable, V any] struct {
	mu  sync.Mutex
	gen uint64
	m   map[K]V
}

func newRowCache[K comparable, V any]() *rowCache[K, V] {
	return &rowCache[K, V]{m: make(map[K]V)}
}

// get returns the cached row of k.
func (c *rowCache[K, V]) get(k K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[k]
	return v, ok
}

// generation is taken before reading a row from the index.
func (c *rowCache[K, V]) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// put caches v for k unless a write invalidated anything since gen.
func (c *rowCache[K, V]) put(k K, v V, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if len(c.m) >= rowCacheSize {
		for old := range c.m { // evict one arbitrary row
			delete(c.m, old)
			break
		}
	}
	c.m[k] = v
}

// invalidate drops the rows of keys (a writer calls it before and after
// writing them).
func (c *rowCache[K, V]) invalidate(keys ...K) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	for _, k := range keys {
		delete(c.m, k)
	}
}

// clear drops every row (bulk writes: a new database, stale rows deleted).
func (c *rowCache[K, V]) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	clear(c.m)
}
