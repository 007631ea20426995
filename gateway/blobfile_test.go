package gateway

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

// A stored blob bigger than one write chunk, asked from an offset over a
// real connection (sendfile, one send per chunk, corked): the body is the
// blob's bytes from that offset, whatever the blobFile's lazy seeks did
// and wherever the request before left the descriptor the store kept.
func TestStoredRangeAcrossChunksOverTCP(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	pkg := newTestPkg(t, "big", "1.0-1", 3*writeChunk+777, nil)
	e.publishStored(t, pkg)
	for _, from := range []int{0, 1, writeChunk + 5, 0, len(pkg.data) - 1, 7} {
		hdr := map[string]string{"Range": fmt.Sprintf("bytes=%d-", from)}
		resp, body := e.get(t, http.MethodGet, "/core/os/x86_64/"+pkg.filename, hdr)
		if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, pkg.data[from:]) {
			t.Fatalf("from %d: status %d, %d bytes (want %d), equal %v", from, resp.StatusCode,
				len(body), len(pkg.data)-from, bytes.Equal(body, pkg.data[from:]))
		}
	}
}

// blobFile answers ServeContent's size seeks itself, then reads from
// where they left it, and after the first read every seek is the file's.
func TestBlobFileSeeksLazily(t *testing.T) {
	t.Parallel()
	data := []byte("0123456789abcdef")
	path := filepath.Join(t.TempDir(), "blob")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := newBlobFile(f, int64(len(data)))
	if n, err := b.Seek(0, io.SeekEnd); n != 16 || err != nil {
		t.Fatalf("seek end: %d, %v", n, err)
	}
	if n, err := b.Seek(-6, io.SeekCurrent); n != 10 || err != nil {
		t.Fatalf("seek current: %d, %v", n, err)
	}
	if _, err := b.Seek(-1, io.SeekStart); err == nil {
		t.Fatal("seek before the start accepted")
	}
	got := make([]byte, 3)
	if _, err := io.ReadFull(b, got); err != nil || string(got) != "abc" {
		t.Fatalf("read after seeks: %q, %v", got, err)
	}
	if n, err := b.Seek(0, io.SeekCurrent); n != 13 || err != nil {
		t.Fatalf("position after the read: %d, %v (want 13)", n, err)
	}
	if _, err := b.Seek(2, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(b, got); err != nil || string(got) != "234" {
		t.Fatalf("read after a seek past the first read: %q, %v", got, err)
	}
}
