package store_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/flocon/flocon/store"
	"github.com/flocon/flocon/store/storetest"
)

// TestGroupCommit: commits that arrive while a batch is written go together
// in the next batch; one that fails there (its fsync) is aborted alone, the
// others are durable with their rows (they survive a reopen).
func TestGroupCommit(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := store.Open(store.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	begin := func(seed uint64) (*store.Pending, []byte) {
		data := storetest.RandomBytes(seed, 4096)
		p, leader, err := s.Begin(storetest.CIDOf(t, data), int64(len(data)))
		if err != nil || !leader {
			t.Fatalf("Begin: leader=%v err=%v", leader, err)
		}
		if _, err := p.Write(data); err != nil {
			t.Fatal(err)
		}
		return p, data
	}
	commit := func(p *store.Pending, i int) <-chan error {
		errc := make(chan error, 1)
		go func() {
			errc <- p.Commit(store.BlobInfo{Filename: fmt.Sprintf("p%d-1-1-any.pkg.tar.zst", i)}, []byte("sig"))
		}()
		return errc
	}
	s.SetCommitGather(0, 0) // batches as they come: the first one is held alone
	release := make(chan struct{})
	s.HoldSync(release)
	first, _ := begin(1)
	firstErr := commit(first, 1) // the batch being written, held in its fsync
	<-first.Verified()
	s.FailTemp(errors.New("disk on fire"), 1<<20, true)
	bad, _ := begin(2)
	s.FailTemp(nil, 0, false)
	good := []*store.Pending{nil, nil}
	good[0], _ = begin(3)
	good[1], _ = begin(4)
	errs := []<-chan error{commit(bad, 2), commit(good[0], 3), commit(good[1], 4)}
	for s.QueuedCommits() < 3 {
		runtime.Gosched()
	}
	close(release)
	if err := <-firstErr; err != nil {
		t.Fatalf("first commit: %v", err)
	}
	if err := <-errs[0]; err == nil || !errors.Is(bad.Err(), store.ErrAborted) {
		t.Errorf("commit whose fsync failed = %v (download: %v), want an error and an aborted download", err, bad.Err())
	}
	for i := range good {
		if err := <-errs[i+1]; err != nil {
			t.Errorf("commit %d batched with a failing one: %v", i, err)
		}
	}
	if s.Has(bad.CID()) {
		t.Error("blob whose fsync failed is stored")
	}
	if _, err := os.Stat(s.BlobPath(bad.CID())); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("blob file whose fsync failed: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openAt(t, store.Config{Dir: dir})
	for _, p := range append(good, first) {
		info, err := s.Info(p.CID())
		if err != nil || info.Size != 4096 {
			t.Errorf("after reopen, blob %s: %+v, %v", p.CID(), info, err)
		}
		if sig, err := s.Sig(p.CID()); err != nil || string(sig) != "sig" {
			t.Errorf("after reopen, sig of %s: %q, %v", p.CID(), sig, err)
		}
	}
	if info, err := s.BlobByFilename("p3-1-1-any.pkg.tar.zst"); err != nil || !info.CID.Equals(good[0].CID()) {
		t.Errorf("file row of a batched commit: %+v, %v", info, err)
	}
}

// TestGroupCommitLargerThanATransaction: a batch whose rows do not fit in
// one index transaction (128 blobs with 1000-byte signatures, kept in the
// LSM tree) is written in several, and every commit succeeds.
func TestGroupCommitLargerThanATransaction(t *testing.T) {
	t.Parallel()
	s := openTemp(t)
	s.SetCommitGather(0, 0) // batches as they come: the first one is held alone
	release := make(chan struct{})
	s.HoldSync(release)
	const n = 129
	sig := bytes.Repeat([]byte{0xa5}, 1000)
	ps := make([]*store.Pending, n)
	errs := make([]chan error, n)
	for i := range n {
		data := storetest.RandomBytes(uint64(100+i), 1024)
		p, _, err := s.Begin(storetest.CIDOf(t, data), int64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Write(data); err != nil {
			t.Fatal(err)
		}
		ps[i], errs[i] = p, make(chan error, 1)
		go func() { errs[i] <- p.Commit(store.BlobInfo{}, sig) }()
		if i == 0 {
			<-p.Verified() // the first batch, held in its fsync
		}
	}
	for s.QueuedCommits() < n-1 {
		runtime.Gosched()
	}
	close(release)
	for i, p := range ps {
		if err := <-errs[i]; err != nil {
			t.Fatalf("commit %d: %v", i, err)
		}
		if got, err := s.Sig(p.CID()); err != nil || !bytes.Equal(got, sig) {
			t.Fatalf("sig of commit %d: %d bytes, %v", i, len(got), err)
		}
	}
}

// TestCommitGather: the commits of small bodies held in memory wait for the
// ones that follow (here until three are queued: the window is an hour)
// and go in one batch; their readers were released before the wait.
func TestCommitGather(t *testing.T) {
	t.Parallel()
	s := openTemp(t)
	const size = 2048
	s.SetCommitGather(time.Hour, 3*size)
	var errs []chan error
	var ps []*store.Pending
	for i := range 3 {
		data := storetest.RandomBytes(uint64(200+i), size)
		p, _, err := s.Begin(storetest.CIDOf(t, data), size)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Write(data); err != nil {
			t.Fatal(err)
		}
		errc := make(chan error, 1)
		go func() { errc <- p.Commit(store.BlobInfo{}, nil) }()
		<-p.Verified() // readers go to the end before the batch is written
		errs, ps = append(errs, errc), append(ps, p)
		if i < 2 {
			select {
			case err := <-errc:
				t.Fatalf("commit %d returned (%v) before its batch was full", i, err)
			default:
			}
		}
	}
	for i, errc := range errs {
		if err := <-errc; err != nil {
			t.Fatalf("commit %d: %v", i, err)
		}
		if !s.Has(ps[i].CID()) {
			t.Errorf("blob %d not stored", i)
		}
	}
	if got := s.CommitBatches(); got != 1 {
		t.Errorf("%d batches, want the three commits in one", got)
	}
}

// TestCommitGatherNotForTempFiles: a download written to a temp file (a
// large one) is committed at once, whatever the gather window.
func TestCommitGatherNotForTempFiles(t *testing.T) {
	t.Parallel()
	s, err := store.Open(store.Config{Dir: t.TempDir(), MemoryBody: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	s.SetCommitGather(time.Hour, 1<<30)
	data := storetest.RandomBytes(300, 4096)
	p, _, err := s.Begin(storetest.CIDOf(t, data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := p.Commit(store.BlobInfo{}, nil); err != nil { // an hour if it gathered
		t.Fatal(err)
	}
	if !s.Has(p.CID()) || s.CommitBatches() != 1 {
		t.Errorf("stored %v after %d batches", s.Has(p.CID()), s.CommitBatches())
	}
}

// TestCommitSyncsBounded: the fsyncs of one batch run at most
// store.SyncParallel at once (each holds an OS thread), and every blob of
// the batch is committed.
func TestCommitSyncsBounded(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		s := openAt(t, store.Config{Dir: dir})
		const n, size = 10, 2048
		s.SetCommitGather(time.Hour, n*size) // one batch of all n
		var running, peak atomic.Int32
		release := make(chan struct{})
		s.GateSyncs(&running, &peak, release)
		errs := make(chan error, n)
		var ps []*store.Pending
		for i := range n {
			data := storetest.RandomBytes(uint64(400+i), size)
			p, _, err := s.Begin(storetest.CIDOf(t, data), size)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := p.Write(data); err != nil {
				t.Fatal(err)
			}
			go func() { errs <- p.Commit(store.BlobInfo{}, nil) }()
			ps = append(ps, p)
		}
		synctest.Wait()
		if got := running.Load(); got != store.SyncParallel {
			t.Errorf("%d fsyncs at once, want %d", got, store.SyncParallel)
		}
		close(release)
		for range n {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		if got := peak.Load(); got > store.SyncParallel {
			t.Errorf("up to %d fsyncs at once, want at most %d", got, store.SyncParallel)
		}
		for i, p := range ps {
			if !s.Has(p.CID()) {
				t.Errorf("blob %d not stored", i)
			}
		}
	})
}
