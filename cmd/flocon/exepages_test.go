package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
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

// TestEvictExecutable: a file's clean pages that no process maps leave the
// page cache.
func TestEvictExecutable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "exe")
	if err := os.WriteFile(path, bytes.Repeat([]byte{1}, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil { // dirty pages are never dropped
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, f); err != nil {
		t.Fatal(err)
	}
	before := cachedPages(t, f)
	if before == 0 {
		t.Skip("the file system keeps no page cache for this file")
	}
	if err := evictExecutable(path, nil); err != nil {
		t.Fatal(err)
	}
	if after := cachedPages(t, f); after*4 > before {
		t.Fatalf("%d of %d pages still cached after the eviction", after, before)
	}
}

// cachedPages is how many pages of f are in the page cache (mincore over a
// mapping that touches none).
func cachedPages(t *testing.T, f *os.File) int {
	t.Helper()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	b, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = unix.Munmap(b) }()
	vec := make([]byte, (len(b)+os.Getpagesize()-1)/os.Getpagesize())
	if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		t.Fatal(e)
	}
	n := 0
	for _, v := range vec {
		n += int(v & 1)
	}
	return n
}
