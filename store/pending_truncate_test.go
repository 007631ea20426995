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

// TestTruncateSeenBeforeShortRead: a reader past the cut that reads while
// Truncate is shrinking the file must get ErrTruncated, not a short read.
// A short read looks like a plain failure of the download's reader, and the
// gateway answers that by joining the committed blob's tail to the bytes the
// client already has: a wrong file pacman would take whole (found by
// TestHostileMirrorResume when in-flight clients moved to sendfile). A
// download held in memory has no such moment (memory_test.go).
func TestTruncateSeenBeforeShortRead(t *testing.T) {
	s, err := store.Open(store.Config{Dir: t.TempDir(), MemoryBody: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	data := make([]byte, 1<<16)
	for i := range data {
		data[i] = byte(i * 7)
	}
	sum := sha256.Sum256(data)
	c, err := verify.CIDFromHex(hex.EncodeToString(sum[:]))
	if err != nil {
		t.Fatal(err)
	}
	p, _, err := s.Begin(c, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Write(data[:40000]); err != nil {
		t.Fatal(err)
	}
	r := p.NewReader(t.Context(), 0)
	defer r.Close()
	if _, err := io.ReadFull(r, make([]byte, 30000)); err != nil {
		t.Fatal(err)
	}
	snd, ok := r.(store.Sender)
	if !ok {
		t.Fatalf("reader %T is not a store.Sender", r)
	}
	var readErr, sendErr error
	var got int64
	s.AfterFileTruncate(func() {
		got, sendErr = snd.SendTo(io.Discard, 100)
		_, readErr = r.Read(make([]byte, 100))
	})
	if err := p.Truncate(0); err != nil {
		t.Fatal(err)
	}
	s.AfterFileTruncate(nil)
	if !errors.Is(sendErr, store.ErrTruncated) || got != 0 {
		t.Errorf("SendTo while the file was cut: %d bytes, %v; want 0, ErrTruncated", got, sendErr)
	}
	if !errors.Is(readErr, store.ErrTruncated) {
		t.Errorf("Read while the file was cut: %v; want ErrTruncated", readErr)
	}
	p.Abort(errors.New("test over"))
}
