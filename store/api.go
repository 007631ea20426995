package store

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/flocon/flocon/store/repodb"
)

// Sentinel errors.
var (
	ErrNotFound = errors.New("not found")
	ErrAborted  = errors.New("download aborted")
	ErrClosed   = errors.New("store closed")
)

// Config configures a Store. Dir is required; the zero value of the rest works.
type Config struct {
	Dir          string       // data dir: blobs/, tmp/, index/, db/
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
	// STUB: the store implementation fills this in.
}

// Open opens (creating) the store in cfg.Dir and reconciles index and blobs.
func Open(cfg Config) (*Store, error) { panic("unimplemented") }

// Close flushes and closes the index. In-flight downloads are aborted.
func (s *Store) Close() error { panic("unimplemented") }

// Has reports whether a verified blob for c is present.
func (s *Store) Has(c cid.Cid) bool { panic("unimplemented") }

// OpenBlob opens the verified blob c for reading and touches its last access.
func (s *Store) OpenBlob(c cid.Cid) (*os.File, BlobInfo, error) { panic("unimplemented") }

// BlobPath is the file path of blob c (for sendfile; it may not exist).
func (s *Store) BlobPath(c cid.Cid) string { panic("unimplemented") }

// RemoveBlob deletes blob c and its row (e.g. found tampered on disk).
func (s *Store) RemoveBlob(c cid.Cid) error { panic("unimplemented") }

// Blobs calls fn for every verified blob.
func (s *Store) Blobs(fn func(BlobInfo) error) error { panic("unimplemented") }

// Begin returns the in-flight download of c, creating it (leader=true) when
// none runs. Only the leader writes to it. size is the expected length or -1.
func (s *Store) Begin(c cid.Cid, size int64) (p *Pending, leader bool, err error) {
	panic("unimplemented")
}

// Inflight returns the running download of c, or nil.
func (s *Store) Inflight(c cid.Cid) *Pending { panic("unimplemented") }

// PutSig stores the detached signature that verified blob c.
func (s *Store) PutSig(c cid.Cid, sig []byte) error { panic("unimplemented") }

// Sig returns the signature stored for blob c (ErrNotFound).
func (s *Store) Sig(c cid.Cid) ([]byte, error) { panic("unimplemented") }

// PutDB stores a repo database file read from r (written to a blob named by
// its sha256) and, for *.db and *.files, parses it and replaces the repo's
// entries. It returns the stored file.
func (s *Store) PutDB(repo, arch, name string, r io.Reader, lastModified time.Time) (DBFile, error) {
	panic("unimplemented")
}

// OpenDB opens a stored repo database file (ErrNotFound).
func (s *Store) OpenDB(repo, arch, name string) (*os.File, DBFile, error) {
	panic("unimplemented")
}

// Entry returns the db entry of a package file (ErrNotFound).
func (s *Store) Entry(repo, arch, filename string) (repodb.Entry, error) {
	panic("unimplemented")
}

// EntryByCID returns the db entry (and its repo and arch) of the package whose
// sha256 is c (ErrNotFound).
func (s *Store) EntryByCID(c cid.Cid) (repo, arch string, e repodb.Entry, err error) {
	panic("unimplemented")
}

// Meta reads a small value stored by node (bans, peer history) under key
// inside its own namespace; ErrNotFound when absent.
func (s *Store) Meta(ns, key string) ([]byte, error) { panic("unimplemented") }

// PutMeta writes (value != nil) or deletes (value == nil) a small value.
func (s *Store) PutMeta(ns, key string, value []byte) error { panic("unimplemented") }

// MetaList calls fn for every key of namespace ns.
func (s *Store) MetaList(ns string, fn func(key string, value []byte) error) error {
	panic("unimplemented")
}
