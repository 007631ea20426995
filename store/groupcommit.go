package store

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/ipfs/go-cid"

	"github.com/flocon/flocon/verify"
)

// maxCommitBatch bounds one group commit (one index transaction).
const maxCommitBatch = 128

// Group commit: making one small blob durable costs three fsyncs (the file,
// blobs/, the index), about 6 ms here, and they serialize on the disk, so
// a burst of small packages (pacman -Syu) queued up behind them. Commits that
// arrive while a batch is being written wait and go together in the next
// one: their file fsyncs run at once (the filesystem journals them in one
// commit), one fsync of blobs/ covers every rename and one synced index
// transaction writes every row. The guarantees are the ones of a single
// commit: each blob is fsynced before its rename, the rename is durable
// before its row, and Commit returns only once its row is durable.

// commitReq is one proven download waiting to be made durable.
type commitReq struct {
	p    *Pending
	info BlobInfo
	sig  []byte
	err  error
	done chan struct{}
	at   time.Time // when it was queued (commitgather.go)
}

// committer batches the commits that arrive while a batch is written; the
// caller that finds it idle writes batches until the queue is empty.
type committer struct {
	mu        sync.Mutex
	queue     []*commitReq
	running   bool
	heldBytes int64         // bodies held in memory in the queue
	full      chan struct{} // told when the queue became a full batch (gatherLocked)
	batches   int           // batches written (tests)

	gatherWait time.Duration // commitGather (tests change it)
	gatherMax  int64         // gatherBytes (tests change it)
}

// commit makes p durable with its row and returns once that is done.
func (s *Store) commit(p *Pending, info BlobInfo, sig []byte) error {
	req := &commitReq{p: p, info: info, sig: sig, done: make(chan struct{}), at: time.Now()}
	c := &s.commits
	c.mu.Lock()
	c.queue = append(c.queue, req)
	c.queuedLocked(req)
	if c.running {
		c.mu.Unlock()
		<-req.done
		return req.err
	}
	c.running = true
	for len(c.queue) > 0 {
		c.gatherLocked()
		n := min(len(c.queue), maxCommitBatch)
		batch := c.queue[:n:n]
		c.queue = c.queue[n:]
		c.takenLocked(batch)
		c.batches++
		c.mu.Unlock()
		s.writeBatch(batch)
		c.mu.Lock()
	}
	c.running = false
	c.mu.Unlock()
	<-req.done
	return req.err
}

// syncParallel bounds the fsyncs of one batch in flight at once. Each
// blocks an OS thread: a batch of 20 small blobs had 20 (the daemon went
// from 7 threads to 24 over row 5a of scripts/bench.sh, each with its
// stacks, for a peak RSS 1-2 MiB over the goal). On ext4 without a journal
// each fsync flushes its file alone, so more at once only queue on the
// disk; nobody waits for a batch but its downloads' goroutines.
const syncParallel = 4

// writeBatch makes every download of batch durable, or aborts it.
func (s *Store) writeBatch(batch []*commitReq) {
	syncTemps(batch)
	renamed := make([]*commitReq, 0, len(batch))
	for _, r := range batch {
		if r.err == nil {
			r.err = r.p.rename()
		}
		if r.err == nil {
			renamed = append(renamed, r)
		}
	}
	if len(renamed) > 0 {
		if err := syncDir(s.blobDir); err != nil {
			for _, r := range renamed {
				r.err = r.p.unpublish(fmt.Errorf("commit %s: fsync blobs dir: %w", r.p.cid, err))
			}
			renamed = nil
		}
	}
	if len(renamed) > 0 {
		if err := s.writeRows(renamed); err != nil {
			for _, r := range renamed {
				r.err = r.p.unpublish(fmt.Errorf("commit %s: index: %w", r.p.cid, err))
			}
			renamed = nil
		}
	}
	for _, r := range renamed {
		r.p.finish()
	}
	for _, r := range batch {
		close(r.done)
	}
}

// syncTemps fsyncs the temp files of batch, at most syncParallel at once.
func syncTemps(batch []*commitReq) {
	if len(batch) == 1 { // alone (the usual case): no goroutine to hand it to
		batch[0].err = batch[0].p.syncTemp()
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(len(batch), syncParallel) {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(len(batch)); i = next.Add(1) - 1 {
				batch[i].err = batch[i].p.syncTemp()
			}
		})
	}
	wg.Wait()
}

// writeRows writes the signature, file-name and blob rows of a batch in one
// synced transaction.
func (s *Store) writeRows(batch []*commitReq) error {
	cids := make([]cid.Cid, len(batch))
	for i, r := range batch {
		cids[i] = r.p.cid
	}
	s.blobRows.invalidate(cids...)
	defer s.blobRows.invalidate(cids...)
	return s.withDB(func(db *badger.DB) error {
		txn := db.NewTransaction(true)
		defer func() { txn.Discard() }()
		for _, r := range batch {
			err := setBlobRows(txn, r.p.cid, r.info, r.sig)
			if errors.Is(err, badger.ErrTxnTooBig) {
				// The index's memtable is small: write what fits, then
				// go on in a new transaction (each blob's rows stay in one).
				if err := txn.Commit(); err != nil {
					return err
				}
				txn = db.NewTransaction(true)
				err = setBlobRows(txn, r.p.cid, r.info, r.sig)
			}
			if err != nil {
				return err
			}
		}
		return txn.Commit()
	})
}

// setBlobRows adds the rows of a committed blob to txn.
func setBlobRows(txn *badger.Txn, c cid.Cid, info BlobInfo, sig []byte) error {
	if len(sig) > 0 {
		if err := txn.Set(sigKey(c), sig); err != nil {
			return err
		}
	}
	if verify.ValidFileName(info.Filename) {
		if err := txn.Set(fileKey(info.Filename), []byte(c.String())); err != nil {
			return err
		}
	}
	return setJSON(txn, blobKey(c), info)
}

// syncTemp fsyncs the temp file and makes it read-only (a download held in
// memory is written first, to a file created read-only); a failure aborts.
func (p *Pending) syncTemp() error {
	if p.inMem {
		if err := p.toDisk(); err != nil {
			err = fmt.Errorf("commit %s: %w", p.cid, err)
			p.abort(err, false)
			return err
		}
	}
	err := p.f.Sync()
	if err == nil && !p.inMem {
		err = p.f.Chmod(0o444)
	}
	if err != nil {
		err = fmt.Errorf("commit %s: fsync: %w", p.cid, err)
		p.abort(err, false)
		return err
	}
	return nil
}

// rename moves the temp file into blobs/, under p.mu so a reader opening
// p.path never finds it gone. After it the download can only finish
// (committed, or aborted by the committer).
func (p *Pending) rename() error {
	blob := p.s.BlobPath(p.cid)
	p.mu.Lock()
	if err := p.runningErrLocked(); err != nil { // aborted meanwhile
		p.mu.Unlock()
		return err
	}
	err := renameFile(p.path, blob)
	if err == nil {
		p.state, p.path = stateCommitting, blob
	}
	p.mu.Unlock()
	if err != nil {
		err = fmt.Errorf("commit %s: rename: %w", p.cid, err)
		p.abort(err, false)
		return err
	}
	_ = p.f.Close()
	return nil
}

// unpublish removes a renamed blob whose commit failed (no row, no blob)
// and aborts the download with err.
func (p *Pending) unpublish(err error) error {
	_ = os.Remove(p.s.BlobPath(p.cid))
	p.abort(err, true)
	return err
}

// finish marks a durable download committed and wakes everyone.
func (p *Pending) finish() {
	p.mu.Lock()
	p.state = stateCommitted
	p.notifyLocked()
	p.mu.Unlock()
	close(p.done)
	p.releaseMem()
	p.s.forget(p)
	p.s.requestPrune()
}
