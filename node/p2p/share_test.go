package p2p

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ipfs/go-cid"
	"github.com/klauspost/compress/zstd"

	"github.com/flocon/flocon/store/repodb"
	"github.com/flocon/flocon/store/storetest"
)

// makeTestPackage builds a zstd package archive whose .PKGINFO names it.
func makeTestPackage(t *testing.T, name, version, arch string) []byte {
	t.Helper()
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	pkginfo := fmt.Sprintf("pkgname = %s\npkgbase = %s\npkgver = %s\narch = %s\nsize = 10\n", name, name, version, arch)
	body := storetest.RandomBytes(uint64(len(name)), 64<<10)
	for _, m := range []struct {
		name string
		body []byte
	}{{".PKGINFO", []byte(pkginfo)}, {"usr/share/" + name + "/data", body}} {
		hdr := &tar.Header{Name: m.name, Mode: 0o644, Size: int64(len(m.body)), ModTime: time.Unix(1700000000, 0)}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(m.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	zw, err := zstd.NewWriter(&out)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(raw.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// sharedPkg writes a package (and its .sig when signer is set) into dir.
func sharedPkg(t *testing.T, dir, file string, data []byte, signer *openpgp.Entity) (cid.Cid, []byte) {
	t.Helper()
	var sig []byte
	if signer != nil {
		sig = sign(t, signer, data)
		if err := os.WriteFile(filepath.Join(dir, file+".sig"), sig, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, file), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return cidOf(t, data), sig
}

// fingerprint is every file of dir with its size, mtime and sha256.
func fingerprint(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := e.Info()
		out[e.Name()] = fmt.Sprintf("%d %d %x", fi.Size(), fi.ModTime().UnixNano(), sha256.Sum256(b))
	}
	return out
}

// TestShareDirs: a shared pacman cache is verified file by file (the .sig
// beside it with the .PKGINFO identity check, or the db entry's signature),
// offered and served to peers byte-identical, never modified; files that
// fail are not offered; a new file is picked up without a restart; a file
// that rots is caught while serving and dropped, not touched.
func TestShareDirs(t *testing.T) {
	t.Parallel()
	keys := testKeyring(t)
	dir := t.TempDir()
	st := newMemStore(t)

	hello := makeTestPackage(t, "hello", "1.0-1", "x86_64")
	helloCID, helloSig := sharedPkg(t, dir, "hello-1.0-1-x86_64.pkg.tar.zst", hello, keys.packager)
	// Validly signed, but another package under this name (substitution).
	_, _ = sharedPkg(t, dir, "hello-9.9-1-x86_64.pkg.tar.zst", makeTestPackage(t, "evil", "1.0-1", "x86_64"), keys.packager)
	// Signed by a key that is not in the keyring.
	strangerCID, _ := sharedPkg(t, dir, "odd-1.0-1-x86_64.pkg.tar.zst", makeTestPackage(t, "odd", "1.0-1", "x86_64"), keys.stranger)
	// No .sig and no db entry: nothing to verify it with.
	nosigCID, _ := sharedPkg(t, dir, "nosig-1.0-1-x86_64.pkg.tar.zst", makeTestPackage(t, "nosig", "1.0-1", "x86_64"), nil)
	// No .sig, but the db entry (found by CID) carries %PGPSIG%.
	dbonly := makeTestPackage(t, "dbonly", "1.0-1", "x86_64")
	dbonlyCID, _ := sharedPkg(t, dir, "dbonly-1.0-1-x86_64.pkg.tar.zst", dbonly, nil)
	st.entries[dbonlyCID] = repodb.Entry{Filename: "dbonly-1.0-1-x86_64.pkg.tar.zst", Arch: "x86_64", PGPSig: sign(t, keys.packager, dbonly)}
	before := fingerprint(t, dir)

	a := startNode(t, st, func(c *Config) { c.Keyring, c.ShareDirs = keys.keyring, []string{dir} })
	b := startNode(t, newMemStore(t), withBootstrap(a))
	waitConnected(t, b.s.h, a.id())
	waitFor(t, "the shared dir index", func() bool { return a.s.shared.len() >= 2 })

	for _, tt := range []struct {
		name  string
		c     cid.Cid
		want  []byte
		offer bool
	}{
		{"signed with .sig", helloCID, hello, true},
		{"db entry signature", dbonlyCID, dbonly, true},
		{"unknown key", strangerCID, nil, false},
		{"no signature", nosigCID, nil, false},
	} {
		srcs := b.peerSources(t.Context(), tt.c)
		if (len(srcs) == 1) != tt.offer {
			t.Fatalf("%s: %d sources, offered want %v", tt.name, len(srcs), tt.offer)
		}
		if !tt.offer {
			continue
		}
		var got bytes.Buffer
		if _, err := srcs[0].Fetch(t.Context(), tt.c, 0, &got); err != nil || !bytes.Equal(got.Bytes(), tt.want) {
			t.Fatalf("%s: fetch = %v, identical %v", tt.name, err, bytes.Equal(got.Bytes(), tt.want))
		}
	}
	if a.s.shared.len() != 2 {
		t.Fatalf("shared index holds %d files, want 2 (the substituted package must be refused)", a.s.shared.len())
	}
	if sig, _, err := b.peerSignature(t.Context(), helloCID); err != nil || !bytes.Equal(sig, helloSig) {
		t.Fatalf("signature of a shared file: %v", err)
	}

	// A new file shows up without a restart.
	late := makeTestPackage(t, "late", "2.0-1", "x86_64")
	lateCID, _ := sharedPkg(t, dir, "late-2.0-1-x86_64.pkg.tar.zst", late, keys.packager)
	waitFor(t, "the new shared file", func() bool { _, ok := a.s.shared.get(lateCID); return ok })
	delete(before, "late-2.0-1-x86_64.pkg.tar.zst")
	delete(before, "late-2.0-1-x86_64.pkg.tar.zst.sig")
	after := fingerprint(t, dir)
	delete(after, "late-2.0-1-x86_64.pkg.tar.zst")
	delete(after, "late-2.0-1-x86_64.pkg.tar.zst.sig")
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Fatal("the node modified a shared directory")
	}

	// The file rots (same size): never sent whole, dropped from the index,
	// left on disk as it is.
	path := filepath.Join(dir, "hello-1.0-1-x86_64.pkg.tar.zst")
	rotten := bytes.Clone(hello)
	rotten[len(rotten)/2] ^= 0xff
	if err := os.WriteFile(path, rotten, 0o644); err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	n, err := (&peerSource{s: b.s, p: a.id()}).Fetch(t.Context(), helloCID, 0, &got)
	if err == nil || n >= int64(len(hello)) {
		t.Fatalf("rotten shared file served whole: %d bytes, %v", n, err)
	}
	waitFor(t, "the rotten file to leave the index", func() bool { _, ok := a.s.shared.get(helloCID); return !ok })
	if disk, _ := os.ReadFile(path); !bytes.Equal(disk, rotten) {
		t.Fatal("the node changed a shared file")
	}
	if b.s.bans.banned(a.id()) {
		t.Fatal("a node that caught its own rotten file was banned")
	}
}
