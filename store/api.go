package store

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/ipfs/go-cid"

	"github.com/flocon/flocon/store/repodb"
)

// Sentinel errors.
var (
	ErrNotFound = errors.New("not found")
	ErrAborted  = errors.New("download aborted")
	ErrClosed   = errors.New("store closed")
	// ErrInvalid reports a name or CID refused before it reaches the disk.
	ErrInvalid = errors.New("invalid name or cid")
	// ErrTruncated is returned to a reader whose bytes the leader discarded
	// (Truncate below the reader's offset): what it got may not be final.
	ErrTruncated = errors.New("download restarted below the reader's offset")
)

// Config configures a Store. Dir is required; the zero value of the rest works.
type Config struct {
	Dir          string       // data dir: blobs/, tmp/, index/
	Logger       *slog.Logger // default: discard
	KeepVersions int          // retention: newest N versions per (name, arch); 0 = keep all
	MaxBytes     int64        // size quota (LRU by last access); 0 = none
	// MemoryBody: a download of known size up to this many bytes is held
	// in memory until it is proven, and written to disk (temp file, fsync,
	// rename, index row) only after its readers were released; 0 =
	// DefaultMemoryBody, < 0 = every download goes to a temp file at once.
	MemoryBody int64
}

// DefaultMemoryBody is the largest download held in memory until proven
// (Config.MemoryBody). Creating the temp file (an inode allocation) was the
// largest single step on the path of a small cold package; a held body
// costs its size in memory until the disk has it.
const DefaultMemoryBody = 1 << 20

// BlobInfo is the index row of a verified blob.
type BlobInfo struct {
	CID      cid.Cid `json:"cid"`
	Size     int64   `json:"size"`
	Repo     string  `json:"repo,omitempty"`
	Arch     string  `json:"arch,omitempty"`
	Filename string  `json:"filename,omitempty"`
	Signer   string  `json:"signer,omitempty"` // fingerprint that verified it
	// Identity is NAME-VERSION-ARCH as the package's own .PKGINFO says; the
	// gateway serves the blob only under a file name with that identity, so
	// one signed package can never be served as another (substitution).
	Identity   string    `json:"identity,omitempty"`
	Added      time.Time `json:"added"`
	LastAccess time.Time `json:"lastAccess"`
}

// DBFile is a stored repo database file (db, files, or their .sig).
type DBFile struct {
	Repo, Arch, Name string
	CID              cid.Cid
	Size             int64
	LastModified     time.Time // upstream Last-Modified
}

// Store is the content-addressed blob store plus its index.
type Store struct {
	cfg     Config
	log     *slog.Logger
	db      *badger.DB
	blobDir string
	tmpDir  string
	closed  atomic.Bool
	closeMu sync.RWMutex // held shared by every index operation, exclusively by Close

	mu      sync.Mutex
	pending map[cid.Cid]*Pending
	memHeld int64 // bytes of the downloads held in memory (under mu)

	discardMu sync.Mutex // one read-raise-write of a discarded prefix at a time

	accessMu sync.Mutex
	access   map[cid.Cid]time.Time // last accesses not yet written to the index

	entryRows *rowCache[string, repodb.Entry] // entry/<repo>/<arch>/<file> rows
	blobRows  *rowCache[cid.Cid, blobRow]     // blob/<cid> rows, present or not (without unflushed accesses)
	fds       keptFDs                         // idle descriptors of recently served blobs

	commits  committer  // group commit of downloads
	dbMu     sync.Mutex // one PutDB at a time
	pruneMu  sync.Mutex // one Prune at a time
	pruneReq chan struct{}

	wrapTemp func(*os.File) tempFile // test seam: failing downloads
	// afterFileTruncate runs between a Truncate's cut of the temp file and
	// its rehash (test seam: what readers see at that moment).
	afterFileTruncate func()
	clock             atomic.Pointer[func() time.Time]
}

// now is the store's clock (a test seam), in UTC.
func (s *Store) now() time.Time {
	if f := s.clock.Load(); f != nil {
		return (*f)().UTC()
	}
	return time.Now().UTC()
}

// Open opens (creating) the store in cfg.Dir and reconciles index and blobs.
func Open(cfg Config) (*Store, error) {
	if cfg.Dir == "" {
		return nil, fmt.Errorf("open store: %w: empty data dir", ErrInvalid)
	}
	if cfg.KeepVersions < 0 || cfg.MaxBytes < 0 {
		return nil, fmt.Errorf("open store: %w: negative retention", ErrInvalid)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MemoryBody == 0 {
		cfg.MemoryBody = DefaultMemoryBody
	}
	s := &Store{
		cfg:      cfg,
		log:      cfg.Logger,
		blobDir:  filepath.Join(cfg.Dir, "blobs"),
		tmpDir:   filepath.Join(cfg.Dir, "tmp"),
		pending:  make(map[cid.Cid]*Pending),
		access:   make(map[cid.Cid]time.Time),
		pruneReq: make(chan struct{}, 1),

		entryRows: newRowCache[string, repodb.Entry](),
		blobRows:  newRowCache[cid.Cid, blobRow](),

		commits: committer{gatherWait: commitGather, gatherMax: gatherBytes},
	}
	for _, d := range []string{s.blobDir, s.tmpDir, filepath.Join(cfg.Dir, "index")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		}
	}
	if err := wipeDir(s.tmpDir); err != nil {
		return nil, fmt.Errorf("open store: wipe tmp: %w", err)
	}
	db, err := openIndex(filepath.Join(cfg.Dir, "index"), s.log)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	s.db = db
	if err := s.reconcile(); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open store: reconcile: %w", err)
	}
	return s, nil
}

// Close flushes and closes the index. In-flight downloads are aborted.
func (s *Store) Close() error {
	s.mu.Lock()
	inflight := make([]*Pending, 0, len(s.pending))
	for _, p := range s.pending {
		inflight = append(inflight, p)
	}
	s.mu.Unlock()
	for _, p := range inflight {
		p.Abort(ErrClosed)
	}
	flushErr := s.flushAccess()
	s.fds.close()
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if !s.closed.CompareAndSwap(false, true) {
		return ErrClosed
	}
	return errors.Join(flushErr, s.db.Close())
}

// Begin returns the in-flight download of c, creating it (leader=true) when
// none runs. Only the leader writes to it. size is the expected length or -1.
// When blob c is already stored, Begin returns a committed Pending reading it
// (leader=false), so a caller racing a finishing download never refetches.
func (s *Store) Begin(c cid.Cid, size int64) (p *Pending, leader bool, err error) {
	if err := checkCID(c); err != nil {
		return nil, false, fmt.Errorf("begin %s: %w", c, err)
	}
	if s.closed.Load() {
		return nil, false, fmt.Errorf("begin %s: %w", c, ErrClosed)
	}
	if size < 0 {
		size = -1
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.pending[c]; p != nil {
		return p, false, nil
	}
	if info, err := s.blobInfo(c); err == nil {
		return committedPending(s, info), false, nil
	}
	p, err = newPending(s, c, size)
	if err != nil {
		return nil, false, fmt.Errorf("begin %s: %w", c, err)
	}
	s.pending[c] = p
	return p, true, nil
}

// Inflight returns the running download of c, or nil.
func (s *Store) Inflight(c cid.Cid) *Pending {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pending[c]
}

// forget removes p from the in-flight table (after Commit or Abort).
func (s *Store) forget(p *Pending) {
	s.mu.Lock()
	if s.pending[p.cid] == p {
		delete(s.pending, p.cid)
	}
	s.mu.Unlock()
}

// copyToTemp streams r into a new temp file, fsyncs it and returns it
// (positioned at its end) with the sha256 and size; nothing is left behind
// on error.
func (s *Store) copyToTemp(r io.Reader) (*os.File, []byte, int64, error) {
	f, err := createTemp(s.tmpDir, "put-")
	if err != nil {
		return nil, nil, 0, err
	}
	h := newHasher()
	size, err := io.Copy(io.MultiWriter(f, h), r)
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		_ = f.Close()
		_ = os.Remove(f.Name())
		return nil, nil, 0, err
	}
	return f, h.Sum(nil), size, nil
}

// publish makes the synced temp file f the read-only blob c: chmod, rename,
// fsync of the blobs dir. f is closed.
func (s *Store) publish(f tempFile, c cid.Cid) error {
	defer f.Close()
	if err := f.Chmod(0o444); err != nil {
		return err
	}
	if err := renameFile(f.Name(), s.BlobPath(c)); err != nil {
		return err
	}
	return syncDir(s.blobDir)
}

func syncDir(dir string) error {
	d, err := openRead(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// wipeDir removes everything inside dir.
func wipeDir(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range ents {
		errs = append(errs, os.RemoveAll(filepath.Join(dir, e.Name())))
	}
	return errors.Join(errs...)
}
