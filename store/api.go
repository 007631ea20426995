package store

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/ipfs/go-cid"

	"github.com/flocon/flocon/store/repodb"
	"github.com/flocon/flocon/verify"
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
}

// BlobInfo is the index row of a verified blob.
type BlobInfo struct {
	CID        cid.Cid   `json:"cid"`
	Size       int64     `json:"size"`
	Repo       string    `json:"repo,omitempty"`
	Arch       string    `json:"arch,omitempty"`
	Filename   string    `json:"filename,omitempty"`
	Signer     string    `json:"signer,omitempty"` // fingerprint that verified it
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

	accessMu sync.Mutex
	access   map[cid.Cid]time.Time // last accesses not yet written to the index

	dbMu     sync.Mutex // one PutDB at a time
	pruneMu  sync.Mutex // one Prune at a time
	pruneReq chan struct{}

	wrapTemp func(*os.File) tempFile // test seam: failing downloads
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
	s := &Store{
		cfg:      cfg,
		log:      cfg.Logger,
		blobDir:  filepath.Join(cfg.Dir, "blobs"),
		tmpDir:   filepath.Join(cfg.Dir, "tmp"),
		pending:  make(map[cid.Cid]*Pending),
		access:   make(map[cid.Cid]time.Time),
		pruneReq: make(chan struct{}, 1),
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
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if !s.closed.CompareAndSwap(false, true) {
		return ErrClosed
	}
	return errors.Join(flushErr, s.db.Close())
}

// checkCID refuses anything but a CIDv1 raw sha2-256: blob paths derive
// only from such CIDs.
func checkCID(c cid.Cid) error {
	if _, err := verify.SHA256Of(c); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}

// Has reports whether a verified blob for c is present.
func (s *Store) Has(c cid.Cid) bool {
	if checkCID(c) != nil {
		return false
	}
	_, err := s.get(blobKey(c))
	return err == nil
}

// blobInfo reads the row of blob c, with its in-memory last access.
func (s *Store) blobInfo(c cid.Cid) (BlobInfo, error) {
	var info BlobInfo
	if err := s.getJSON(blobKey(c), &info); err != nil {
		return BlobInfo{}, fmt.Errorf("blob %s: %w", c, err)
	}
	s.accessMu.Lock()
	if t, ok := s.access[c]; ok && t.After(info.LastAccess) {
		info.LastAccess = t
	}
	s.accessMu.Unlock()
	return info, nil
}

// OpenBlob opens the verified blob c for reading and touches its last access.
func (s *Store) OpenBlob(c cid.Cid) (*os.File, BlobInfo, error) {
	if err := checkCID(c); err != nil {
		return nil, BlobInfo{}, fmt.Errorf("open blob %s: %w", c, err)
	}
	info, err := s.blobInfo(c)
	if err != nil {
		return nil, BlobInfo{}, fmt.Errorf("open %w", err)
	}
	f, err := os.Open(s.BlobPath(c))
	if errors.Is(err, fs.ErrNotExist) {
		// The file went away behind our back: the row is stale.
		s.log.Warn("blob file missing, dropping its row", "cid", c.String())
		_ = s.dropBlobRows(c)
		return nil, BlobInfo{}, fmt.Errorf("open blob %s: %w", c, ErrNotFound)
	}
	if err != nil {
		return nil, BlobInfo{}, fmt.Errorf("open blob %s: %w", c, err)
	}
	info.LastAccess = s.touch(c)
	return f, info, nil
}

// touch records an access in memory; Run and Close write them in batches.
func (s *Store) touch(c cid.Cid) time.Time {
	now := time.Now().UTC()
	s.accessMu.Lock()
	s.access[c] = now
	s.accessMu.Unlock()
	return now
}

// BlobPath is the file path of blob c (for sendfile; it may not exist).
func (s *Store) BlobPath(c cid.Cid) string { return filepath.Join(s.blobDir, c.String()) }

// RemoveBlob deletes blob c and its row (e.g. found tampered on disk).
func (s *Store) RemoveBlob(c cid.Cid) error {
	if err := checkCID(c); err != nil {
		return fmt.Errorf("remove blob %s: %w", c, err)
	}
	if err := s.dropBlobRows(c); err != nil {
		return fmt.Errorf("remove blob %s: %w", c, err)
	}
	if s.dbFileReferenced(c) {
		return nil // the same bytes are also a stored repo db file
	}
	if err := os.Remove(s.BlobPath(c)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove blob %s: %w", c, err)
	}
	return nil
}

func (s *Store) dropBlobRows(c cid.Cid) error {
	s.accessMu.Lock()
	delete(s.access, c)
	s.accessMu.Unlock()
	return s.update(func(txn *badger.Txn) error {
		if err := deleteFileRow(txn, c); err != nil {
			return err
		}
		if err := txn.Delete(blobKey(c)); err != nil {
			return err
		}
		return txn.Delete(sigKey(c))
	})
}

// deleteFileRow deletes the file-name row of blob c when it points to c.
func deleteFileRow(txn *badger.Txn, c cid.Cid) error {
	item, err := txn.Get(blobKey(c))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var info BlobInfo
	if err := item.Value(func(v []byte) error { return decodeJSON(v, &info) }); err != nil || info.Filename == "" {
		return nil //nolint:nilerr // an undecodable row has no file row to drop
	}
	item, err = txn.Get(fileKey(info.Filename))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	owner, err := item.ValueCopy(nil)
	if err != nil || string(owner) != c.String() {
		return err
	}
	return txn.Delete(fileKey(info.Filename))
}

// BlobByFilename returns the stored blob of a package file name, also for
// versions no current database lists (ErrNotFound).
func (s *Store) BlobByFilename(filename string) (BlobInfo, error) {
	if !repodb.ValidFilename(filename) {
		return BlobInfo{}, fmt.Errorf("blob by filename %q: %w", filename, ErrInvalid)
	}
	b, err := s.get(fileKey(filename))
	if err != nil {
		return BlobInfo{}, fmt.Errorf("blob by filename %s: %w", filename, err)
	}
	c, err := cid.Decode(string(b))
	if err != nil {
		return BlobInfo{}, fmt.Errorf("blob by filename %s: %w", filename, err)
	}
	return s.blobInfo(c)
}

// Blobs calls fn for every verified blob.
func (s *Store) Blobs(fn func(BlobInfo) error) error {
	infos, err := s.allBlobs()
	if err != nil {
		return err
	}
	for _, info := range infos {
		if err := fn(info); err != nil {
			return err
		}
	}
	return nil
}

// allBlobs reads every blob row, merged with the unflushed accesses; fn is
// then called outside the read transaction so it may write.
func (s *Store) allBlobs() ([]BlobInfo, error) {
	var infos []BlobInfo
	err := s.scan(prefixBlob, true, func(key, value []byte) error {
		var info BlobInfo
		if err := decodeJSON(value, &info); err != nil {
			return fmt.Errorf("blob row %s: %w", key, err)
		}
		infos = append(infos, info)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list blobs: %w", err)
	}
	s.accessMu.Lock()
	for i := range infos {
		if t, ok := s.access[infos[i].CID]; ok && t.After(infos[i].LastAccess) {
			infos[i].LastAccess = t
		}
	}
	s.accessMu.Unlock()
	return infos, nil
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

// PutSig stores the detached signature that verified blob c.
func (s *Store) PutSig(c cid.Cid, sig []byte) error {
	if err := checkCID(c); err != nil {
		return fmt.Errorf("put sig %s: %w", c, err)
	}
	if len(sig) == 0 {
		return fmt.Errorf("put sig %s: %w: empty signature", c, ErrInvalid)
	}
	err := s.update(func(txn *badger.Txn) error { return txn.Set(sigKey(c), sig) })
	if err != nil {
		return fmt.Errorf("put sig %s: %w", c, err)
	}
	return nil
}

// Sig returns the signature stored for blob c (ErrNotFound).
func (s *Store) Sig(c cid.Cid) ([]byte, error) {
	if err := checkCID(c); err != nil {
		return nil, fmt.Errorf("sig %s: %w", c, err)
	}
	b, err := s.get(sigKey(c))
	if err != nil {
		return nil, fmt.Errorf("sig %s: %w", c, err)
	}
	return b, nil
}

// copyToTemp streams r into a new temp file, fsyncs it and returns it
// (positioned at its end) with the sha256 and size; nothing is left behind
// on error.
func (s *Store) copyToTemp(r io.Reader) (*os.File, []byte, int64, error) {
	f, err := os.CreateTemp(s.tmpDir, "put-*")
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
	if err := os.Rename(f.Name(), s.BlobPath(c)); err != nil {
		return err
	}
	return syncDir(s.blobDir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
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
