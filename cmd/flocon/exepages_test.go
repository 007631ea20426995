package main

import (
	"os"
	"testing"
)

// TestReleaseExecutable: the executable's read-only pages leave this
// process's RSS, and the program runs on (its pages fault back in).
func TestReleaseExecutable(t *testing.T) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	resident := func() (ro, rw int64) {
		maps, err := readMappings(exe)
		if err != nil || len(maps) == 0 {
			t.Fatalf("mappings of %s: %v, %v", exe, maps, err)
		}
		for _, m := range maps {
			if m.perms == "r-xp" || m.perms == "r--p" {
				ro += m.rss
			} else {
				rw += m.rss
			}
		}
		return ro, rw
	}
	before, rwBefore := resident()
	dropped, err := releaseExecutable()
	if err != nil {
		t.Fatal(err)
	}
	after, rwAfter := resident()
	if dropped <= 0 || after >= before/2 {
		t.Fatalf("released %d bytes; read-only pages resident %d before, %d after", dropped, before, after)
	}
	if rwAfter < rwBefore/2 { // writable data is never dropped
		t.Fatalf("writable pages resident %d before, %d after", rwBefore, rwAfter)
	}
	if got := version(); got == "" { // code that had run runs again
		t.Fatal("version() is empty after the release")
	}
}
