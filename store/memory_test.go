package store_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/flocon/flocon/store"
	"github.com/flocon/flocon/store/storetest"
)

// beginMem starts the download of data, which the store holds in memory.
func beginMem(t *testing.T, s *store.Store, data []byte) *store.Pending {
	t.Helper()
	p, leader, err := s.Begin(storetest.CIDOf(t, data), int64(len(data)))
	if err != nil || !leader {
		t.Fatalf("Begin: leader=%v err=%v", leader, err)
	}
	return p
}

// TestMemoryCrashBeforeDisk: a small download is held in memory until
// proven, its readers are released before the disk has it, and a crash at
// any point before its commit is durable loses that blob and nothing else.
func TestMemoryCrashBeforeDisk(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := store.Open(store.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	kept := storetest.RandomBytes(1, 7000)
	keptCID := storetest.Put(t, s, kept, store.BlobInfo{}, nil)

	// Crash 1: bytes written, nothing proven: not a file anywhere.
	early := storetest.RandomBytes(2, 50<<10)
	p := beginMem(t, s, early)
	if _, err := p.Write(early); err != nil {
		t.Fatal(err)
	}
	if left := dirNames(t, filepath.Join(dir, "tmp")); len(left) != 0 {
		t.Fatalf("a download held in memory has temp files: %v", left)
	}

	// Crash 2: proven and read whole by a client, its fsync not done.
	late := storetest.RandomBytes(3, 60<<10)
	release := make(chan struct{})
	s.HoldSync(release)
	q := beginMem(t, s, late)
	s.HoldSync(nil)
	if _, err := q.Write(late); err != nil {
		t.Fatal(err)
	}
	committed := make(chan error, 1)
	go func() { committed <- q.Commit(store.BlobInfo{}, nil) }()
	<-q.Verified()
	rd := q.NewReader(t.Context(), 0)
	got, err := io.ReadAll(rd)
	rd.Close()
	if err != nil || !bytes.Equal(got, late) {
		t.Fatalf("reader before the disk: %d bytes, %v; want all %d", len(got), err, len(late))
	}
	if err := s.Crash(); err != nil {
		t.Fatal(err)
	}
	// The data dir as a kill -9 leaves it, taken while the commit is held.
	crashed := t.TempDir()
	if err := os.CopyFS(crashed, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	close(release)
	if err := <-committed; err == nil {
		t.Fatal("Commit succeeded on a crashed store")
	}

	s = openAt(t, store.Config{Dir: crashed})
	for _, c := range [][]byte{early, late} {
		if s.Has(storetest.CIDOf(t, c)) {
			t.Error("a blob never made durable survived the crash")
		}
	}
	if got := storetest.ReadBlob(t, s, keptCID); !bytes.Equal(got, kept) {
		t.Error("a committed blob changed")
	}
	if left := dirNames(t, filepath.Join(crashed, "tmp")); len(left) != 0 {
		t.Errorf("tmp not wiped: %v", left)
	}
	if n := len(dirNames(t, filepath.Join(crashed, "blobs"))); n != 1 {
		t.Errorf("%d blob files, want 1", n)
	}
	if got := s.Discarded(storetest.CIDOf(t, late)); got != 0 {
		t.Errorf("proven bytes recorded as discarded up to %d", got)
	}
	// Both download again.
	storetest.Put(t, s, early, store.BlobInfo{}, nil)
	storetest.Put(t, s, late, store.BlobInfo{}, nil)
}

// TestMemoryTruncate: readers of a download held in memory past a
// Truncate get ErrTruncated (Read and SendTo), never the new bytes joined to
// the old; the prefix they got is recorded as discarded, and the bytes
// written afterwards are the ones committed.
func TestMemoryTruncate(t *testing.T) {
	t.Parallel()
	s := openTemp(t)
	data := storetest.RandomBytes(4, 64<<10)
	bad := bytes.Clone(data)
	bad[100] ^= 0xff
	p := beginMem(t, s, data)
	if _, err := p.Write(bad[:40000]); err != nil {
		t.Fatal(err)
	}
	r := p.NewReader(t.Context(), 0)
	defer r.Close()
	if _, err := io.ReadFull(r, make([]byte, 30000)); err != nil {
		t.Fatal(err)
	}
	snd := r.(store.Sender)
	if err := p.Truncate(0); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Write(data[:35000]); err != nil {
		t.Fatal(err)
	}
	if k, err := snd.SendTo(io.Discard, 100); !errors.Is(err, store.ErrTruncated) || k != 0 {
		t.Errorf("SendTo past the cut: %d bytes, %v; want 0, ErrTruncated", k, err)
	}
	if _, err := r.Read(make([]byte, 100)); !errors.Is(err, store.ErrTruncated) {
		t.Errorf("Read past the cut: %v; want ErrTruncated", err)
	}
	if got := s.Discarded(p.CID()); got != 30000 {
		t.Errorf("Discarded = %d, want 30000", got)
	}
	if _, err := p.Write(data[35000:]); err != nil {
		t.Fatal(err)
	}
	// Kept: the bytes written since the cut, the ones the verifier reads
	if kept, ok := p.Kept(); !ok || !bytes.Equal(kept, data) {
		t.Fatalf("Kept after the truncate: %d bytes, %v; want the good %d", len(kept), ok, len(data))
	}
	fresh := p.NewReader(t.Context(), 0)
	defer fresh.Close()
	var sent bytes.Buffer
	go func() { _ = p.Commit(store.BlobInfo{}, nil) }()
	if _, err := fresh.(store.Sender).SendTo(&sent, -1); !errors.Is(err, io.EOF) || !bytes.Equal(sent.Bytes(), data) {
		t.Fatalf("reader after the truncate: %d bytes, %v; want the good %d and EOF", sent.Len(), err, len(data))
	}
	<-p.Done()
	if got := storetest.ReadBlob(t, s, p.CID()); !bytes.Equal(got, data) {
		t.Error("stored blob is not the bytes written after the truncate")
	}
}

// TestKeptOnlyInMemory: Kept gives the bytes of a download held in memory
// as they are written, and nothing for one written to a temp file.
func TestKeptOnlyInMemory(t *testing.T) {
	t.Parallel()
	s := openTemp(t)
	small := storetest.RandomBytes(5, 20<<10)
	p := beginMem(t, s, small)
	defer p.Abort(nil)
	if _, err := p.Write(small[:5000]); err != nil {
		t.Fatal(err)
	}
	if kept, ok := p.Kept(); !ok || !bytes.Equal(kept, small[:5000]) {
		t.Fatalf("Kept = %d bytes, %v; want the 5000 written", len(kept), ok)
	}
	big := storetest.RandomBytes(6, int(store.DefaultMemoryBody)+1)
	q := beginMem(t, s, big)
	defer q.Abort(nil)
	if _, err := q.Write(big[:5000]); err != nil {
		t.Fatal(err)
	}
	if kept, ok := q.Kept(); ok || kept != nil {
		t.Fatalf("Kept of a download to a temp file = %d bytes, %v; want none", len(kept), ok)
	}
}

// TestMemoryDiskFullAtCommit: a download held in memory meets the disk
// only at its commit; a full disk then aborts it (no blob, no temp file,
// no discarded prefix: the bytes were proven) and the next attempt works.
func TestMemoryDiskFullAtCommit(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openAt(t, store.Config{Dir: dir})
	data := storetest.RandomBytes(5, 20000)
	s.FailTemp(syscall.ENOSPC, 0, false)
	p := beginMem(t, s, data)
	s.FailTemp(nil, 0, false)
	if _, err := p.Write(data); err != nil {
		t.Fatalf("Write into memory: %v", err)
	}
	if err := p.Commit(store.BlobInfo{}, nil); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Commit = %v, want ENOSPC", err)
	}
	if !errors.Is(p.Err(), syscall.ENOSPC) {
		t.Errorf("download error = %v, want ENOSPC", p.Err())
	}
	if s.Has(p.CID()) {
		t.Error("blob stored after a failed write")
	}
	if left := dirNames(t, filepath.Join(dir, "tmp")); len(left) != 0 {
		t.Errorf("temp files left: %v", left)
	}
	if got := s.Discarded(p.CID()); got != 0 {
		t.Errorf("Discarded = %d after a failure past the proof", got)
	}
	storetest.Put(t, s, data, store.BlobInfo{}, nil)
}

// TestMemoryBudget: downloads held in memory at once are bounded (8 bodies
// of the size limit); past it a download goes to a temp file, and the
// budget comes back as downloads end.
func TestMemoryBudget(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openAt(t, store.Config{Dir: dir, MemoryBody: 1000})
	var held []*store.Pending
	for i := range 8 {
		held = append(held, beginMem(t, s, storetest.RandomBytes(uint64(10+i), 1000)))
	}
	if left := dirNames(t, filepath.Join(dir, "tmp")); len(left) != 0 {
		t.Fatalf("within the budget: temp files %v", left)
	}
	over := beginMem(t, s, storetest.RandomBytes(20, 10))
	if left := dirNames(t, filepath.Join(dir, "tmp")); len(left) != 1 {
		t.Fatalf("past the budget: temp files %v, want the new download's", left)
	}
	over.Abort(errors.New("test over"))
	held[0].Abort(errors.New("test over"))
	beginMem(t, s, storetest.RandomBytes(21, 1000)).Abort(errors.New("test over"))
	if left := dirNames(t, filepath.Join(dir, "tmp")); len(left) != 0 {
		t.Fatalf("budget not given back: temp files %v", left)
	}
	for _, p := range held[1:] {
		p.Abort(errors.New("test over"))
	}
}

// TestCommitReadOnlyBlob: every committed blob is read-only; one held in
// memory is written to a file created so (no chmod after its fsync), one
// written to a temp file as it came is made so at its commit.
func TestCommitReadOnlyBlob(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		memoryBody int64
		wantChmods int32
	}{
		{name: "held in memory", memoryBody: 0, wantChmods: 0},
		{name: "temp file", memoryBody: -1, wantChmods: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := openAt(t, store.Config{Dir: t.TempDir(), MemoryBody: tt.memoryBody})
			var chmods atomic.Int32
			s.CountTempChmods(&chmods)
			data := storetest.RandomBytes(3, 50<<10)
			p := beginMem(t, s, data)
			if _, err := p.Write(data); err != nil {
				t.Fatal(err)
			}
			if err := p.Commit(store.BlobInfo{}, nil); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(s.BlobPath(p.CID()))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o444 {
				t.Errorf("blob mode %v, want 0444", fi.Mode().Perm())
			}
			if got := chmods.Load(); got != tt.wantChmods {
				t.Errorf("%d chmods of the temp file, want %d", got, tt.wantChmods)
			}
		})
	}
}
