package p2p

import (
	"os"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
)

// Re-verification of served files. A complete blob is hashed as it is
// sent, and its last chunk held back until the hash is proven (serveFile),
// so that a file rotted on disk is never sent whole: the receiver would
// find the bytes wrong and ban this node. That hash was a third of the CPU
// that separates a blob stream from plain HTTP (ARCHITECTURE.md, the peer
// path). A file proven whole by a send is trusted without a second hash
// for reverifyAfter, while its identity (device, inode, size, mtime and
// ctime, read with fstat on the open file) is unchanged.
//
// What that gives up, and why it is little: any write to the file through
// the file system (a truncation, a rewrite in place, a copy over it, even
// with its mtime put back) changes its ctime, which no process can set,
// and the next send hashes again. What a stamp cannot see is the medium
// rotting under an unchanged file; those bytes reach a reader only when
// the kernel drops the pages the last hash read from its cache and reads
// them from disk again, within the window. A receiver still verifies every
// byte (nothing wrong is released), so the cost of that double accident is
// one failed transfer and a ban of this node, never bad data. In return,
// a machine serving one new package to the rest of its LAN (a `pacman
// -Syu` wave) hashes it once, not once per peer.
const (
	reverifyAfter = 10 * time.Minute
	// stampSettle: a file changed less than this before a hash started is
	// not trusted afterwards. File times have the kernel's coarse clock
	// (a few ms): a change right after the hash could leave the same
	// ctime. Later than this, it cannot.
	stampSettle = time.Second
	maxVerified = 4096 // files remembered; then the oldest are hashed again
)

// fileStamp identifies one version of a file on disk.
type fileStamp struct {
	dev, ino     uint64
	size         int64
	mtime, ctime int64 // ns since the epoch
}

// verifiedFiles remembers which file version each CID was last proven
// whole in, and when.
type verifiedFiles struct {
	mu sync.Mutex
	m  map[cid.Cid]verifiedFile
}

type verifiedFile struct {
	stamp fileStamp
	at    time.Time
}

func newVerifiedFiles() *verifiedFiles { return &verifiedFiles{m: make(map[cid.Cid]verifiedFile)} }

// fresh reports whether c was proven whole in the file version st within
// reverifyAfter of now.
func (v *verifiedFiles) fresh(c cid.Cid, st fileStamp, now time.Time) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	e, ok := v.m[c]
	return ok && e.stamp == st && now.Sub(e.at) < reverifyAfter && !now.Before(e.at)
}

// mark records that a hash which started at start proved c whole in st
// (unless st changed too shortly before: see stampSettle).
func (v *verifiedFiles) mark(c cid.Cid, st fileStamp, start time.Time) {
	if start.Sub(time.Unix(0, st.ctime)) < stampSettle || start.Sub(time.Unix(0, st.mtime)) < stampSettle {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, ok := v.m[c]; !ok && len(v.m) >= maxVerified {
		v.evictLocked()
	}
	v.m[c] = verifiedFile{stamp: st, at: start}
}

// evictLocked drops the oldest entry.
func (v *verifiedFiles) evictLocked() {
	var oldest cid.Cid
	var at time.Time
	for c, e := range v.m {
		if at.IsZero() || e.at.Before(at) {
			oldest, at = c, e.at
		}
	}
	delete(v.m, oldest)
}

// forget drops what is known of c (its copy was found corrupt or dropped).
func (v *verifiedFiles) forget(c cid.Cid) {
	v.mu.Lock()
	delete(v.m, c)
	v.mu.Unlock()
}

// stampOf reads the identity of an open file; false when it cannot.
func stampOf(f *os.File) (fileStamp, bool) {
	fi, err := f.Stat()
	if err != nil {
		return fileStamp{}, false
	}
	return statStamp(fi)
}
