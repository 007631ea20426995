package store

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"sync"

	"github.com/ipfs/go-cid"

	"github.com/flocon/flocon/verify"
)

type pendingState int

const (
	stateRunning    pendingState = iota
	stateCommitting              // renamed into blobs/, index row being written
	stateCommitted
	stateAborted
)

// Pending is one in-flight download: a temp file that grows as bytes arrive
// and that any number of readers follow. Readers never see the final byte(s)
// before Commit, so no client holds a complete unverified file; after Abort
// readers get an error and the temp file is removed.
type Pending struct {
	s    *Store
	cid  cid.Cid
	size int64
	done chan struct{}

	// Leader side: Write, Truncate and Commit hold wmu, so f and hash are
	// only touched by one of them at a time. A download held in memory
	// (mem != nil) has no f until its commit writes it to disk.
	wmu  sync.Mutex
	f    tempFile
	hash hash.Hash // sha256 of bytes [0, written)

	mu      sync.Mutex
	state   pendingState
	err     error
	written int64
	path    string // temp file, then blobs/<cid> after the rename ("" while in memory)
	// mem holds the bytes of a download kept in memory (see memory.go):
	// mem[:written], capacity the expected size; nil for a temp file.
	mem     []byte
	inMem   bool                    // held in memory until its commit (set once, at Begin)
	wrap    func(*os.File) tempFile // the store's test seam when p began (memory only)
	changed chan struct{}           // closed and replaced on every change
	truncs  []int64                 // offsets of every Truncate, in order
	exposed int64                   // how far readers got into the unproven bytes

	// verified: Commit proved the bytes (size and sha256, after the caller's
	// signature check); readers may read to the end while the blob is being
	// made durable (fsync, rename, index row) and info is what it will be.
	verified   bool
	info       BlobInfo
	verifiedCh chan struct{} // closed when verified
}

func newHasher() hash.Hash { return sha256.New() }

// tempFile is what a download writes to: an *os.File, or a failing one in
// tests (disk full, I/O errors).
type tempFile interface {
	io.WriterAt
	io.ReaderAt
	Truncate(size int64) error
	Sync() error
	Chmod(mode fs.FileMode) error
	Close() error
	Name() string
}

func newPending(s *Store, c cid.Cid, size int64) (*Pending, error) {
	if s.holdInMemory(size) {
		return &Pending{
			s: s, cid: c, size: size, done: make(chan struct{}),
			hash: newHasher(), mem: make([]byte, 0, size), inMem: true, wrap: s.wrapTemp,
			changed: make(chan struct{}), verifiedCh: make(chan struct{}),
		}, nil
	}
	f, err := createTemp(s.tmpDir, "dl-")
	if err != nil {
		return nil, fmt.Errorf("create temp file: %w", err)
	}
	var tf tempFile = f
	if s.wrapTemp != nil {
		tf = s.wrapTemp(f)
	}
	return &Pending{
		s: s, cid: c, size: size, done: make(chan struct{}),
		f: tf, hash: newHasher(), path: f.Name(), changed: make(chan struct{}),
		verifiedCh: make(chan struct{}),
	}, nil
}

// committedPending is a finished Pending over an already stored blob.
func committedPending(s *Store, info BlobInfo) *Pending {
	done := make(chan struct{})
	close(done)
	return &Pending{
		s: s, cid: info.CID, size: info.Size, done: done, state: stateCommitted,
		written: info.Size, path: s.BlobPath(info.CID), changed: make(chan struct{}),
		verified: true, info: info, verifiedCh: done,
	}
}

// CID is the content being downloaded.
func (p *Pending) CID() cid.Cid { return p.cid }

// Size is the expected size, or -1.
func (p *Pending) Size() int64 { return p.size }

// Written is how many bytes are in the temp file.
func (p *Pending) Written() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.written
}

// notifyLocked wakes every waiting reader. p.mu must be held.
func (p *Pending) notifyLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// runningErr is nil while p accepts writes; p.mu must be held.
func (p *Pending) runningErrLocked() error {
	switch p.state {
	case stateRunning:
		return nil
	case stateAborted:
		return p.err
	}
	return fmt.Errorf("download %s: already committed", p.cid)
}

// Write appends b (leader only).
func (p *Pending) Write(b []byte) (int, error) {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	p.mu.Lock()
	err := p.runningErrLocked()
	off := p.written
	p.mu.Unlock()
	if err != nil {
		return 0, err
	}
	if p.size >= 0 && off+int64(len(b)) > p.size {
		return 0, fmt.Errorf("write %s: %d bytes past the expected %d: %w",
			p.cid, off+int64(len(b))-p.size, p.size, verify.ErrSizeMismatch)
	}
	if p.inMem {
		return p.writeMem(b, off), nil
	}
	// The hash runs beside the write to the page cache: two cores, and
	// still the only pass over the bytes (the verifier takes this state,
	// see ContentSum).
	var hashed sync.WaitGroup
	if len(b) >= parallelHash {
		hashed.Go(func() { p.hash.Write(b) })
	} else {
		p.hash.Write(b)
	}
	n, err := p.f.WriteAt(b, off)
	hashed.Wait()
	if err != nil { // the hash covers more than was written: the download ends here
		err = fmt.Errorf("write %s at %d: %w", p.cid, off, err)
		p.abort(err, false)
		return n, err
	}
	p.mu.Lock()
	p.written += int64(n)
	p.notifyLocked()
	p.mu.Unlock()
	return n, nil
}

// parallelHash is the write size from which Write hashes on another
// goroutine while it writes; below it the hand-off costs more than it saves.
const parallelHash = 32 << 10

// ContentSum is the sha256 state of exactly the bytes written (a clone,
// the caller may write to it): a verifier takes it (verify.SumByWriter)
// instead of hashing the same bytes a second time. Leader only, once its
// writes are done.
func (p *Pending) ContentSum() (hash.Hash, error) {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	h, ok := p.hash.(hash.Cloner)
	if !ok {
		return nil, fmt.Errorf("content sum of %s: %T cannot be cloned", p.cid, p.hash)
	}
	c, err := h.Clone()
	if err != nil {
		return nil, fmt.Errorf("content sum of %s: %w", p.cid, err)
	}
	return c, nil
}

// Truncate drops everything after off (leader only: a source restarts there).
// Readers already past off fail with ErrTruncated.
func (p *Pending) Truncate(off int64) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	p.mu.Lock()
	err := p.runningErrLocked()
	written := p.written
	p.mu.Unlock()
	if err != nil {
		return err
	}
	if off < 0 || off > written {
		return fmt.Errorf("truncate %s to %d of %d: %w", p.cid, off, written, ErrInvalid)
	}
	if off == written {
		return nil
	}
	// Readers learn of the truncation before the file shrinks: a reader
	// whose read comes up short because the file is being cut must find
	// the truncation when it looks, never take the short read for a plain
	// error (after which the gateway would join the committed blob's tail
	// to bytes that were thrown away).
	if p.inMem {
		p.truncateMem(off)
		return nil
	}
	p.mu.Lock()
	p.written = off
	p.truncs = append(p.truncs, off)
	p.notifyLocked()
	p.mu.Unlock()
	if err := p.f.Truncate(off); err != nil {
		err = fmt.Errorf("truncate %s to %d: %w", p.cid, off, err)
		p.abort(err, false)
		return err
	}
	if hook := p.s.afterFileTruncate; hook != nil {
		hook()
	}
	// The running hash covers the old tail: recompute it over what is kept.
	h := newHasher()
	if _, err := io.Copy(h, io.NewSectionReader(p.f, 0, off)); err != nil {
		err = fmt.Errorf("truncate %s: rehash: %w", p.cid, err)
		p.abort(err, false)
		return err
	}
	p.hash = h
	p.discardExposed(off)
	return nil
}

// Commit publishes the verified bytes as blob info.CID (fsync, rename, index
// row; grouped with the commits running at the same time) and releases
// readers to the end. The store checks the size and the sha256 once more:
// bytes that do not match the CID abort the download.
func (p *Pending) Commit(info BlobInfo, sig []byte) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	if info.CID.Defined() && !info.CID.Equals(p.cid) {
		return fmt.Errorf("commit %s as %s: %w", p.cid, info.CID, ErrInvalid)
	}
	p.mu.Lock()
	err := p.runningErrLocked()
	written := p.written
	p.mu.Unlock()
	if err != nil {
		return err
	}
	if err := p.checkContent(written); err != nil {
		p.abort(err, false)
		return err
	}
	now := p.s.now()
	info.CID, info.Size, info.LastAccess = p.cid, written, now
	if info.Added.IsZero() {
		info.Added = now
	}
	// The bytes are proven: release readers to the end now, so clients do
	// not wait for the fsync (a failure after this loses the blob, not the
	// integrity of what they got).
	p.mu.Lock()
	p.verified, p.info = true, info
	close(p.verifiedCh)
	p.notifyLocked()
	p.mu.Unlock()
	return p.s.commit(p, info, sig)
}

// Verified is closed once the bytes are proven, before they are durable;
// Info then tells what the blob is.
func (p *Pending) Verified() <-chan struct{} { return p.verifiedCh }

// Info is the row the blob gets, once Verified is closed (false before).
func (p *Pending) Info() (BlobInfo, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.info, p.verified
}

// checkContent refuses bytes that are not exactly the content named by the CID.
func (p *Pending) checkContent(written int64) error {
	if p.size >= 0 && written != p.size {
		return fmt.Errorf("commit %s: %d bytes, want %d: %w", p.cid, written, p.size, verify.ErrSizeMismatch)
	}
	want, err := verify.SHA256Of(p.cid)
	if err != nil {
		return fmt.Errorf("commit %s: %w", p.cid, err)
	}
	if got := p.hash.Sum(nil); !bytes.Equal(got, want) {
		return fmt.Errorf("commit %s: %w", p.cid, &verify.DigestMismatchError{Want: want, Got: got})
	}
	return nil
}

// Abort fails the download with err: readers get err, the temp file goes.
// It does nothing once the download is committed or being committed.
func (p *Pending) Abort(err error) { p.abort(err, false) }

// abort ends the download with err; during a commit only the committer
// (force) may abort.
func (p *Pending) abort(err error, force bool) {
	if err == nil {
		err = ErrAborted
	}
	if !errors.Is(err, ErrAborted) {
		err = fmt.Errorf("%w: %w", ErrAborted, err)
	}
	p.mu.Lock()
	if p.state == stateCommitted || p.state == stateAborted || (p.state == stateCommitting && !force) {
		p.mu.Unlock()
		return
	}
	p.state, p.err = stateAborted, err
	p.notifyLocked()
	path, f := p.path, p.f
	p.mu.Unlock()
	if f != nil {
		_ = f.Close()
	}
	if path != "" && path != p.s.BlobPath(p.cid) { // never a published blob
		_ = os.Remove(path)
	}
	p.discardExposed(0)
	close(p.done)
	p.releaseMem()
	p.s.forget(p)
}

// Done is closed once the download is committed or aborted.
func (p *Pending) Done() <-chan struct{} { return p.done }

// Err is nil after Commit, the abort error after Abort.
func (p *Pending) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state == stateAborted {
		return p.err
	}
	return nil
}
