package p2p

import (
	"context"
	"io"
	"os"

	"github.com/ipfs/go-cid"

	"github.com/flocon/flocon/store"
	"github.com/flocon/flocon/store/repodb"
)

// localStore is what the peer-to-peer side needs from the store: verified
// blobs and in-flight downloads to serve, signatures, db entries for shared
// files, and small metadata (bans, shared-file cache).
type localStore interface {
	// Has reports whether a verified blob for c is present.
	Has(c cid.Cid) bool
	// OpenBlob opens the verified blob c for reading.
	OpenBlob(c cid.Cid) (*os.File, store.BlobInfo, error)
	// RemoveBlob deletes blob c (found corrupt while serving it).
	RemoveBlob(c cid.Cid) error
	// Blobs calls fn for every verified blob.
	Blobs(fn func(store.BlobInfo) error) error
	// Sig returns the signature stored for blob c.
	Sig(c cid.Cid) ([]byte, error)
	// EntryByCID returns the db entry of the package whose sha256 is c.
	EntryByCID(c cid.Cid) (repo, arch string, e repodb.Entry, err error)
	// Meta, PutMeta and MetaList keep small values per namespace.
	Meta(ns, key string) ([]byte, error)
	PutMeta(ns, key string, value []byte) error
	MetaList(ns string, fn func(key string, value []byte) error) error
	// growing returns the in-flight download of c, or nil.
	growing(c cid.Cid) growingBlob
}

// growingBlob is an in-flight download peers may stream from
// (*store.Pending): readers only ever get bytes already written, and never
// the last ones before the download is verified and committed.
type growingBlob interface {
	Size() int64
	Written() int64
	NewReader(ctx context.Context, off int64) io.ReadCloser
}

// storeAdapter gives *store.Store the localStore shape.
type storeAdapter struct{ *store.Store }

func newStoreAdapter(s *store.Store) localStore { return storeAdapter{s} }

func (a storeAdapter) growing(c cid.Cid) growingBlob {
	if p := a.Inflight(c); p != nil {
		return p
	}
	return nil // never a typed nil
}
