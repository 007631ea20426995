package store_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"testing"

	"github.com/flocon/flocon/store"
	"github.com/flocon/flocon/verify"
)

// TestDiscardedPrefix: the store remembers, across a restart, how far
// readers got into bytes that were thrown away (Truncate, Abort), and only
// then: bytes proven by Commit, or never read, leave no record.
func TestDiscardedPrefix(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := store.Open(store.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	good := []byte("the bytes the CID names, as a package would hold them")
	sum := sha256.Sum256(good)
	c, err := verify.CIDFromHex(hex.EncodeToString(sum[:]))
	if err != nil {
		t.Fatal(err)
	}
	size := int64(len(good))
	read := func(p *store.Pending, n int) {
		t.Helper()
		r := p.NewReader(t.Context(), 0)
		defer r.Close()
		if _, err := io.ReadFull(r, make([]byte, n)); err != nil {
			t.Fatal(err)
		}
	}

	p, _, err := s.Begin(c, size)
	if err != nil {
		t.Fatal(err)
	}
	bad := append([]byte{}, good...)
	bad[3] ^= 0xff
	if _, err := p.Write(bad[:20]); err != nil {
		t.Fatal(err)
	}
	if got := s.Discarded(c); got != 0 {
		t.Fatalf("before any read: Discarded = %d", got)
	}
	read(p, 12)
	if err := p.Truncate(0); err != nil { // a lying source: start over
		t.Fatal(err)
	}
	if got := s.Discarded(c); got != 12 {
		t.Fatalf("after a truncate below a reader at 12: Discarded = %d, want 12", got)
	}
	if _, err := p.Write(good); err != nil {
		t.Fatal(err)
	}
	read(p, len(good)-1) // everything but the held-back byte
	if err := p.Commit(store.BlobInfo{CID: c}, nil); err != nil {
		t.Fatal(err)
	}
	if got := s.Discarded(c); got != 12 {
		t.Fatalf("proven bytes raised Discarded to %d, want 12", got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = store.Open(store.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := s.Discarded(c); got != 12 {
		t.Fatalf("after a restart: Discarded = %d, want 12", got)
	}
	other := sha256.Sum256([]byte("another file"))
	c2, _ := verify.CIDFromHex(hex.EncodeToString(other[:]))
	p2, _, err := s.Begin(c2, 12)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p2.Write([]byte("another fil")); err != nil {
		t.Fatal(err)
	}
	read(p2, 5)
	p2.Abort(errors.New("every source failed"))
	if got := s.Discarded(c2); got != 5 {
		t.Fatalf("after an abort with a reader at 5: Discarded = %d, want 5", got)
	}
}
