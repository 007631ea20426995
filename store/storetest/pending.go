package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
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
