package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"testing/iotest"
	"time"

	"github.com/ipfs/go-cid"
	"go.uber.org/goleak"

	"github.com/flocon/flocon/store"
	"github.com/flocon/flocon/store/repodb"
	"github.com/flocon/flocon/store/storetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const realCoreDB = "repodb/testdata/arch-core-2025-02.db"

func openAt(t testing.TB, cfg store.Config) *store.Store {
	t.Helper()
	s, err := store.Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil && !errors.Is(err, store.ErrClosed) {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func openTemp(t *testing.T) *store.Store { return openAt(t, store.Config{Dir: t.TempDir()}) }

func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Conformance(t, openTemp)
}

// TestConformanceTempFiles: the same contract with every download in a
// temp file from its first byte (small ones are held in memory by default).
func TestConformanceTempFiles(t *testing.T) {
	t.Parallel()
	storetest.Conformance(t, func(t *testing.T) *store.Store {
		return openAt(t, store.Config{Dir: t.TempDir(), MemoryBody: -1})
	})
}

func TestOpenRefusesBadConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  store.Config
	}{
		{"no dir", store.Config{}},
		{"negative versions", store.Config{Dir: t.TempDir(), KeepVersions: -1}},
		{"negative quota", store.Config{Dir: t.TempDir(), MaxBytes: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if s, err := store.Open(tt.cfg); !errors.Is(err, store.ErrInvalid) {
				if s != nil {
					_ = s.Close()
				}
				t.Fatalf("Open = %v, want ErrInvalid", err)
			}
		})
	}
}

// fixture is a store directory with two blobs, a signature and a db.
type fixture struct {
	dir   string
	a, b  cid.Cid
	aData []byte
	pkg   storetest.Package
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	fx := fixture{dir: t.TempDir(), aData: storetest.RandomBytes(1, 2000), pkg: storetest.NewPackage("foo", "1-1", "any", 50)}
	s, err := store.Open(store.Config{Dir: fx.dir})
	if err != nil {
		t.Fatal(err)
	}
	fx.a = storetest.Put(t, s, fx.aData, store.BlobInfo{Filename: "a-1-1-any.pkg.tar.zst"}, []byte("sigA"))
	fx.b = storetest.Put(t, s, storetest.RandomBytes(2, 3000), store.BlobInfo{}, []byte("sigB"))
	db := storetest.DB(t, []repodb.Entry{fx.pkg.Entry}, false)
	if _, err := s.PutDB("core", "x86_64", "core.db", bytes.NewReader(db), time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return fx
}

func (fx fixture) blob(c cid.Cid) string { return filepath.Join(fx.dir, "blobs", c.String()) }

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestReconcileOnOpen(t *testing.T) {
	t.Parallel()
	orphan := storetest.RandomBytes(3, 100)
	tests := []struct {
		name   string
		damage func(t *testing.T, fx fixture)
		check  func(t *testing.T, fx fixture, s *store.Store)
	}{
		{"orphan blob removed", func(t *testing.T, fx fixture) {
			writeFile(t, fx.blob(storetest.CIDOf(t, orphan)), orphan)
		}, func(t *testing.T, fx fixture, s *store.Store) {
			if _, err := os.Stat(fx.blob(storetest.CIDOf(t, orphan))); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("orphan blob still there: %v", err)
			}
		}},
		{"foreign file in blobs removed", func(t *testing.T, fx fixture) {
			writeFile(t, filepath.Join(fx.dir, "blobs", "notacid"), []byte("x"))
			if err := os.Mkdir(filepath.Join(fx.dir, "blobs", "subdir"), 0o755); err != nil {
				t.Fatal(err)
			}
		}, func(t *testing.T, fx fixture, s *store.Store) {
			if n := len(dirNames(t, filepath.Join(fx.dir, "blobs"))); n != 3 { // a, b, core.db
				t.Errorf("blobs dir holds %d entries, want 3", n)
			}
		}},
		{"row without blob dropped", func(t *testing.T, fx fixture) {
			if err := os.Remove(fx.blob(fx.b)); err != nil {
				t.Fatal(err)
			}
		}, func(t *testing.T, fx fixture, s *store.Store) {
			if s.Has(fx.b) {
				t.Error("Has = true for a blob whose file is gone")
			}
			if _, err := s.Sig(fx.b); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("Sig of the dropped blob = %v", err)
			}
		}},
		{"truncated blob dropped", func(t *testing.T, fx fixture) {
			if err := os.Chmod(fx.blob(fx.b), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(fx.blob(fx.b), 10); err != nil {
				t.Fatal(err)
			}
		}, func(t *testing.T, fx fixture, s *store.Store) {
			if s.Has(fx.b) {
				t.Error("Has = true for a truncated blob")
			}
			if _, err := os.Stat(fx.blob(fx.b)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("truncated blob file still there: %v", err)
			}
		}},
		{"tmp wiped", func(t *testing.T, fx fixture) {
			writeFile(t, filepath.Join(fx.dir, "tmp", "dl-123"), []byte("partial"))
			if err := os.MkdirAll(filepath.Join(fx.dir, "tmp", "d", "e"), 0o755); err != nil {
				t.Fatal(err)
			}
		}, func(t *testing.T, fx fixture, s *store.Store) {
			if left := dirNames(t, filepath.Join(fx.dir, "tmp")); len(left) != 0 {
				t.Errorf("tmp not wiped: %v", left)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fx := newFixture(t)
			tt.damage(t, fx)
			s := openAt(t, store.Config{Dir: fx.dir})
			tt.check(t, fx, s)
			// What was not damaged is intact.
			if got := storetest.ReadBlob(t, s, fx.a); !bytes.Equal(got, fx.aData) {
				t.Error("blob a changed")
			}
			if sig, err := s.Sig(fx.a); err != nil || string(sig) != "sigA" {
				t.Errorf("Sig a = %q, %v", sig, err)
			}
			if f, _, err := s.OpenDB("core", "x86_64", "core.db"); err != nil {
				t.Errorf("OpenDB: %v", err)
			} else {
				_ = f.Close()
			}
			if _, err := s.Entry("core", "x86_64", fx.pkg.Entry.Filename); err != nil {
				t.Errorf("Entry: %v", err)
			}
		})
	}
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o444); err != nil {
		t.Fatal(err)
	}
}

// TestCrashMidWrite kills the store (no Close) with a download half written
// to its temp file and a blob renamed but not indexed; nothing committed
// may be lost. (Downloads held in memory: TestMemoryCrashBeforeDisk.)
func TestCrashMidWrite(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := store.Open(store.Config{Dir: dir, MemoryBody: -1})
	if err != nil {
		t.Fatal(err)
	}
	committed := map[cid.Cid][]byte{}
	for i := range 3 {
		data := storetest.RandomBytes(uint64(100+i), 10000*(i+1))
		committed[storetest.Put(t, s, data, store.BlobInfo{}, nil)] = data
	}
	half := storetest.RandomBytes(200, 50000)
	halfCID := storetest.CIDOf(t, half)
	p, _, err := s.Begin(halfCID, int64(len(half)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Write(half[:20000]); err != nil {
		t.Fatal(err)
	}
	// Crash between rename and index row: the file is in blobs/, no row.
	unindexed := storetest.RandomBytes(201, 700)
	writeFile(t, filepath.Join(dir, "blobs", storetest.CIDOf(t, unindexed).String()), unindexed)
	if err := s.Crash(); err != nil {
		t.Fatal(err)
	}
	if len(dirNames(t, filepath.Join(dir, "tmp"))) == 0 {
		t.Fatal("the simulated crash left no temp file")
	}

	s = openAt(t, store.Config{Dir: dir})
	for c, data := range committed {
		if got := storetest.ReadBlob(t, s, c); !bytes.Equal(got, data) {
			t.Errorf("committed blob %s changed", c)
		}
	}
	if s.Has(halfCID) || s.Has(storetest.CIDOf(t, unindexed)) {
		t.Error("an uncommitted blob survived the crash")
	}
	if left := dirNames(t, filepath.Join(dir, "tmp")); len(left) != 0 {
		t.Errorf("tmp not wiped: %v", left)
	}
	if n := len(dirNames(t, filepath.Join(dir, "blobs"))); n != len(committed) {
		t.Errorf("%d blob files, want %d", n, len(committed))
	}
	// The interrupted download starts afresh.
	if got := storetest.Put(t, s, half, store.BlobInfo{}, nil); !got.Equals(halfCID) {
		t.Fatal("cid changed")
	}
}

func TestCloseAbortsDownloads(t *testing.T) {
	t.Parallel()
	s, err := store.Open(store.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	p, _, err := s.Begin(storetest.CIDOf(t, []byte("x")), -1)
	if err != nil {
		t.Fatal(err)
	}
	r := p.NewReader(t.Context(), 0)
	defer r.Close()
	done := make(chan error)
	go func() {
		_, err := io.ReadAll(r)
		done <- err
	}()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, store.ErrAborted) || !errors.Is(err, store.ErrClosed) {
		t.Errorf("reader after Close = %v, want ErrAborted and ErrClosed", err)
	}
	c := storetest.CIDOf(t, []byte("y"))
	if _, _, err := s.Begin(c, 1); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Begin after Close = %v", err)
	}
	if _, _, err := s.OpenBlob(c); !errors.Is(err, store.ErrClosed) {
		t.Errorf("OpenBlob after Close = %v", err)
	}
	if err := s.PutMeta("ns", "k", []byte("v")); !errors.Is(err, store.ErrClosed) {
		t.Errorf("PutMeta after Close = %v", err)
	}
	if err := s.Close(); !errors.Is(err, store.ErrClosed) {
		t.Errorf("second Close = %v", err)
	}
}

// TestLastAccessBatched: OpenBlob keeps the access in memory; Close writes
// it, a crash loses it (no synced write per read).
func TestLastAccessBatched(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		shutdown  func(s *store.Store) error
		persisted bool
	}{
		{"close flushes", (*store.Store).Close, true},
		{"crash loses", (*store.Store).Crash, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			s, err := store.Open(store.Config{Dir: dir})
			if err != nil {
				t.Fatal(err)
			}
			c := storetest.Put(t, s, []byte("data"), store.BlobInfo{}, nil)
			time.Sleep(2 * time.Millisecond) // a later wall-clock instant
			f, info, err := s.OpenBlob(c)
			if err != nil {
				t.Fatal(err)
			}
			_ = f.Close()
			if err := tt.shutdown(s); err != nil {
				t.Fatal(err)
			}
			s = openAt(t, store.Config{Dir: dir})
			var got store.BlobInfo
			_ = s.Blobs(func(b store.BlobInfo) error { got = b; return nil })
			if persisted := got.LastAccess.Equal(info.LastAccess); persisted != tt.persisted {
				t.Errorf("last access %v after reopen (read at %v, added %v): persisted %v, want %v",
					got.LastAccess, info.LastAccess, got.Added, persisted, tt.persisted)
			}
		})
	}
}

func TestPutDBRealCoreDB(t *testing.T) {
	t.Parallel()
	s := openTemp(t)
	raw, err := os.ReadFile(realCoreDB)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutDB("core", "x86_64", "core.db", bytes.NewReader(raw), time.Now()); err != nil {
		t.Fatal(err)
	}
	if got := s.Stats().Entries; got != 265 {
		t.Errorf("entries = %d, want 265", got)
	}
	e, err := s.Entry("core", "x86_64", "acl-2.3.2-1-x86_64.pkg.tar.zst")
	if err != nil || e.SHA256 != "cbfb71e8ba9aca9e51cbdfd77d0ec51371eb865a9a098c77e2c6046962e6ae0a" || len(e.PGPSig) == 0 {
		t.Fatalf("Entry acl = %+v, %v", e, err)
	}
	c, err := e.CID()
	if err != nil {
		t.Fatal(err)
	}
	repo, arch, byCID, err := s.EntryByCID(c)
	if err != nil || repo != "core" || arch != "x86_64" || byCID.Name != "acl" {
		t.Errorf("EntryByCID = %s %s %s, %v", repo, arch, byCID.Name, err)
	}
}

func TestPruneKeepVersions(t *testing.T) {
	t.Parallel()
	s := openAt(t, store.Config{Dir: t.TempDir(), KeepVersions: 2})
	put := func(name, version, arch string) cid.Cid {
		p := storetest.NewPackage(name, version, arch, 100)
		return storetest.Put(t, s, p.Data, store.BlobInfo{Filename: p.Entry.Filename, Arch: arch}, nil)
	}
	// vercmp order: 1.0-1 < 1.2-1 < 1.10-1 < 1.10-2 < 1:0.1-1 (epoch wins)
	old1, old2 := put("foo", "1.0-1", "x86_64"), put("foo", "1.2-1", "x86_64")
	listed := put("foo", "1.10-1", "x86_64")
	newer, newest := put("foo", "1.10-2", "x86_64"), put("foo", "1:0.1-1", "x86_64")
	otherArch := put("foo", "1.0-1", "aarch64")
	otherName := put("foo-bar", "1.0-1", "x86_64")
	noName := storetest.Put(t, s, []byte("not a package"), store.BlobInfo{}, nil)
	// The current db lists foo 1.10-1: it stays although not among the newest 2.
	db := storetest.DB(t, []repodb.Entry{storetest.NewPackage("foo", "1.10-1", "x86_64", 100).Entry}, false)
	if _, err := s.PutDB("core", "x86_64", "core.db", bytes.NewReader(db), time.Now()); err != nil {
		t.Fatal(err)
	}
	// Just used: spared for now (someone may still be downloading them).
	if removed, _, err := s.Prune(); err != nil || removed != 0 {
		t.Fatalf("Prune within the grace period = %d, %v; want 0", removed, err)
	}
	s.SetClock(func() time.Time { return time.Now().Add(time.Hour) })
	removed, freed, err := s.Prune()
	if err != nil {
		t.Fatal(err)
	}
	if removed != 2 || freed != 200 {
		t.Errorf("Prune = %d removed, %d freed; want 2, 200", removed, freed)
	}
	for c, want := range map[cid.Cid]bool{old1: false, old2: false, listed: true, newer: true, newest: true,
		otherArch: true, otherName: true, noName: true} {
		if s.Has(c) != want {
			t.Errorf("blob %s present = %v, want %v", c, !want, want)
		}
	}
}

func TestPruneQuotaLRU(t *testing.T) {
	t.Parallel()
	s := openAt(t, store.Config{Dir: t.TempDir(), MaxBytes: 2500})
	var blobs []cid.Cid
	var pkgs []storetest.Package
	for i := range 4 {
		p := storetest.NewPackage(fmt.Sprintf("p%d", i), "1-1", "any", 1000)
		pkgs = append(pkgs, p)
		blobs = append(blobs, storetest.Put(t, s, p.Data, store.BlobInfo{Filename: p.Entry.Filename}, nil))
		time.Sleep(2 * time.Millisecond)
	}
	f, _, err := s.OpenBlob(blobs[1]) // p1 is now the most recently used
	if err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	// p0 is the least recently used but listed by the db: unlisted go first.
	db := storetest.DB(t, []repodb.Entry{pkgs[0].Entry}, false)
	if _, err := s.PutDB("core", "x86_64", "core.db", bytes.NewReader(db), time.Now()); err != nil {
		t.Fatal(err)
	}
	removed, freed, err := s.Prune()
	if err != nil || removed != 2 || freed != 2000 {
		t.Fatalf("Prune = %d, %d, %v; want 2, 2000", removed, freed, err)
	}
	for i, want := range []bool{true, true, false, false} {
		if s.Has(blobs[i]) != want {
			t.Errorf("p%d present = %v, want %v", i, !want, want)
		}
	}
	// Still over quota with listed blobs only: they go too, LRU first.
	s2 := openAt(t, store.Config{Dir: t.TempDir(), MaxBytes: 1000})
	a := storetest.Put(t, s2, pkgs[0].Data, store.BlobInfo{}, nil)
	time.Sleep(2 * time.Millisecond)
	b := storetest.Put(t, s2, pkgs[1].Data, store.BlobInfo{}, nil)
	if _, err := s2.PutDB("core", "x86_64", "core.db", bytes.NewReader(storetest.DB(t, []repodb.Entry{pkgs[0].Entry, pkgs[1].Entry}, false)), time.Now()); err != nil {
		t.Fatal(err)
	}
	if removed, _, err := s2.Prune(); err != nil || removed != 1 || s2.Has(a) || !s2.Has(b) {
		t.Errorf("hard quota: removed %d (%v), a present %v, b present %v; want 1, false, true", removed, err, s2.Has(a), s2.Has(b))
	}
}

// TestRunPrunesAfterPutDB: Run prunes when a new db arrives, and returns
// when its context ends.
func TestRunPrunesAfterPutDB(t *testing.T) {
	t.Parallel()
	s := openAt(t, store.Config{Dir: t.TempDir(), KeepVersions: 1})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	oldPkg, newPkg := storetest.NewPackage("foo", "1-1", "any", 10), storetest.NewPackage("foo", "2-1", "any", 10)
	oldBlob := storetest.Put(t, s, oldPkg.Data, store.BlobInfo{Filename: oldPkg.Entry.Filename}, nil)
	storetest.Put(t, s, newPkg.Data, store.BlobInfo{Filename: newPkg.Entry.Filename}, nil)
	s.SetClock(func() time.Time { return time.Now().Add(time.Hour) }) // past the grace period
	db := storetest.DB(t, []repodb.Entry{newPkg.Entry}, false)
	if _, err := s.PutDB("core", "x86_64", "core.db", bytes.NewReader(db), time.Now()); err != nil {
		t.Fatal(err)
	}
	for s.Has(oldBlob) {
		select {
		case <-t.Context().Done():
			t.Fatal("old version never pruned")
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
}

// FuzzPutGet: whatever bytes go in through a Pending, in whatever chunks,
// come back out of OpenBlob and of a reader.
func FuzzPutGet(f *testing.F) {
	s, err := store.Open(store.Config{Dir: f.TempDir()})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = s.Close() })
	f.Add([]byte{}, uint16(1))
	f.Add([]byte("hello, pacman"), uint16(3))
	f.Add(storetest.RandomBytes(1, 70000), uint16(4096))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint16) {
		c := storetest.CIDOf(t, data)
		p, leader, err := s.Begin(c, int64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		if leader {
			step := int(chunk)%(len(data)+1) + 1
			for i := 0; i < len(data); i += step {
				if _, err := p.Write(data[i:min(i+step, len(data))]); err != nil {
					t.Fatal(err)
				}
			}
			if err := p.Commit(store.BlobInfo{CID: c}, nil); err != nil {
				t.Fatal(err)
			}
		}
		if got := storetest.ReadBlob(t, s, c); !bytes.Equal(got, data) {
			t.Fatalf("OpenBlob returned %d bytes, want %d", len(got), len(data))
		}
		r := p.NewReader(t.Context(), 0)
		defer r.Close()
		if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("reader returned %d bytes, %v", len(got), err)
		}
	})
}

// TestDiskErrors: a failed write or fsync aborts the download with a clear
// error, keeps every stored blob and leaves no temp file.
func TestDiskErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		err        error
		writeLimit int64
		failSync   bool
	}{
		{"disk full on write", syscall.ENOSPC, 1000, false},
		{"io error on fsync", syscall.EIO, 1 << 40, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			s := openAt(t, store.Config{Dir: dir})
			kept := storetest.RandomBytes(1, 5000)
			keptCID := storetest.Put(t, s, kept, store.BlobInfo{}, nil)
			data := storetest.RandomBytes(2, 3000)
			c := storetest.CIDOf(t, data)
			s.FailTemp(tt.err, tt.writeLimit, tt.failSync)
			p, _, err := s.Begin(c, int64(len(data)))
			if err != nil {
				t.Fatal(err)
			}
			s.FailTemp(nil, 0, false)
			r := p.NewReader(t.Context(), 0)
			defer r.Close()
			var writeErr error
			for off := 0; off < len(data) && writeErr == nil; off += 500 {
				_, writeErr = p.Write(data[off : off+500])
			}
			if writeErr == nil {
				writeErr = p.Commit(store.BlobInfo{CID: c}, nil)
			}
			if !errors.Is(writeErr, tt.err) {
				t.Fatalf("leader got %v, want %v", writeErr, tt.err)
			}
			if _, err := io.ReadAll(r); !errors.Is(err, store.ErrAborted) || !errors.Is(err, tt.err) {
				t.Errorf("reader got %v, want ErrAborted wrapping %v", err, tt.err)
			}
			if s.Has(c) {
				t.Error("failed download stored")
			}
			if left := dirNames(t, filepath.Join(dir, "tmp")); len(left) != 0 {
				t.Errorf("temp files left: %v", left)
			}
			if got := storetest.ReadBlob(t, s, keptCID); !bytes.Equal(got, kept) {
				t.Error("stored blob changed")
			}
			// The next attempt starts afresh and succeeds.
			storetest.Put(t, s, data, store.BlobInfo{}, nil)
		})
	}
}

// TestPutDBReadError: a db download cut midway is refused, the previous db
// and its entries stay, no temp file is left.
func TestPutDBReadError(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openAt(t, store.Config{Dir: dir})
	pkg := storetest.NewPackage("foo", "1-1", "any", 10)
	good := storetest.DB(t, []repodb.Entry{pkg.Entry}, false)
	if _, err := s.PutDB("core", "x86_64", "core.db", bytes.NewReader(good), time.Now()); err != nil {
		t.Fatal(err)
	}
	cut := errors.New("connection reset")
	next := storetest.DB(t, []repodb.Entry{storetest.NewPackage("bar", "1-1", "any", 10).Entry}, false)
	r := io.MultiReader(bytes.NewReader(next[:len(next)/2]), iotest.ErrReader(cut))
	if _, err := s.PutDB("core", "x86_64", "core.db", r, time.Now()); !errors.Is(err, cut) {
		t.Fatalf("PutDB = %v, want the read error", err)
	}
	f, file, err := s.OpenDB("core", "x86_64", "core.db")
	if err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	if !file.CID.Equals(storetest.CIDOf(t, good)) {
		t.Error("previous db replaced")
	}
	if _, err := s.Entry("core", "x86_64", pkg.Entry.Filename); err != nil {
		t.Errorf("previous entries lost: %v", err)
	}
	if left := dirNames(t, filepath.Join(dir, "tmp")); len(left) != 0 {
		t.Errorf("temp files left: %v", left)
	}
}

// TestCloseDuringUse: operations racing Close either work or report
// ErrClosed; none reaches a closed index.
func TestCloseDuringUse(t *testing.T) {
	t.Parallel()
	s, err := store.Open(store.Config{Dir: t.TempDir(), KeepVersions: 1})
	if err != nil {
		t.Fatal(err)
	}
	c := storetest.Put(t, s, []byte("blob"), store.BlobInfo{}, nil)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := 0; ; j++ {
				f, _, err := s.OpenBlob(c)
				if err == nil {
					_ = f.Close()
				}
				errs := []error{err, s.PutMeta("ns", fmt.Sprint(i, j), []byte("v"))}
				_, _, pruneErr := s.Prune()
				errs = append(errs, pruneErr)
				for _, err := range errs {
					if errors.Is(err, store.ErrClosed) {
						return
					}
					if err != nil {
						t.Errorf("operation during Close: %v", err)
						return
					}
				}
			}
		})
	}
	time.Sleep(20 * time.Millisecond) // let the workers run
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
}

// TestReadersReleasedBeforeFsync: once Commit has proven the bytes, readers
// get the last byte and EOF while the blob is still being made durable, and
// Info tells what the blob is; the commit then completes.
func TestReadersReleasedBeforeFsync(t *testing.T) {
	t.Parallel()
	s := openTemp(t)
	release := make(chan struct{})
	s.HoldSync(release)
	data := bytes.Repeat([]byte("durable later "), 5000)
	c := storetest.CIDOf(t, data)
	p, leader, err := s.Begin(c, int64(len(data)))
	if err != nil || !leader {
		t.Fatalf("Begin: leader=%v err=%v", leader, err)
	}
	if _, err := p.Write(data); err != nil {
		t.Fatal(err)
	}
	if _, ok := p.Info(); ok {
		t.Fatal("Info before Commit")
	}
	committed := make(chan error, 1)
	go func() {
		committed <- p.Commit(store.BlobInfo{Filename: "x-1-1-any.pkg.tar.zst", Identity: "x-1-1-any"}, nil)
	}()
	<-p.Verified()
	rd := p.NewReader(t.Context(), 0)
	got, err := io.ReadAll(rd)
	rd.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("reader during the fsync: %d bytes, %v; want all %d", len(got), err, len(data))
	}
	if info, ok := p.Info(); !ok || info.Identity != "x-1-1-any" || info.Size != int64(len(data)) {
		t.Fatalf("Info = %+v, %v", info, ok)
	}
	select {
	case err := <-committed:
		t.Fatalf("Commit returned (%v) while its fsync was held", err)
	default:
	}
	close(release)
	if err := <-committed; err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if !s.Has(c) {
		t.Fatal("blob not stored after Commit")
	}
}

// TestAbsentRowCachedUntilWritten: the store remembers that a blob is not
// stored (a cold request asks several times), and every write of its row
// ends that: after Commit it is stored, after RemoveBlob it is gone.
func TestAbsentRowCachedUntilWritten(t *testing.T) {
	t.Parallel()
	s := openTemp(t)
	data := bytes.Repeat([]byte("absent, then stored "), 3000)
	c := storetest.CIDOf(t, data)
	for range 3 {
		if s.Has(c) {
			t.Fatal("Has before any download")
		}
		if _, _, err := s.OpenBlob(c); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("OpenBlob before any download: %v, want ErrNotFound", err)
		}
	}
	p, leader, err := s.Begin(c, int64(len(data)))
	if err != nil || !leader {
		t.Fatalf("Begin: leader=%v err=%v", leader, err)
	}
	if _, err := p.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := p.Commit(store.BlobInfo{Filename: "a-1-1-any.pkg.tar.zst", Identity: "a-1-1-any"}, nil); err != nil {
		t.Fatal(err)
	}
	if !s.Has(c) {
		t.Fatal("a cached absence hid the committed blob")
	}
	f, info, err := s.OpenBlob(c)
	if err != nil || info.Size != int64(len(data)) {
		t.Fatalf("OpenBlob after Commit: %+v, %v", info, err)
	}
	f.Close()
	if err := s.RemoveBlob(c); err != nil {
		t.Fatal(err)
	}
	if s.Has(c) {
		t.Fatal("Has after RemoveBlob")
	}
}
