package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/flocon/flocon/store"
)

// PendingConformance runs the in-flight download behaviour (store.Pending).
func PendingConformance(t *testing.T, open func(t *testing.T) *store.Store) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s *store.Store)
	}{
		{"ConcurrentReaders", testConcurrentReaders},
		{"LastByteWithheld", testLastByteWithheld},
		{"Abort", testAbort},
		{"ContextCancel", testContextCancel},
		{"SingleLeader", testSingleLeader},
		{"Truncate", testTruncate},
		{"ReadersAcrossCommit", testReadersAcrossCommit},
		{"SendTo", testSendTo},
		{"SendToTruncated", testSendToTruncated},
	}
	for _, tt := range tests {
		t.Run("Pending/"+tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, open(t))
		})
	}
}

// testConcurrentReaders: readers at many offsets, started before, during
// and after the download, all get exactly the committed bytes, and none
// reaches the end before Commit.
func testConcurrentReaders(t *testing.T, s *store.Store) {
	data := RandomBytes(42, 1<<20+17)
	c := CIDOf(t, data)
	p, leader, err := s.Begin(c, int64(len(data)))
	if err != nil || !leader {
		t.Fatalf("Begin = leader %v, %v", leader, err)
	}
	if s.Inflight(c) != p {
		t.Fatal("Inflight does not return the running download")
	}
	var committed atomic.Bool
	offsets := []int64{0, 1, 4096, 65537, int64(len(data) / 2), int64(len(data) - 1), int64(len(data))}
	var wg sync.WaitGroup
	errs := make(chan error, 3*len(offsets))
	startReaders := func(phase string) {
		for _, off := range offsets {
			r := p.NewReader(t.Context(), off)
			wg.Go(func() {
				defer r.Close()
				got, err := io.ReadAll(r)
				switch {
				case err != nil:
					errs <- fmt.Errorf("%s reader at %d: %w", phase, off, err)
				case !committed.Load():
					errs <- fmt.Errorf("%s reader at %d reached the end before Commit", phase, off)
				case !bytes.Equal(got, data[off:]):
					errs <- fmt.Errorf("%s reader at %d: got %d bytes, not the committed %d", phase, off, len(got), len(data)-int(off))
				}
			})
		}
	}
	startReaders("early")
	for i, chunk := 0, 1; i < len(data); chunk = (chunk*7919 + 13) % 40000 {
		n := min(chunk+1, len(data)-i)
		if _, err := p.Write(data[i : i+n]); err != nil {
			t.Fatal(err)
		}
		i += n
		if i > len(data)/2 && i-n <= len(data)/2 {
			startReaders("middle")
		}
	}
	committed.Store(true)
	if err := p.Commit(store.BlobInfo{CID: c}, nil); err != nil {
		t.Fatal(err)
	}
	startReaders("late")
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if s.Inflight(c) != nil {
		t.Error("Inflight after Commit")
	}
}

// testLastByteWithheld: until Commit a reader gets at most Written()-1 bytes
// (and Size-1), whatever it asks for.
func testLastByteWithheld(t *testing.T, s *store.Store) {
	tests := []struct {
		name    string
		size    int64
		written int
		want    int // bytes readable before Commit
	}{
		{"size unknown, all written", -1, 10000, 9999},
		{"size known, all written", 10000, 10000, 9999},
		{"size known, half written", 10000, 5000, 4999},
		{"one byte", -1, 1, 0},
	}
	for i, tt := range tests {
		d := RandomBytes(uint64(70+i), 10000)
		if tt.name == "one byte" {
			d = d[:1]
		}
		c := CIDOf(t, d)
		p, leader, err := s.Begin(c, tt.size)
		if err != nil || !leader {
			t.Fatalf("%s: Begin = %v, %v", tt.name, leader, err)
		}
		if _, err := p.Write(d[:tt.written]); err != nil {
			t.Fatal(err)
		}
		// With a cancelled context a Read returns at once: the bytes that are
		// readable, or the context error when none is.
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		r := p.NewReader(ctx, 0)
		var got bytes.Buffer
		_, err = io.Copy(&got, r)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s: read ended with %v, want context.Canceled", tt.name, err)
		}
		if got.Len() != tt.want || !bytes.Equal(got.Bytes(), d[:got.Len()]) {
			t.Errorf("%s: read %d bytes before Commit, want exactly %d", tt.name, got.Len(), tt.want)
		}
		_ = r.Close()
		if tt.written < len(d) {
			if _, err := p.Write(d[tt.written:]); err != nil {
				t.Fatal(err)
			}
		}
		if err := p.Commit(store.BlobInfo{CID: c}, nil); err != nil {
			t.Fatal(err)
		}
		r = p.NewReader(ctx, int64(tt.want))
		rest, err := io.ReadAll(r)
		_ = r.Close()
		if err != nil || !bytes.Equal(rest, d[tt.want:]) {
			t.Errorf("%s: after Commit read %d bytes, %v; want the last %d", tt.name, len(rest), err, len(d)-tt.want)
		}
	}
}

// testAbort: blocked and new readers get the abort error, the temp file
// goes, and Begin starts afresh.
func testAbort(t *testing.T, s *store.Store) {
	data := RandomBytes(8, 5000)
	c := CIDOf(t, data)
	p, _, err := s.Begin(c, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Write(data[:3000]); err != nil {
		t.Fatal(err)
	}
	cause := errors.New("peer sent garbage")
	results := make(chan error, 4)
	for _, off := range []int64{0, 2999, 3000, 4999} {
		r := p.NewReader(t.Context(), off)
		go func() {
			defer r.Close()
			_, err := io.ReadAll(r)
			results <- err
		}()
	}
	p.Abort(cause)
	for range 4 {
		if err := <-results; !errors.Is(err, store.ErrAborted) || !errors.Is(err, cause) {
			t.Errorf("reader got %v, want ErrAborted wrapping the cause", err)
		}
	}
	<-p.Done()
	if !errors.Is(p.Err(), cause) {
		t.Errorf("Err = %v", p.Err())
	}
	if _, err := p.Write([]byte("x")); !errors.Is(err, store.ErrAborted) {
		t.Errorf("Write after Abort = %v", err)
	}
	if err := p.Commit(store.BlobInfo{CID: c}, nil); !errors.Is(err, store.ErrAborted) {
		t.Errorf("Commit after Abort = %v", err)
	}
	if left := tmpFiles(t, s); len(left) != 0 {
		t.Errorf("temp files left after Abort: %v", left)
	}
	if _, err := io.ReadAll(p.NewReader(t.Context(), 0)); !errors.Is(err, cause) {
		t.Errorf("reader opened after Abort got %v", err)
	}
	p2, leader, err := s.Begin(c, int64(len(data)))
	if err != nil || !leader || p2 == p {
		t.Fatalf("Begin after Abort = %p leader %v, %v; want a fresh leader", p2, leader, err)
	}
	p2.Abort(nil)
	if !errors.Is(p2.Err(), store.ErrAborted) {
		t.Errorf("Abort(nil): Err = %v, want ErrAborted", p2.Err())
	}
}

// testContextCancel: cancelling the context unblocks a waiting Read.
func testContextCancel(t *testing.T, s *store.Store) {
	c := CIDOf(t, []byte("never completes"))
	p, _, err := s.Begin(c, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Abort(nil)
	ctx, cancel := context.WithCancel(t.Context())
	r := p.NewReader(ctx, 0)
	defer r.Close()
	done := make(chan error)
	go func() {
		_, err := r.Read(make([]byte, 10))
		done <- err
	}()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Read after cancel = %v, want context.Canceled", err)
	}
	if p.Err() != nil {
		t.Errorf("a reader's cancel aborted the download: %v", p.Err())
	}
}

// testSingleLeader: concurrent Begin calls share one Pending and one leader.
func testSingleLeader(t *testing.T, s *store.Store) {
	data := RandomBytes(9, 100)
	c := CIDOf(t, data)
	const n = 32
	var leaders atomic.Int32
	pendings := make([]*store.Pending, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			p, leader, err := s.Begin(c, 100)
			if err != nil {
				t.Error(err)
				return
			}
			if leader {
				leaders.Add(1)
			}
			pendings[i] = p
		})
	}
	wg.Wait()
	if leaders.Load() != 1 {
		t.Fatalf("%d leaders, want 1", leaders.Load())
	}
	for _, p := range pendings {
		if p != pendings[0] {
			t.Fatal("Begin returned different downloads for one CID")
		}
	}
	pendings[0].Abort(nil)
}

// testTruncate: a restart below a reader's offset fails that reader; the
// others carry on to the committed bytes.
func testTruncate(t *testing.T, s *store.Store) {
	data := RandomBytes(10, 1000)
	c := CIDOf(t, data)
	p, _, err := s.Begin(c, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	garbage := append(append([]byte(nil), data[:800]...), RandomBytes(11, 200)...)
	if _, err := p.Write(garbage); err != nil {
		t.Fatal(err)
	}
	ahead, behind := p.NewReader(t.Context(), 0), p.NewReader(t.Context(), 0)
	defer ahead.Close()
	defer behind.Close()
	if _, err := io.ReadFull(ahead, make([]byte, 900)); err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 500)
	if _, err := io.ReadFull(behind, head); err != nil {
		t.Fatal(err)
	}
	if err := p.Truncate(1001); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("Truncate past the end = %v, want ErrInvalid", err)
	}
	if err := p.Truncate(800); err != nil {
		t.Fatal(err)
	}
	if p.Written() != 800 {
		t.Fatalf("Written after Truncate = %d", p.Written())
	}
	if _, err := ahead.Read(make([]byte, 10)); !errors.Is(err, store.ErrTruncated) {
		t.Errorf("reader past the restart = %v, want ErrTruncated", err)
	}
	if _, err := p.Write(data[800:]); err != nil {
		t.Fatal(err)
	}
	if err := p.Commit(store.BlobInfo{CID: c}, nil); err != nil {
		t.Fatalf("Commit after Truncate (hash must cover the new tail): %v", err)
	}
	tail, err := io.ReadAll(behind)
	if err != nil || !bytes.Equal(append(head, tail...), data) {
		t.Errorf("reader behind the restart: %d bytes, %v", 500+len(tail), err)
	}
}

// testReadersAcrossCommit: readers opened before the rename keep working
// after it, and readers opened after Commit on the same Pending too.
func testReadersAcrossCommit(t *testing.T, s *store.Store) {
	data := RandomBytes(12, 3000)
	c := CIDOf(t, data)
	p, _, err := s.Begin(c, -1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Write(data); err != nil {
		t.Fatal(err)
	}
	early := p.NewReader(t.Context(), 0)
	defer early.Close()
	head := make([]byte, 100)
	if _, err := io.ReadFull(early, head); err != nil { // opens the temp file
		t.Fatal(err)
	}
	lazy := p.NewReader(t.Context(), 10) // opens nothing before Commit
	defer lazy.Close()
	if err := p.Commit(store.BlobInfo{CID: c}, nil); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(early)
	if err != nil || !bytes.Equal(append(head, rest...), data) {
		t.Errorf("reader opened before Commit: %v", err)
	}
	got, err := io.ReadAll(lazy)
	if err != nil || !bytes.Equal(got, data[10:]) {
		t.Errorf("reader first read after Commit: %d bytes, %v", len(got), err)
	}
	late := p.NewReader(t.Context(), 2999)
	defer late.Close()
	got, err = io.ReadAll(late)
	if err != nil || !bytes.Equal(got, data[2999:]) {
		t.Errorf("reader opened after Commit: %v", err)
	}
}

// fileSink is a writer with a ReadFrom, like a socket's: it records whether
// every span it was handed is a part of a file (what sendfile needs).
type fileSink struct {
	bytes.Buffer
	notFile int // spans that were not an *io.LimitedReader over an *os.File
}

func (f *fileSink) ReadFrom(src io.Reader) (int64, error) {
	if lr, ok := src.(*io.LimitedReader); !ok {
		f.notFile++
	} else if _, ok := lr.R.(*os.File); !ok {
		f.notFile++
	}
	return f.Buffer.ReadFrom(src)
}

// sender is the reader of p at off as a store.Sender.
func sender(t *testing.T, p *store.Pending, ctx context.Context, off int64) (store.Sender, io.Closer) {
	t.Helper()
	r := p.NewReader(ctx, off)
	s, ok := r.(store.Sender)
	if !ok {
		t.Fatalf("the reader of NewReader (%T) is not a store.Sender", r)
	}
	return s, r
}

// testSendTo: SendTo gives what Read gives (the committed bytes from any
// offset, bounded by n, never the last byte before Commit), and hands the
// writer spans of a file as the download grows.
func testSendTo(t *testing.T, s *store.Store) {
	data := RandomBytes(13, 300<<10+5)
	c := CIDOf(t, data)
	p, _, err := s.Begin(c, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	var committed atomic.Bool
	type want struct{ off, n int64 }
	cases := []want{{0, -1}, {1, -1}, {4096, 70000}, {int64(len(data)) - 1, -1}, {int64(len(data)) - 10, 10}}
	var wg sync.WaitGroup
	errs := make(chan error, len(cases))
	for _, tc := range cases {
		snd, closer := sender(t, p, t.Context(), tc.off)
		wg.Go(func() {
			defer closer.Close()
			var sink fileSink
			n, err := snd.SendTo(&sink, tc.n)
			end := int64(len(data))
			if tc.n >= 0 {
				end = tc.off + tc.n
			}
			switch {
			case tc.n < 0 && !errors.Is(err, io.EOF), tc.n >= 0 && err != nil:
				errs <- fmt.Errorf("SendTo at %d of %d: %d bytes, %w", tc.off, tc.n, n, err)
			case end == int64(len(data)) && !committed.Load():
				errs <- fmt.Errorf("SendTo at %d sent the last byte before Commit", tc.off)
			case n != int64(sink.Len()) || !bytes.Equal(sink.Bytes(), data[tc.off:end]):
				errs <- fmt.Errorf("SendTo at %d of %d: %d bytes (said %d), want the %d at [%d, %d)", tc.off, tc.n,
					sink.Len(), n, end-tc.off, tc.off, end)
			case sink.notFile > 0:
				errs <- fmt.Errorf("SendTo at %d: %d spans were not parts of a file", tc.off, sink.notFile)
			}
		})
	}
	for i := 0; i < len(data); i += 40000 {
		if _, err := p.Write(data[i:min(i+40000, len(data))]); err != nil {
			t.Fatal(err)
		}
	}
	// A cancelled send gets everything but the last byte, then the error.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	snd, closer := sender(t, p, ctx, 0)
	var early fileSink
	if n, err := snd.SendTo(&early, -1); !errors.Is(err, context.Canceled) || n != int64(len(data))-1 ||
		!bytes.Equal(early.Bytes(), data[:len(data)-1]) {
		t.Errorf("before Commit: SendTo = %d bytes, %v; want %d, context.Canceled", n, err, len(data)-1)
	}
	_ = closer.Close()
	committed.Store(true)
	if err := p.Commit(store.BlobInfo{CID: c}, nil); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// testSendToTruncated: bytes a send handed out and that a Truncate then
// threw away fail the sender with ErrTruncated and count as discarded.
func testSendToTruncated(t *testing.T, s *store.Store) {
	data := RandomBytes(14, 1000)
	c := CIDOf(t, data)
	p, _, err := s.Begin(c, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Write(append(append([]byte(nil), data[:800]...), RandomBytes(15, 100)...)); err != nil {
		t.Fatal(err)
	}
	snd, closer := sender(t, p, t.Context(), 0)
	defer closer.Close()
	var sink fileSink
	if n, err := snd.SendTo(&sink, 850); err != nil || n != 850 {
		t.Fatalf("SendTo = %d, %v", n, err)
	}
	if err := p.Truncate(800); err != nil {
		t.Fatal(err)
	}
	if got := s.Discarded(c); got < 850 {
		t.Errorf("Discarded = %d after a sender got 850 bytes and 800 were kept", got)
	}
	if _, err := p.Write(data[800:]); err != nil {
		t.Fatal(err)
	}
	if _, err := snd.SendTo(&sink, 10); !errors.Is(err, store.ErrTruncated) {
		t.Errorf("SendTo past the restart = %v, want ErrTruncated", err)
	}
	p.Abort(nil)
}
