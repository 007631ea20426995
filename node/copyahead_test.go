package node

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
)

// choppyReader returns its bytes in reads of random sizes, some empty.
type choppyReader struct {
	b   []byte
	rng *rand.Rand
}

func (r *choppyReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(r.b), r.rng.IntN(5000))
	copy(p, r.b[:n])
	r.b = r.b[n:]
	return n, nil
}

func testBufs(size int) ([]byte, []byte) { return make([]byte, size), make([]byte, size) }

func TestCopyAheadKeepsOrder(t *testing.T) {
	for _, size := range []int{0, 1, 100, 4096, 4097, 300_000} {
		want := make([]byte, size)
		for i := range want {
			want[i] = byte(i * 7 / 3)
		}
		r := &choppyReader{b: want, rng: rand.New(rand.NewPCG(uint64(size), 1))}
		var w bytes.Buffer
		a, b := testBufs(4096)
		n, err := copyAhead(&w, r, a, b, func() { t.Error("abort called on success") })
		if err != nil || n != int64(size) {
			t.Fatalf("size %d: copied %d, %v", size, n, err)
		}
		if !bytes.Equal(w.Bytes(), want) {
			t.Fatalf("size %d: bytes differ from the reader's", size)
		}
	}
}

// TestCopyAheadReadsBesideWrites: a writer that blocks until the next
// chunk has been read proves the read happens while a write is running.
func TestCopyAheadReadsBesideWrites(t *testing.T) {
	pr, pw := io.Pipe()
	readMore := make(chan struct{})
	w := writerFunc(func(b []byte) (int, error) {
		select {
		case <-readMore:
		case <-time.After(10 * time.Second):
			return 0, errors.New("the next chunk was not read while this one was written")
		}
		return len(b), nil
	})
	go func() {
		for i := range 3 {
			_, _ = pw.Write([]byte{byte(i)}) // returns once copyAhead read it
			if i > 0 {
				readMore <- struct{}{} // lets the write of an earlier byte end
			}
		}
		_ = pw.Close()
		close(readMore)
	}()
	a, b := testBufs(16)
	n, err := copyAhead(w, pr, a, b, func() {})
	if err != nil || n != 3 {
		t.Fatalf("copied %d, %v; want 3, nil", n, err)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

func TestCopyAheadReaderError(t *testing.T) {
	boom := errors.New("connection reset")
	r := io.MultiReader(bytes.NewReader([]byte("hello, ")), &errAfter{b: []byte("world"), err: boom})
	var w bytes.Buffer
	a, b := testBufs(4)
	n, err := copyAhead(&w, r, a, b, func() { t.Error("abort called on a reader error") })
	if !errors.Is(err, boom) {
		t.Fatalf("err %v, want %v", err, boom)
	}
	if w.String() != "hello, world" || n != 12 {
		t.Fatalf("wrote %q (%d), want every byte read before the error", w.String(), n)
	}
}

// errAfter returns b and err in the same read.
type errAfter struct {
	b   []byte
	err error
}

func (r *errAfter) Read(p []byte) (int, error) {
	n := copy(p, r.b)
	r.b = r.b[n:]
	if len(r.b) == 0 {
		return n, r.err
	}
	return n, nil
}

// TestCopyAheadWriterError: when the writer fails, copyAhead aborts the
// read in progress, drops what was read ahead, returns the writer's error
// and the bytes it took, and leaves no goroutine (goleak in TestMain).
func TestCopyAheadWriterError(t *testing.T) {
	pr, pw := io.Pipe()
	go func() {
		for {
			if _, err := pw.Write(bytes.Repeat([]byte("x"), 1000)); err != nil {
				return
			}
		}
	}()
	full := errors.New("disk full")
	took := 0
	w := writerFunc(func(b []byte) (int, error) {
		if took+len(b) > 2500 {
			k := 2500 - took
			took += k
			return k, full
		}
		took += len(b)
		return len(b), nil
	})
	aborted := false
	a, b := testBufs(700)
	n, err := copyAhead(w, pr, a, b, func() {
		aborted = true
		_ = pr.CloseWithError(context.Canceled) // as cancelling the request does
	})
	if !errors.Is(err, full) {
		t.Fatalf("err %v, want %v", err, full)
	}
	if n != 2500 || took != 2500 {
		t.Fatalf("returned %d, writer took %d; want 2500 both", n, took)
	}
	if !aborted {
		t.Fatal("the read was not aborted")
	}
}

func TestCopyAheadShortWrite(t *testing.T) {
	w := writerFunc(func(b []byte) (int, error) { return len(b) - 1, nil })
	a, b := testBufs(8)
	aborted := false
	n, err := copyAhead(w, bytes.NewReader([]byte("abcdefgh")), a, b, func() { aborted = true })
	if !errors.Is(err, io.ErrShortWrite) || !aborted {
		t.Fatalf("err %v, aborted %v; want io.ErrShortWrite, true", err, aborted)
	}
	if n < 1 || n > 7 {
		t.Fatalf("returned %d, want what the writer took", n)
	}
}

// TestMirrorFetchCancelMidBody: cancelling a mirror fetch in the middle of
// a big body ends the read ahead; Fetch returns the cancellation with the
// bytes written so far, and no goroutine is left (goleak in TestMain).
func TestMirrorFetchCancelMidBody(t *testing.T) {
	first := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "10000000")
		_, _ = w.Write(make([]byte, 200_000))
		w.(http.Flusher).Flush()
		close(first)
		<-r.Context().Done() // the rest never comes
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var got bytes.Buffer
	w := writerFunc(func(b []byte) (int, error) {
		if got.Len() == 0 {
			go func() { <-first; cancel() }()
		}
		return got.Write(b)
	})
	m := mirrorSource{client: srv.Client(), base: srv.URL, file: "big.pkg.tar.zst"}
	n, err := m.Fetch(ctx, cid.Cid{}, 0, w)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
	if n != int64(got.Len()) || n == 0 || n > 200_000 {
		t.Fatalf("returned %d, writer took %d of 200000", n, got.Len())
	}
}

// TestCopyAheadDeliversBeforeAStall: bytes read are written at once, not
// held until the next read returns (a stalled upstream's last bytes must
// reach the watchdog, the hedge's offset and the readers).
func TestCopyAheadDeliversBeforeAStall(t *testing.T) {
	pr, pw := io.Pipe()
	written := make(chan struct{})
	var got bytes.Buffer
	w := writerFunc(func(b []byte) (int, error) {
		if got.Len() == 0 {
			close(written)
		}
		return got.Write(b)
	})
	go func() {
		_, _ = pw.Write([]byte("before the stall"))
		select { // the stall: nothing more until the bytes are written
		case <-written:
			_ = pw.Close()
		case <-time.After(10 * time.Second):
			_ = pw.CloseWithError(errors.New("bytes read were held behind the next read"))
		}
	}()
	a, b := testBufs(64)
	if n, err := copyAhead(w, pr, a, b, func() {}); err != nil || got.String() != "before the stall" {
		t.Fatalf("copied %d (%q), %v", n, got.String(), err)
	}
}
