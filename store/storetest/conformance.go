package storetest

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"

	"github.com/flocon/flocon/store"
	"github.com/flocon/flocon/store/repodb"
	"github.com/flocon/flocon/verify"
)

// Conformance runs the behaviour every store must have against stores made
// by open (a fresh, empty store per call, closed by open's cleanup).
func Conformance(t *testing.T, open func(t *testing.T) *store.Store) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s *store.Store)
	}{
		{"RoundTrip", testRoundTrip},
		{"Missing", testMissing},
		{"InvalidCID", testInvalidCID},
		{"CommitRefusesWrongBytes", testCommitRefusesWrongBytes},
		{"SizeMismatch", testSizeMismatch},
		{"BeginStoredBlob", testBeginStoredBlob},
		{"RemoveBlob", testRemoveBlob},
		{"Blobs", testBlobs},
		{"Meta", testMeta},
		{"PutDB", testPutDB},
		{"PutDBGenerations", testPutDBGenerations},
		{"PutDBRefusesBadDB", testPutDBRefusesBadDB},
		{"InvalidNames", testInvalidNames},
		{"Stats", testStats},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, open(t))
		})
	}
	PendingConformance(t, open)
}

// tmpFiles lists the store's temp dir ($DATA/tmp, next to $DATA/blobs).
func tmpFiles(t *testing.T, s *store.Store) []string {
	t.Helper()
	dir := filepath.Join(filepath.Dir(filepath.Dir(s.BlobPath(CIDOf(t, nil)))), "tmp")
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

func testRoundTrip(t *testing.T, s *store.Store) {
	for i, size := range []int{0, 1, 4095, 1<<20 + 3} {
		data := RandomBytes(uint64(i), size)
		before := time.Now().Add(-time.Second)
		info := store.BlobInfo{Repo: "core", Arch: "x86_64", Filename: "x-1-1-x86_64.pkg.tar.zst", Signer: "ABCD"}
		c := Put(t, s, data, info, []byte("sig"))
		if !s.Has(c) {
			t.Fatalf("size %d: Has = false after Commit", size)
		}
		f, got, err := s.OpenBlob(c)
		if err != nil {
			t.Fatalf("size %d: OpenBlob: %v", size, err)
		}
		b, err := io.ReadAll(f)
		_ = f.Close()
		if err != nil || !bytes.Equal(b, data) {
			t.Fatalf("size %d: read back %d bytes (%v), want the %d written", size, len(b), err, size)
		}
		if !got.CID.Equals(c) || got.Size != int64(size) || got.Repo != "core" || got.Filename != info.Filename ||
			got.Signer != "ABCD" || got.Added.Before(before) || got.LastAccess.Before(before) {
			t.Errorf("size %d: BlobInfo = %+v", size, got)
		}
		st, err := os.Stat(s.BlobPath(c))
		if err != nil || st.Mode().Perm() != 0o444 {
			t.Errorf("size %d: blob file %v, %v; want mode 0444", size, st, err)
		}
		if sig, err := s.Sig(c); err != nil || string(sig) != "sig" {
			t.Errorf("size %d: Sig = %q, %v", size, sig, err)
		}
		if byName, err := s.BlobByFilename(info.Filename); err != nil || !byName.CID.Equals(c) {
			t.Errorf("size %d: BlobByFilename = %+v, %v", size, byName, err)
		}
	}
	if left := tmpFiles(t, s); len(left) != 0 {
		t.Errorf("temp files left after commits: %v", left)
	}
}

func testMissing(t *testing.T, s *store.Store) {
	c := CIDOf(t, []byte("never stored"))
	if s.Has(c) {
		t.Error("Has = true for a blob never stored")
	}
	if _, _, err := s.OpenBlob(c); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("OpenBlob = %v, want ErrNotFound", err)
	}
	if _, err := s.Sig(c); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Sig = %v, want ErrNotFound", err)
	}
	if _, _, _, err := s.EntryByCID(c); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("EntryByCID = %v, want ErrNotFound", err)
	}
	if _, err := s.Entry("core", "x86_64", "x-1-1-any.pkg.tar.zst"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Entry = %v, want ErrNotFound", err)
	}
	if _, _, err := s.OpenDB("core", "x86_64", "core.db"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("OpenDB = %v, want ErrNotFound", err)
	}
	if _, err := s.Meta("bans", "peer"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Meta = %v, want ErrNotFound", err)
	}
	if p := s.Inflight(c); p != nil {
		t.Errorf("Inflight = %v, want nil", p)
	}
}

func testInvalidCID(t *testing.T, s *store.Store) {
	sha1, err := mh.Sum([]byte("x"), mh.SHA1, -1)
	if err != nil {
		t.Fatal(err)
	}
	v0sum, err := mh.Sum([]byte("x"), mh.SHA2_256, -1)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []cid.Cid{cid.Undef, cid.NewCidV1(cid.Raw, sha1), cid.NewCidV0(v0sum), cid.NewCidV1(cid.DagProtobuf, v0sum)} {
		if _, _, err := s.Begin(c, 1); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("Begin(%s) = %v, want ErrInvalid", c, err)
		}
		if _, _, err := s.OpenBlob(c); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("OpenBlob(%s) = %v, want ErrInvalid", c, err)
		}
		if err := s.PutSig(c, []byte("s")); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("PutSig(%s) = %v, want ErrInvalid", c, err)
		}
	}
}

func testCommitRefusesWrongBytes(t *testing.T, s *store.Store) {
	want, bad := RandomBytes(1, 5000), RandomBytes(2, 5000)
	c := CIDOf(t, want)
	p, _, err := s.Begin(c, int64(len(want)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Write(bad); err != nil {
		t.Fatal(err)
	}
	err = p.Commit(store.BlobInfo{CID: c}, nil)
	if !errors.Is(err, verify.ErrDigestMismatch) {
		t.Fatalf("Commit of wrong bytes = %v, want ErrDigestMismatch", err)
	}
	if !errors.Is(p.Err(), store.ErrAborted) || !errors.Is(p.Err(), verify.ErrDigestMismatch) {
		t.Errorf("Err = %v, want ErrAborted wrapping ErrDigestMismatch", p.Err())
	}
	if s.Has(c) {
		t.Error("wrong bytes were stored")
	}
	if _, err := os.Stat(s.BlobPath(c)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("blob file exists after a refused commit: %v", err)
	}
	if left := tmpFiles(t, s); len(left) != 0 {
		t.Errorf("temp files left: %v", left)
	}
	if s.Inflight(c) != nil {
		t.Error("aborted download still in flight")
	}
	// A wrong CID in info is refused without touching the download.
	p2, _, err := s.Begin(c, int64(len(want)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p2.Write(want); err != nil {
		t.Fatal(err)
	}
	if err := p2.Commit(store.BlobInfo{CID: CIDOf(t, bad)}, nil); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("Commit under another CID = %v, want ErrInvalid", err)
	}
	if err := p2.Commit(store.BlobInfo{}, nil); err != nil {
		t.Errorf("Commit with the CID left empty: %v", err)
	}
}

func testSizeMismatch(t *testing.T, s *store.Store) {
	data := RandomBytes(3, 100)
	c := CIDOf(t, data)
	p, _, err := s.Begin(c, 100)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Write(append(data, 'x')); !errors.Is(err, verify.ErrSizeMismatch) {
		t.Fatalf("Write past Size = %v, want ErrSizeMismatch", err)
	}
	if p.Written() != 0 || p.Err() != nil {
		t.Fatalf("after a refused Write: written %d, err %v; want 0, nil", p.Written(), p.Err())
	}
	if _, err := p.Write(data[:60]); err != nil {
		t.Fatal(err)
	}
	if err := p.Commit(store.BlobInfo{CID: c}, nil); !errors.Is(err, verify.ErrSizeMismatch) {
		t.Fatalf("Commit short = %v, want ErrSizeMismatch", err)
	}
	if s.Has(c) {
		t.Error("short blob stored")
	}
}

func testBeginStoredBlob(t *testing.T, s *store.Store) {
	data := RandomBytes(4, 3000)
	c := Put(t, s, data, store.BlobInfo{}, nil)
	p, leader, err := s.Begin(c, int64(len(data)))
	if err != nil || leader {
		t.Fatalf("Begin on a stored blob = leader %v, %v; want a follower", leader, err)
	}
	select {
	case <-p.Done():
	default:
		t.Fatal("Pending of a stored blob is not done")
	}
	r := p.NewReader(t.Context(), 1000)
	defer r.Close()
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, data[1000:]) {
		t.Fatalf("read %d bytes, %v; want the stored tail", len(got), err)
	}
}

func testRemoveBlob(t *testing.T, s *store.Store) {
	const name = "gone-1-1-any.pkg.tar.zst"
	c := Put(t, s, RandomBytes(5, 10), store.BlobInfo{Filename: name}, []byte("sig"))
	if _, err := s.BlobByFilename(name); err != nil || !s.Has(c) { // rows read (and maybe cached) first
		t.Fatalf("blob before RemoveBlob: Has %v, BlobByFilename %v", s.Has(c), err)
	}
	if err := s.RemoveBlob(c); err != nil {
		t.Fatal(err)
	}
	if s.Has(c) {
		t.Error("Has after RemoveBlob")
	}
	if _, err := os.Stat(s.BlobPath(c)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("blob file after RemoveBlob: %v", err)
	}
	if _, err := s.Sig(c); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Sig after RemoveBlob = %v", err)
	}
	if _, err := s.BlobByFilename(name); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("BlobByFilename after RemoveBlob = %v", err)
	}
	if _, err := s.Info(c); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Info after RemoveBlob = %v", err)
	}
	if err := s.RemoveBlob(c); err != nil {
		t.Errorf("second RemoveBlob: %v", err)
	}
}

func testBlobs(t *testing.T, s *store.Store) {
	want := map[cid.Cid]int64{}
	for i := range 5 {
		data := RandomBytes(uint64(10+i), 100*(i+1))
		want[Put(t, s, data, store.BlobInfo{}, nil)] = int64(len(data))
	}
	got := map[cid.Cid]int64{}
	err := s.Blobs(func(info store.BlobInfo) error {
		got[info.CID] = info.Size
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("Blobs listed %d, want %d", len(got), len(want))
	}
	for c, size := range want {
		if got[c] != size {
			t.Errorf("blob %s: size %d, want %d", c, got[c], size)
		}
	}
	stop := errors.New("stop")
	if err := s.Blobs(func(store.BlobInfo) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("Blobs did not return fn's error: %v", err)
	}
}

func testMeta(t *testing.T, s *store.Store) {
	for _, kv := range [][2]string{{"b", "2"}, {"a", "1"}, {"c/with/slash", "3"}} {
		if err := s.PutMeta("bans", kv[0], []byte(kv[1])); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutMeta("peers", "a", []byte("other ns")); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Meta("bans", "a"); err != nil || string(v) != "1" {
		t.Errorf("Meta(bans, a) = %q, %v", v, err)
	}
	if err := s.PutMeta("bans", "b", nil); err != nil {
		t.Fatal(err)
	}
	var keys []string
	err := s.MetaList("bans", func(k string, v []byte) error {
		keys = append(keys, k+"="+string(v))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(keys, ","); got != "a=1,c/with/slash=3" {
		t.Errorf("MetaList(bans) = %v, want [a=1 c/with/slash=3]", keys)
	}
	for _, ns := range []string{"", "a/b", "../x"} {
		if err := s.PutMeta(ns, "k", []byte("v")); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("PutMeta(%q) = %v, want ErrInvalid", ns, err)
		}
	}
}

func testPutDB(t *testing.T, s *store.Store) {
	pkgs := []Package{NewPackage("acl", "2.3.2-1", "x86_64", 300), NewPackage("zstd", "1:1.5.6-1", "x86_64", 200)}
	entries := []repodb.Entry{pkgs[0].Entry, pkgs[1].Entry}
	raw := DB(t, entries, false)
	lm := time.Date(2025, 2, 14, 10, 0, 0, 0, time.UTC)
	file, err := s.PutDB("core", "x86_64", "core.db", bytes.NewReader(raw), lm)
	if err != nil {
		t.Fatalf("PutDB: %v", err)
	}
	if !file.CID.Equals(CIDOf(t, raw)) || file.Size != int64(len(raw)) || !file.LastModified.Equal(lm) {
		t.Errorf("DBFile = %+v", file)
	}
	f, got, err := s.OpenDB("core", "x86_64", "core.db")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(f)
	_ = f.Close()
	if !bytes.Equal(b, raw) || !got.CID.Equals(file.CID) || !got.LastModified.Equal(lm) {
		t.Errorf("OpenDB: %d bytes, %+v", len(b), got)
	}
	for _, p := range pkgs {
		e, err := s.Entry("core", "x86_64", p.Entry.Filename)
		if err != nil || e.SHA256 != p.Entry.SHA256 || e.Version != p.Entry.Version || e.Fields["DEPENDS"][0] != "glibc" {
			t.Errorf("Entry %s = %+v, %v", p.Entry.Filename, e, err)
		}
		repo, arch, e, err := s.EntryByCID(CIDOf(t, p.Data))
		if err != nil || repo != "core" || arch != "x86_64" || e.Filename != p.Entry.Filename {
			t.Errorf("EntryByCID %s = %s %s %+v, %v", p.Entry.Filename, repo, arch, e, err)
		}
	}
	// The same bytes again only move Last-Modified.
	lm2 := lm.Add(time.Hour)
	again, err := s.PutDB("core", "x86_64", "core.db", bytes.NewReader(raw), lm2)
	if err != nil || !again.CID.Equals(file.CID) || !again.LastModified.Equal(lm2) {
		t.Errorf("PutDB of the same bytes = %+v, %v", again, err)
	}
	f, got, err = s.OpenDB("core", "x86_64", "core.db")
	if err != nil {
		t.Fatalf("OpenDB after the same bytes: %v", err)
	}
	_ = f.Close()
	if !got.LastModified.Equal(lm2) {
		t.Errorf("OpenDB after the same bytes: Last-Modified %v, want %v", got.LastModified, lm2)
	}
	if _, err := s.Entry("core", "x86_64", pkgs[0].Entry.Filename); err != nil {
		t.Errorf("Entry after the same bytes: %v", err)
	}
	// A signature file is stored, not parsed.
	if _, err := s.PutDB("core", "x86_64", "core.db.sig", bytes.NewReader([]byte("not a db")), lm); err != nil {
		t.Errorf("PutDB of a .sig: %v", err)
	}
	// A .files database (desc + files per entry) gives the same entries.
	if _, err := s.PutDB("core", "x86_64", "core.files", bytes.NewReader(DB(t, entries, true)), lm); err != nil {
		t.Fatalf("PutDB core.files: %v", err)
	}
	if _, err := s.Entry("core", "x86_64", pkgs[1].Entry.Filename); err != nil {
		t.Errorf("Entry after core.files: %v", err)
	}
}

func testPutDBGenerations(t *testing.T, s *store.Store) {
	old := NewPackage("foo", "1.0-1", "x86_64", 100)
	keep := NewPackage("bar", "2.0-1", "x86_64", 100)
	next := NewPackage("foo", "1.1-1", "x86_64", 100)
	gen1 := DB(t, []repodb.Entry{old.Entry, keep.Entry}, false)
	f1, err := s.PutDB("extra", "x86_64", "extra.db", bytes.NewReader(gen1), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	oldBlob := Put(t, s, old.Data, store.BlobInfo{Repo: "extra", Arch: "x86_64", Filename: old.Entry.Filename}, nil)
	// Read every row first: a store that caches rows must not answer from
	// the previous generation afterwards.
	for _, p := range []Package{old, keep} {
		if _, err := s.Entry("extra", "x86_64", p.Entry.Filename); err != nil {
			t.Fatalf("entry %s: %v", p.Entry.Filename, err)
		}
	}
	if _, _, _, err := s.EntryByCID(oldBlob); err != nil {
		t.Fatalf("EntryByCID of the first generation: %v", err)
	}
	if _, err := s.PutDB("extra", "x86_64", "extra.db", bytes.NewReader(DB(t, []repodb.Entry{next.Entry, keep.Entry}, false)), time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Entry("extra", "x86_64", old.Entry.Filename); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("entry of the previous generation: %v, want ErrNotFound", err)
	}
	if _, _, _, err := s.EntryByCID(oldBlob); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("EntryByCID of the previous generation: %v, want ErrNotFound", err)
	}
	for _, p := range []Package{keep, next} {
		if _, err := s.Entry("extra", "x86_64", p.Entry.Filename); err != nil {
			t.Errorf("entry %s: %v", p.Entry.Filename, err)
		}
	}
	if !s.Has(oldBlob) {
		t.Error("blob of a package dropped from the db was removed (retention decides, not PutDB)")
	}
	if _, err := os.Stat(s.BlobPath(f1.CID)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("blob of the replaced db file still there: %v", err)
	}
}

func testPutDBRefusesBadDB(t *testing.T, s *store.Store) {
	pkg := NewPackage("foo", "1.0-1", "any", 10)
	good := DB(t, []repodb.Entry{pkg.Entry}, false)
	if _, err := s.PutDB("core", "x86_64", "core.db", bytes.NewReader(good), time.Now()); err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string][]byte{"truncated": good[:len(good)-20], "garbage": []byte("<html>mirror error</html>")} {
		if _, err := s.PutDB("core", "x86_64", "core.db", bytes.NewReader(bad), time.Now()); !errors.Is(err, repodb.ErrFormat) {
			t.Errorf("PutDB %s = %v, want ErrFormat", name, err)
		}
	}
	f, file, err := s.OpenDB("core", "x86_64", "core.db")
	if err != nil {
		t.Fatalf("previous db lost: %v", err)
	}
	b, _ := io.ReadAll(f)
	_ = f.Close()
	if !bytes.Equal(b, good) || !file.CID.Equals(CIDOf(t, good)) {
		t.Error("previous db replaced by a refused one")
	}
	if _, err := s.Entry("core", "x86_64", pkg.Entry.Filename); err != nil {
		t.Errorf("entries lost after a refused db: %v", err)
	}
	if left := tmpFiles(t, s); len(left) != 0 {
		t.Errorf("temp files left: %v", left)
	}
}

func testInvalidNames(t *testing.T, s *store.Store) {
	for _, n := range []string{"", "..", "../core", ".hidden", "-x", "a/b", "a\x00b", "a b", "a\\b", "é"} {
		if _, err := s.PutDB(n, "x86_64", "core.db", bytes.NewReader(nil), time.Time{}); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("PutDB repo %q = %v, want ErrInvalid", n, err)
		}
		if _, err := s.PutDB("core", n, "core.db", bytes.NewReader(nil), time.Time{}); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("PutDB arch %q = %v, want ErrInvalid", n, err)
		}
		if _, _, err := s.OpenDB("core", "x86_64", n); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("OpenDB name %q = %v, want ErrInvalid", n, err)
		}
		if _, err := s.Entry(n, "x86_64", "a-1-1-any.pkg.tar.zst"); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("Entry repo %q = %v, want ErrInvalid", n, err)
		}
	}
	if _, err := s.Entry("core", "x86_64", "../../etc/passwd"); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("Entry with a path = %v, want ErrInvalid", err)
	}
	if _, err := s.BlobByFilename("../x.pkg.tar.zst"); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("BlobByFilename with a path = %v, want ErrInvalid", err)
	}
}

func testStats(t *testing.T, s *store.Store) {
	Put(t, s, RandomBytes(20, 1000), store.BlobInfo{}, nil)
	Put(t, s, RandomBytes(21, 500), store.BlobInfo{}, nil)
	pkg := NewPackage("foo", "1-1", "any", 10)
	raw := DB(t, []repodb.Entry{pkg.Entry}, false)
	if _, err := s.PutDB("core", "x86_64", "core.db", bytes.NewReader(raw), time.Now()); err != nil {
		t.Fatal(err)
	}
	p, _, err := s.Begin(CIDOf(t, []byte("in flight")), -1)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Abort(nil)
	want := store.Stats{Blobs: 2, Bytes: 1500, Inflight: 1, DBFiles: 1, DBBytes: int64(len(raw)), Entries: 1}
	if got := s.Stats(); got != want {
		t.Errorf("Stats = %+v, want %+v", got, want)
	}
}
