package store_test

import (
	"bytes"
	"errors"
	"io"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/flocon/flocon/store"
	"github.com/flocon/flocon/store/storetest"
)

// lockedSink is a writer with a ReadFrom (a socket's shape) that the test
// reads while a sender writes to it.
type lockedSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *lockedSink) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(b)
}

func (s *lockedSink) ReadFrom(r io.Reader) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.ReadFrom(r)
}

func (s *lockedSink) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Len()
}

// TestSendersFollowEachWrite: a sender waiting at the end of what is
// written gets each Write's bytes as it lands, and one that joins midway
// gets everything already written at once — no polling, no timer, no
// chunk boundary to wait for: in a synctest bubble, fake time would move
// for any of them, and it never does between the Write and the bytes.
func TestSendersFollowEachWrite(t *testing.T) {
	t.Parallel()
	data := storetest.RandomBytes(16, 200<<10)
	c := storetest.CIDOf(t, data)
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		// the store lives in the bubble: Commit waits on the index's
		// goroutines, and the senders on channels the writes make
		s := openAt(t, store.Config{Dir: dir})
		p, leader, err := s.Begin(c, int64(len(data)))
		if err != nil || !leader {
			t.Fatalf("Begin = %v, %v", leader, err)
		}
		start := time.Now()
		follow := func(sink *lockedSink, off int64) <-chan error {
			r := p.NewReader(t.Context(), off)
			done := make(chan error, 1)
			go func() {
				defer r.Close()
				_, err := r.(store.Sender).SendTo(sink, -1)
				done <- err
			}()
			return done
		}
		var first, joiner lockedSink
		firstDone := follow(&first, 0)
		var joinerDone <-chan error
		written := 0
		// chunks of every size class: a byte, under and over the size
		// from which the store hashes beside its write
		for _, n := range []int{1, 100, 4096, 32 << 10, 64 << 10, 1, 50 << 10} {
			if _, err := p.Write(data[written : written+n]); err != nil {
				t.Fatal(err)
			}
			written += n
			synctest.Wait()
			if got := first.len(); got != written-1 {
				t.Fatalf("after a write up to %d the follower has %d bytes, want %d", written, got, written-1)
			}
			if written > len(data)/2 && joinerDone == nil {
				joinerDone = follow(&joiner, 0)
				synctest.Wait()
			}
			if joinerDone != nil && joiner.len() != written-1 {
				t.Fatalf("a sender joining at %d bytes has %d, want %d", written, joiner.len(), written-1)
			}
			if d := time.Since(start); d != 0 {
				t.Fatalf("fake time moved by %v: a sender waited on a timer", d)
			}
		}
		if _, err := p.Write(data[written:]); err != nil {
			t.Fatal(err)
		}
		if err := p.Commit(store.BlobInfo{CID: c}, nil); err != nil {
			t.Fatal(err)
		}
		for _, r := range []struct {
			sink *lockedSink
			done <-chan error
		}{{&first, firstDone}, {&joiner, joinerDone}} {
			if err := <-r.done; !errors.Is(err, io.EOF) || !bytes.Equal(r.sink.buf.Bytes(), data) {
				t.Errorf("sender ended with %v and %d bytes, want io.EOF after all %d", err, r.sink.len(), len(data))
			}
		}
	})
}
