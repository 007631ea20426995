package store

import (
	"encoding/json"
	"os"
	"path/filepath"

	"github.com/dgraph-io/badger/v4"
	"github.com/ipfs/go-cid"
)

func decodeJSON(b []byte, v any) error { return json.Unmarshal(b, v) }

// reconcile makes index and blob files agree after a crash or a manual
// edit: files that are not valid blob names or have no row go, rows whose
// file is missing or has the wrong size go (and their signatures).
func (s *Store) reconcile() error {
	files, err := s.blobFiles()
	if err != nil {
		return err
	}
	keep := make(map[string]bool, len(files))
	var stale [][]byte
	check := func(key []byte, c cid.Cid, size int64, sig bool) {
		name := c.String()
		if got, ok := files[name]; ok && got == size {
			keep[name] = true
			return
		}
		s.log.Warn("index row without its blob, dropping", "key", string(key))
		stale = append(stale, append([]byte(nil), key...))
		if sig {
			stale = append(stale, sigKey(c))
		}
	}
	err = s.scan(prefixBlob, true, func(key, value []byte) error {
		var info BlobInfo
		if err := decodeJSON(value, &info); err != nil || !info.CID.Defined() {
			stale = append(stale, append([]byte(nil), key...))
			return nil
		}
		before := len(stale)
		check(key, info.CID, info.Size, true)
		if len(stale) > before && info.Filename != "" {
			stale = append(stale, fileKey(info.Filename))
		}
		return nil
	})
	if err != nil {
		return err
	}
	err = s.scan(prefixDB, true, func(key, value []byte) error {
		var f DBFile
		if err := decodeJSON(value, &f); err != nil || !f.CID.Defined() {
			stale = append(stale, append([]byte(nil), key...))
			return nil
		}
		check(key, f.CID, f.Size, false)
		return nil
	})
	if err != nil {
		return err
	}
	if err := s.deleteKeys(stale); err != nil {
		return err
	}
	return s.removeUnkept(files, keep)
}

// blobFiles lists blobs/ as name → size, removing anything that cannot be a
// blob (not a regular file, not the canonical string of a valid CID).
func (s *Store) blobFiles() (map[string]int64, error) {
	ents, err := os.ReadDir(s.blobDir)
	if err != nil {
		return nil, err
	}
	files := make(map[string]int64, len(ents))
	for _, e := range ents {
		path := filepath.Join(s.blobDir, e.Name())
		c, err := cid.Decode(e.Name())
		info, statErr := e.Info()
		if err != nil || checkCID(c) != nil || c.String() != e.Name() || statErr != nil || !info.Mode().IsRegular() {
			s.log.Warn("unexpected file in blobs, removing", "path", path)
			if err := os.RemoveAll(path); err != nil {
				return nil, err
			}
			continue
		}
		files[e.Name()] = info.Size()
		if info.Mode().Perm() != 0o444 {
			_ = os.Chmod(path, 0o444)
		}
	}
	return files, nil
}

// removeUnkept deletes the blob files no row refers to.
func (s *Store) removeUnkept(files map[string]int64, keep map[string]bool) error {
	removed := 0
	for name := range files {
		if keep[name] {
			continue
		}
		if err := os.Remove(filepath.Join(s.blobDir, name)); err != nil {
			return err
		}
		removed++
	}
	if removed > 0 {
		s.log.Warn("removed blobs without an index row", "count", removed)
	}
	return nil
}

// deleteKeys deletes keys in one write batch.
func (s *Store) deleteKeys(keys [][]byte) error {
	if len(keys) == 0 {
		return nil
	}
	s.clearRowCaches()
	defer s.clearRowCaches()
	return s.withDB(func(db *badger.DB) error {
		wb := db.NewWriteBatch()
		defer wb.Cancel()
		for _, k := range keys {
			if err := wb.Delete(k); err != nil {
				return err
			}
		}
		return wb.Flush()
	})
}

// clearRowCaches drops every cached row (around bulk deletes).
func (s *Store) clearRowCaches() {
	s.entryRows.clear()
	s.blobRows.clear()
}

// dbFileReferenced reports whether a stored repo db file is blob c.
func (s *Store) dbFileReferenced(c cid.Cid) bool {
	found := false
	_ = s.scan(prefixDB, true, func(_, value []byte) error {
		var f DBFile
		if decodeJSON(value, &f) == nil && f.CID.Equals(c) {
			found = true
		}
		return nil
	})
	return found
}

// blobReferenced reports whether c is a package blob or a repo db file.
func (s *Store) blobReferenced(c cid.Cid) bool {
	if _, err := s.get(blobKey(c)); err == nil {
		return true
	}
	return s.dbFileReferenced(c)
}
