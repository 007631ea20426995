package store

import (
	"sync"
	"testing"
)

// TestRowCacheRefusesReadsOlderThanAWrite: a row read before a write and
// stored after it is dropped; a row read after the write is kept.
func TestRowCacheRefusesReadsOlderThanAWrite(t *testing.T) {
	t.Parallel()
	c := newRowCache[string, int]()
	gen := c.generation() // a reader starts, reads 1 from the index...
	c.invalidate("k")     // ...a writer writes 2 meanwhile
	c.put("k", 1, gen)
	if v, ok := c.get("k"); ok {
		t.Fatalf("stale row cached: %d", v)
	}
	c.put("k", 2, c.generation())
	if v, ok := c.get("k"); !ok || v != 2 {
		t.Fatalf("get = %d, %v; want 2, true", v, ok)
	}
	c.clear()
	if _, ok := c.get("k"); ok {
		t.Fatal("row survived clear")
	}
}

// TestRowCacheBounded: the cache never holds more than rowCacheSize rows.
func TestRowCacheBounded(t *testing.T) {
	t.Parallel()
	c := newRowCache[int, int]()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 2 * rowCacheSize {
				c.put(w*10*rowCacheSize+i, i, c.generation())
			}
		})
	}
	wg.Wait()
	if n := len(c.m); n > rowCacheSize {
		t.Fatalf("%d rows cached, bound %d", n, rowCacheSize)
	}
}
