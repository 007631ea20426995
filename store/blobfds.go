package store

import (
	"container/list"
	"io"
	"os"
	"sync"
	"syscall"

	"github.com/ipfs/go-cid"
)

// Descriptors of recently served blobs are kept open between requests.
// Opening a blob is a path walk (openat), os.NewFile's fcntl and a close
// after the response: three of the fifteen system calls of a warm small
// request. A blob is immutable and content-addressed, so a descriptor
// opened once reads the same verified bytes for as long as the blob is
// stored. The row stays the authority: OpenKept reads it first, exactly as
// OpenBlob does, and dropping a blob's row (RemoveBlob, retention, a row
// found stale) closes its kept descriptor, so a removed blob is never
// served from one and does not keep its disk space. Only blobs/ files are
// kept: a download in flight is read through its own Pending readers.

// keptFDsMax bounds the idle descriptors (one per blob, least recently
// used closed first): as many as the blob rows cached (a pacman -Syu
// touches a few hundred packages, and a LAN of machines the same ones),
// and never more than an eighth of the process's descriptor limit (Go
// raises the soft limit to the hard one at start: 524288 under systemd).
var keptFDsMax = func() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0
	}
	return int(min(lim.Cur/8, rowCacheSize))
}()

// Blob is a verified blob opened by OpenKept. Its descriptor may have
// served an earlier reader; it is handed out at offset 0. Close gives it
// back to the store (or closes it): call it once, and use the Blob no more.
type Blob struct {
	*os.File
	s   *Store
	cid cid.Cid
	gen uint64
}

// Close hands the descriptor back for the next reader of the blob.
func (b *Blob) Close() error {
	if b.File == nil {
		return os.ErrClosed
	}
	f := b.File
	b.File = nil
	b.s.fds.put(b.cid, f, b.gen)
	return nil
}

// keptFDs are the idle descriptors, at most one per blob.
type keptFDs struct {
	mu     sync.Mutex
	gen    uint64 // bumped by every drop: descriptors handed out before are closed on return
	closed bool
	idle   map[cid.Cid]*list.Element // of *keptFD
	lru    list.List                 // front: most recently returned
}

type keptFD struct {
	cid cid.Cid
	f   *os.File
}

// take removes and returns the idle descriptor of c (nil when none), and
// the generation the caller must give back with it.
func (k *keptFDs) take(c cid.Cid) (*os.File, uint64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	e, ok := k.idle[c]
	if !ok {
		return nil, k.gen
	}
	delete(k.idle, c)
	k.lru.Remove(e)
	return e.Value.(*keptFD).f, k.gen
}

// put keeps f as c's idle descriptor, rewound to offset 0, unless a drop
// happened since it was handed out (gen), the blob already has one, or
// the store is closed; otherwise f is closed.
func (k *keptFDs) put(c cid.Cid, f *os.File, gen uint64) {
	// Rewind before keeping: the next reader starts at 0 without a seek
	// on its own path (this one runs after the response went out).
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		_ = f.Close()
		return
	}
	k.mu.Lock()
	if k.closed || gen != k.gen || k.idle[c] != nil || keptFDsMax == 0 {
		k.mu.Unlock()
		_ = f.Close()
		return
	}
	if k.idle == nil {
		k.idle = make(map[cid.Cid]*list.Element)
	}
	k.idle[c] = k.lru.PushFront(&keptFD{cid: c, f: f})
	var evicted *os.File
	if k.lru.Len() > keptFDsMax {
		old := k.lru.Remove(k.lru.Back()).(*keptFD)
		delete(k.idle, old.cid)
		evicted = old.f
	}
	k.mu.Unlock()
	if evicted != nil {
		_ = evicted.Close()
	}
}

// drop closes c's idle descriptor, and makes every descriptor handed out
// before now close on return instead of being kept.
func (k *keptFDs) drop(c cid.Cid) {
	k.mu.Lock()
	k.gen++
	e, ok := k.idle[c]
	if ok {
		delete(k.idle, c)
		k.lru.Remove(e)
	}
	k.mu.Unlock()
	if ok {
		_ = e.Value.(*keptFD).f.Close()
	}
}

// close closes every idle descriptor; later returns are closed too.
func (k *keptFDs) close() {
	k.mu.Lock()
	k.closed = true
	var fs []*os.File
	for e := k.lru.Front(); e != nil; e = e.Next() {
		fs = append(fs, e.Value.(*keptFD).f)
	}
	k.idle = nil
	k.lru.Init()
	k.mu.Unlock()
	for _, f := range fs {
		_ = f.Close()
	}
}

// OpenKept is OpenBlob for a reader that gives the descriptor back with
// Blob.Close: the next reader of the same blob then gets it without an
// open. The row is read first, as for OpenBlob (ErrNotFound when absent).
func (s *Store) OpenKept(c cid.Cid) (*Blob, BlobInfo, error) {
	f, info, gen, err := s.openBlob(c, true)
	if err != nil {
		return nil, info, err
	}
	return &Blob{File: f, s: s, cid: c, gen: gen}, info, nil
}
