package store_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"

	"github.com/ipfs/go-cid"

	"github.com/flocon/flocon/store"
	"github.com/flocon/flocon/store/storetest"
)

// openKept opens c with OpenKept and reads it whole.
func openKept(t *testing.T, s *store.Store, c cid.Cid, want []byte) (*store.Blob, *os.File) {
	t.Helper()
	b, info, err := s.OpenKept(c)
	if err != nil {
		t.Fatalf("OpenKept: %v", err)
	}
	got, err := io.ReadAll(b)
	if err != nil || !bytes.Equal(got, want) || info.Size != int64(len(want)) {
		t.Fatalf("read %d bytes (want %d), size %d, err %v", len(got), len(want), info.Size, err)
	}
	return b, b.File
}

// closedFile reports whether f's descriptor was closed.
func closedFile(f *os.File) bool {
	_, err := f.Read(make([]byte, 1))
	return errors.Is(err, os.ErrClosed)
}

// The descriptor given back is the next reader's, from offset 0 again.
func TestOpenKeptReusesDescriptor(t *testing.T) {
	t.Parallel()
	s := openTemp(t)
	data := storetest.RandomBytes(3, 5000)
	c := storetest.Put(t, s, data, store.BlobInfo{}, nil)
	b1, f1 := openKept(t, s, c, data)
	if err := b1.Close(); err != nil {
		t.Fatal(err)
	}
	b2, f2 := openKept(t, s, c, data) // reads it whole again: rewound
	if f2 != f1 {
		t.Error("second OpenKept opened the blob again, want the kept descriptor")
	}
	if closedFile(f1) {
		t.Error("kept descriptor closed")
	}
	// A second reader at the same time gets its own descriptor; of the two
	// given back, one is kept.
	b3, f3 := openKept(t, s, c, data)
	if f3 == f2 {
		t.Fatal("two readers share one descriptor")
	}
	_ = b2.Close()
	_ = b3.Close()
	if !closedFile(f3) || closedFile(f2) {
		t.Errorf("after both returned: first closed %v, second closed %v; want the first kept",
			closedFile(f2), closedFile(f3))
	}
	if err := b3.Close(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("second Close = %v, want os.ErrClosed", err)
	}
}

// A removed blob is not served from a kept descriptor, and its kept
// descriptor is closed (no disk space held); one handed out before the
// removal serves its reader to the end and is closed when given back.
func TestOpenKeptAfterRemove(t *testing.T) {
	t.Parallel()
	s := openTemp(t)
	data := storetest.RandomBytes(4, 3000)
	c := storetest.Put(t, s, data, store.BlobInfo{}, nil)
	b1, f1 := openKept(t, s, c, data)
	_ = b1.Close()
	held, _, err := s.OpenKept(c) // the kept one, handed out again
	if err != nil {
		t.Fatal(err)
	}
	other := storetest.Put(t, s, storetest.RandomBytes(5, 100), store.BlobInfo{}, nil)
	b2, f2 := openKept(t, s, other, storetest.RandomBytes(5, 100))
	_ = b2.Close()
	if err := s.RemoveBlob(c); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.OpenKept(c); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("OpenKept after RemoveBlob = %v, want ErrNotFound", err)
	}
	if got, err := io.ReadAll(held); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("reader opened before the removal: %d bytes, %v", len(got), err)
	}
	_ = held.Close()
	if !closedFile(f1) {
		t.Error("descriptor of a removed blob kept after its reader gave it back")
	}
	if closedFile(f2) {
		t.Error("another blob's kept descriptor closed by the removal")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if !closedFile(f2) {
		t.Error("kept descriptor open after the store closed")
	}
}

// At most KeptFDsMax descriptors are kept, the least recently used closed.
func TestOpenKeptBounded(t *testing.T) {
	t.Parallel()
	s := openTemp(t)
	var files []*os.File
	for i := range store.KeptFDsMax + 3 {
		data := storetest.RandomBytes(uint64(100+i), 200)
		c := storetest.Put(t, s, data, store.BlobInfo{}, nil)
		b, f := openKept(t, s, c, data)
		_ = b.Close()
		files = append(files, f)
	}
	for i, f := range files {
		if want := i < 3; closedFile(f) != want {
			t.Errorf("descriptor %d closed = %v, want %v", i, !want, want)
		}
	}
}
