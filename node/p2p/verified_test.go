package p2p

import (
	"bytes"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/flocon/flocon/store/storetest"
)

// TestVerifiedFiles: a file proven whole is trusted for reverifyAfter while
// its stamp is unchanged; a stamp that changed shortly before the proof is
// never trusted; the oldest entry goes first when full.
func TestVerifiedFiles(t *testing.T) {
	t.Parallel()
	c := cidOf(t, []byte("a blob"))
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	old := t0.Add(-time.Hour).UnixNano()
	st := fileStamp{dev: 1, ino: 2, size: 3, mtime: old, ctime: old}
	for _, tt := range []struct {
		name  string
		mark  fileStamp
		at    time.Time // when fresh is asked
		ask   fileStamp
		fresh bool
	}{
		{"same stamp, in the window", st, t0.Add(reverifyAfter - time.Second), st, true},
		{"window over", st, t0.Add(reverifyAfter), st, false},
		{"clock went back", st, t0.Add(-time.Second), st, false},
		{"changed: ctime", st, t0.Add(time.Second), fileStamp{dev: 1, ino: 2, size: 3, mtime: old, ctime: old + 1}, false},
		{"changed: inode", st, t0.Add(time.Second), fileStamp{dev: 1, ino: 9, size: 3, mtime: old, ctime: old}, false},
		{"changed: size", st, t0.Add(time.Second), fileStamp{dev: 1, ino: 2, size: 4, mtime: old, ctime: old}, false},
		{"changed just before the proof", fileStamp{dev: 1, ino: 2, size: 3, mtime: old, ctime: t0.Add(-stampSettle / 2).UnixNano()},
			t0.Add(time.Second), fileStamp{dev: 1, ino: 2, size: 3, mtime: old, ctime: t0.Add(-stampSettle / 2).UnixNano()}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v := newVerifiedFiles()
			v.mark(c, tt.mark, t0)
			if got := v.fresh(c, tt.ask, tt.at); got != tt.fresh {
				t.Fatalf("fresh = %v, want %v", got, tt.fresh)
			}
		})
	}
	t.Run("forget and eviction", func(t *testing.T) {
		t.Parallel()
		v := newVerifiedFiles()
		v.mark(c, st, t0)
		v.forget(c)
		if v.fresh(c, st, t0) {
			t.Fatal("fresh after forget")
		}
		v.mark(c, st, t0) // the oldest
		for i := range maxVerified {
			v.mark(cidOf(t, []byte{byte(i), byte(i >> 8), 1}), st, t0.Add(time.Second))
		}
		if v.fresh(c, st, t0.Add(2*time.Second)) || len(v.m) != maxVerified {
			t.Fatalf("oldest kept (%d entries)", len(v.m))
		}
	})
}

// TestProvenFileReplacedIsHashed: a blob proven whole is sent again
// without a hash, byte for byte; once its file is replaced by a corrupt
// copy, the next send hashes it again, resets before the last byte and
// drops it.
func TestProvenFileReplacedIsHashed(t *testing.T) {
	t.Parallel()
	data := storetest.RandomBytes(8, 3<<20+5)
	stA := newMemStore(t)
	c := stA.addBlob(t, data)
	a := startNode(t, stA)
	b := startNode(t, newMemStore(t), withBootstrap(a))
	waitConnected(t, b.s.h, a.id())
	f, err := os.Open(stA.path(c))
	if err != nil {
		t.Fatal(err)
	}
	st, ok := stampOf(f)
	f.Close()
	if !ok {
		t.Skip("no file stamps on this system")
	}
	// As if a send had proven it a while after it was written (mark
	// refuses a file changed within stampSettle of the proof).
	a.s.verified.mu.Lock()
	a.s.verified.m[c] = verifiedFile{stamp: st, at: time.Now()}
	a.s.verified.mu.Unlock()
	src := &peerSource{s: b.s, p: a.id()}
	for _, off := range []int64{0, 1<<20 + 3} {
		var got bytes.Buffer
		if _, err := src.Fetch(t.Context(), c, off, &got); err != nil || !bytes.Equal(got.Bytes(), data[off:]) {
			t.Fatalf("proven send from %d: %v, %d bytes, equal %v", off, err, got.Len(), bytes.Equal(got.Bytes(), data[off:]))
		}
	}
	bad := bytes.Clone(data)
	bad[len(bad)/2] ^= 0xff
	if err := writeFileAtomic(stA.path(c), bad, 0o444); err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	n, err := src.Fetch(t.Context(), c, 0, &got)
	if !errors.Is(err, ErrPeerCorrupt) || n >= int64(len(data)) {
		t.Fatalf("Fetch of the replaced file = %d bytes, %v; want ErrPeerCorrupt before the end", n, err)
	}
	waitFor(t, "A to drop its corrupt blob", func() bool { return !stA.Has(c) })
}
