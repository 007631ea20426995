package storetest

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/ipfs/go-cid"

	"github.com/flocon/flocon/store"
	"github.com/flocon/flocon/store/repodb"
	"github.com/flocon/flocon/verify"
)

// CIDOf returns the CID of data.
func CIDOf(t testing.TB, data []byte) cid.Cid {
	t.Helper()
	sum := sha256.Sum256(data)
	c, err := verify.CIDFromSHA256(sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// RandomBytes returns n deterministic pseudo-random bytes.
func RandomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// Put stores data as a verified blob through Begin, Write and Commit.
func Put(t testing.TB, s *store.Store, data []byte, info store.BlobInfo, sig []byte) cid.Cid {
	t.Helper()
	c := CIDOf(t, data)
	p, leader, err := s.Begin(c, int64(len(data)))
	if err != nil {
		t.Fatalf("Begin: %v", err)
	}
	if !leader {
		t.Fatalf("Begin %s: not leader", c)
	}
	if _, err := p.Write(data); err != nil {
		t.Fatalf("Write: %v", err)
	}
	info.CID = c
	if err := p.Commit(info, sig); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	return c
}

// ReadBlob returns the content of blob c.
func ReadBlob(t testing.TB, s *store.Store, c cid.Cid) []byte {
	t.Helper()
	f, _, err := s.OpenBlob(c)
	if err != nil {
		t.Fatalf("OpenBlob %s: %v", c, err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Package is a fake package file and its db entry.
type Package struct {
	Entry repodb.Entry
	Data  []byte
}

// NewPackage makes a package file of size bytes and its entry.
func NewPackage(name, version, arch string, size int) Package {
	data := RandomBytes(uint64(len(name)*131+len(version)*7+size), size)
	copy(data, name+"-"+version+"-"+arch)
	sum := sha256.Sum256(data)
	return Package{
		Data: data,
		Entry: repodb.Entry{
			Filename: fmt.Sprintf("%s-%s-%s.pkg.tar.zst", name, version, arch),
			Name:     name, Base: name, Version: version, Arch: arch, Desc: "test package " + name,
			CSize: int64(size), ISize: int64(size) * 3, SHA256: hex.EncodeToString(sum[:]),
			PGPSig:    []byte{0x88, 0x75, 0x04},
			BuildDate: 1700000000, Packager: "Test <test@example.org>",
			Fields: map[string][]string{"DEPENDS": {"glibc"}, "LICENSE": {"MIT"}},
		},
	}
}

// DB returns a gzip'd sync database listing entries (a .files db when files).
func DB(t testing.TB, entries []repodb.Entry, files bool) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if err := repodb.WriteTar(zw, entries, files); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
