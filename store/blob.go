package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/ipfs/go-cid"

	"github.com/flocon/flocon/verify"
)

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
	_, err := s.blobInfo(c)
	return err == nil
}

// blobRow is a cached blob row, or the knowledge that there is none: a
// cold request asks whether its blob is stored four or five times (the
// gateway, the node, Begin, the routers' announce) before it is, each a
// badger read without the negative entry.
type blobRow struct {
	info   BlobInfo
	absent bool
}

// blobInfo reads the row of blob c, with its in-memory last access.
func (s *Store) blobInfo(c cid.Cid) (BlobInfo, error) {
	if s.closed.Load() {
		return BlobInfo{}, fmt.Errorf("blob %s: %w", c, ErrClosed)
	}
	row, ok := s.blobRows.get(c)
	if !ok {
		gen := s.blobRows.generation()
		err := s.getJSON(blobKey(c), &row.info)
		switch {
		case errors.Is(err, ErrNotFound):
			row = blobRow{absent: true}
		case err != nil:
			return BlobInfo{}, fmt.Errorf("blob %s: %w", c, err)
		}
		s.blobRows.put(c, row, gen)
	}
	if row.absent {
		return BlobInfo{}, fmt.Errorf("blob %s: %w", c, ErrNotFound)
	}
	info := row.info
	s.accessMu.Lock()
	if t, ok := s.access[c]; ok && t.After(info.LastAccess) {
		info.LastAccess = t
	}
	s.accessMu.Unlock()
	return info, nil
}

// Info returns the index row of the verified blob c (ErrNotFound).
func (s *Store) Info(c cid.Cid) (BlobInfo, error) {
	if err := checkCID(c); err != nil {
		return BlobInfo{}, fmt.Errorf("blob info %s: %w", c, err)
	}
	return s.blobInfo(c)
}

// OpenBlob opens the verified blob c for reading and touches its last access.
func (s *Store) OpenBlob(c cid.Cid) (*os.File, BlobInfo, error) {
	f, info, _, err := s.openBlob(c, false)
	return f, info, err
}

// openBlob reads c's row first (the authority: ErrNotFound when absent),
// then opens its file, or takes its idle descriptor when kept (blobfds.go:
// gen goes back with it), and touches its last access.
func (s *Store) openBlob(c cid.Cid, kept bool) (f *os.File, info BlobInfo, gen uint64, err error) {
	if err := checkCID(c); err != nil {
		return nil, BlobInfo{}, 0, fmt.Errorf("open blob %s: %w", c, err)
	}
	info, err = s.blobInfo(c)
	if err != nil {
		return nil, BlobInfo{}, 0, fmt.Errorf("open %w", err)
	}
	if kept {
		f, gen = s.fds.take(c)
	}
	if f == nil {
		if f, err = s.openBlobFile(c); err != nil {
			return nil, BlobInfo{}, 0, err
		}
	}
	info.LastAccess = s.touch(c)
	return f, info, gen, nil
}

// openBlobFile opens the file of blob c, whose row was just read.
func (s *Store) openBlobFile(c cid.Cid) (*os.File, error) {
	f, err := openRead(s.BlobPath(c))
	if errors.Is(err, fs.ErrNotExist) {
		// The file went away behind our back: the row is stale.
		s.log.Warn("blob file missing, dropping its row", "cid", c.String())
		_ = s.dropBlobRows(c)
		return nil, fmt.Errorf("open blob %s: %w", c, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("open blob %s: %w", c, err)
	}
	return f, nil
}

// touch records an access in memory; Run and Close write them in batches.
func (s *Store) touch(c cid.Cid) time.Time {
	now := s.now()
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
	s.fds.drop(c)
	s.accessMu.Lock()
	delete(s.access, c)
	s.accessMu.Unlock()
	s.blobRows.invalidate(c)
	defer s.blobRows.invalidate(c)
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
	if !verify.ValidFileName(filename) {
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
