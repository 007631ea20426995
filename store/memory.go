package store

import (
	"fmt"
	"os"
)

// A download of known size up to Config.MemoryBody is held in memory
// (Pending.mem) until it is proven: no temp file is created on the path of
// the request that starts it (creating one is an inode allocation, the
// largest single step of a small cold package), readers copy from memory,
// and the commit writes the proven bytes to a temp file, fsyncs and renames
// it with the other commits of its batch, after the readers were released.
// Nothing else changes: the last byte is held back until Commit has proven
// the bytes, joiners and peers follow the download through the same
// readers, a Truncate is seen by every reader past it, and a crash before
// the commit reached the disk loses the blob and nothing else.

// memoryBudget bounds the bytes of all the downloads held in memory at
// once, in units of Config.MemoryBody: past it (a client asking for
// hundreds of small packages at once) downloads go to temp files as before.
const memoryBudget = 8

// holdInMemory reports whether a new download of size bytes is held in
// memory, and counts it; s.mu is held (Begin).
func (s *Store) holdInMemory(size int64) bool {
	if size < 0 || size > s.cfg.MemoryBody || s.memHeld+size > memoryBudget*s.cfg.MemoryBody {
		return false
	}
	s.memHeld += size
	return true
}

// releaseMem gives the budget of a download held in memory back, once it
// is committed or aborted (readers still reading keep the bytes alive, but
// no new reader comes for them).
func (p *Pending) releaseMem() {
	if !p.inMem {
		return
	}
	p.s.mu.Lock()
	p.s.memHeld -= p.size
	p.s.mu.Unlock()
}

// Kept is the bytes written so far of a download held in memory, and true;
// nil and false for one written to a temp file. Leader only (a verifier
// reads .PKGINFO from them at the verdict, verify.Verifier.KeptByWriter):
// the bytes are never overwritten, a Truncate moves the kept ones to a new
// array and later writes append after them.
func (p *Pending) Kept() ([]byte, bool) {
	if !p.inMem {
		return nil, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mem, true
}

// writeMem appends b at off (the leader's Write, p.wmu held). The bytes go
// past every reader's end (readers never read beyond written), into the
// array sized for the whole download, so readers copying from it need no
// lock for the bytes they already may read.
func (p *Pending) writeMem(b []byte, off int64) int {
	n := copy(p.mem[off:cap(p.mem)], b)
	p.hash.Write(b[:n])
	p.mu.Lock()
	p.mem = p.mem[:off+int64(n)]
	p.written += int64(n)
	p.notifyLocked()
	p.mu.Unlock()
	return n
}

// truncateMem drops the bytes after off (Truncate, p.wmu held). The kept
// bytes move to a new array: a reader still copying from the old one reads
// bytes that are never overwritten, and finds the truncation afterwards.
func (p *Pending) truncateMem(off int64) {
	kept := make([]byte, off, cap(p.mem))
	copy(kept, p.mem[:off])
	p.mu.Lock()
	p.mem, p.written = kept, off
	p.truncs = append(p.truncs, off)
	p.notifyLocked()
	p.mu.Unlock()
	h := newHasher()
	h.Write(kept)
	p.hash = h
	p.discardExposed(off)
}

// toDisk writes the bytes held in memory to a new temp file, which the
// commit then fsyncs and renames (p.wmu held by Commit). Readers go on
// reading memory. The file is created read-only, as a blob is (its
// descriptor still writes): no chmod after the fsync, one system call and
// one change of the inode less per small blob.
func (p *Pending) toDisk() error {
	f, err := createTempMode(p.s.tmpDir, "dl-", 0o444)
	if err != nil {
		return fmt.Errorf("create temp file: %w", err)
	}
	var tf tempFile = f
	if p.wrap != nil {
		tf = p.wrap(f)
	}
	if _, err = tf.WriteAt(p.mem, 0); err != nil {
		err = fmt.Errorf("write temp file: %w", err)
	}
	p.mu.Lock()
	if err == nil {
		err = p.runningErrLocked() // aborted meanwhile: the file is ours to remove
	}
	if err == nil {
		p.f, p.path = tf, f.Name()
	}
	p.mu.Unlock()
	if err != nil {
		_ = tf.Close()
		_ = os.Remove(f.Name())
	}
	return err
}
