package store

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/ipfs/go-cid"

	"github.com/flocon/flocon/store/repodb"
	"github.com/flocon/flocon/verify"
)

// checkRepoFile applies the name grammar (verify.ValidName, ValidArch,
// ValidFileName) to a repo, arch and file name before they form a key.
func checkRepoFile(repo, arch, file string) error {
	switch {
	case !verify.ValidName(repo):
		return fmt.Errorf("%w: repo %q", ErrInvalid, repo)
	case !verify.ValidArch(arch):
		return fmt.Errorf("%w: arch %q", ErrInvalid, arch)
	case !verify.ValidFileName(file):
		return fmt.Errorf("%w: file name %q", ErrInvalid, file)
	}
	return nil
}

// isPackageDB reports whether a db file name is a database to parse (not a
// signature).
func isPackageDB(name string) bool {
	if strings.HasSuffix(name, ".sig") {
		return false
	}
	return strings.HasSuffix(name, ".db") || strings.HasSuffix(name, ".files") ||
		strings.Contains(name, ".db.tar") || strings.Contains(name, ".files.tar")
}

// PutDB stores a repo database file read from r (written to a blob named by
// its sha256) and, for *.db and *.files, parses it and replaces the repo's
// entries. It returns the stored file. A database that does not parse is
// refused and the previous one stays.
func (s *Store) PutDB(repo, arch, name string, r io.Reader, lastModified time.Time) (DBFile, error) {
	if err := checkRepoFile(repo, arch, name); err != nil {
		return DBFile{}, fmt.Errorf("put db %s/%s/%s: %w", repo, arch, name, err)
	}
	key := repo + "/" + arch + "/" + name
	if s.closed.Load() {
		return DBFile{}, fmt.Errorf("put db %s: %w", key, ErrClosed)
	}
	s.dbMu.Lock()
	defer s.dbMu.Unlock()
	f, sum, size, err := s.copyToTemp(r)
	if err != nil {
		return DBFile{}, fmt.Errorf("put db %s: %w", key, err)
	}
	c, err := verify.CIDFromSHA256(sum)
	if err != nil {
		_ = f.Close()
		_ = os.Remove(f.Name())
		return DBFile{}, fmt.Errorf("put db %s: %w", key, err)
	}
	var current DBFile
	if s.getJSON(dbKey(repo, arch, name), &current) == nil && current.CID.Equals(c) && s.blobPresent(c) {
		// Same bytes as stored: its entries are already indexed.
		_ = f.Close()
		_ = os.Remove(f.Name())
		current.LastModified = lastModified.UTC()
		if err := s.setDBRow(current); err != nil {
			return DBFile{}, fmt.Errorf("put db %s: %w", key, err)
		}
		return current, nil
	}
	var names map[string]struct{}
	if isPackageDB(name) {
		if names, err = walkNames(f); err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
			return DBFile{}, fmt.Errorf("put db %s: %w", key, err)
		}
	}
	if err := s.publish(f, c); err != nil {
		_ = os.Remove(f.Name())
		return DBFile{}, fmt.Errorf("put db %s: %w", key, err)
	}
	if names != nil {
		if err := s.replaceEntries(repo, arch, c, names); err != nil {
			return DBFile{}, fmt.Errorf("put db %s: %w", key, err)
		}
	}
	file := DBFile{Repo: repo, Arch: arch, Name: name, CID: c, Size: size, LastModified: lastModified.UTC()}
	if err := s.setDBRow(file); err != nil {
		return DBFile{}, fmt.Errorf("put db %s: %w", key, err)
	}
	s.requestPrune()
	return file, nil
}

// walkNames parses the database in f (first pass: validation) and returns
// the set of its package file names.
func walkNames(f *os.File) (map[string]struct{}, error) {
	names := make(map[string]struct{})
	_, err := repodb.Walk(io.NewSectionReader(f, 0, 1<<62), func(e repodb.Entry) error {
		names[e.Filename] = struct{}{}
		return nil
	})
	return names, err
}

// replaceEntries writes the entries of db blob c (second pass, batched, one
// entry in memory at a time) and removes the repo's entries it no longer lists.
func (s *Store) replaceEntries(repo, arch string, c cid.Cid, names map[string]struct{}) error {
	f, err := openRead(s.BlobPath(c))
	if err != nil {
		return err
	}
	defer f.Close()
	var st repodb.Stats
	s.entryRows.clear()
	defer s.entryRows.clear()
	err = s.withDB(func(db *badger.DB) error {
		wb := db.NewWriteBatch()
		defer wb.Cancel()
		var err error
		st, err = repodb.Walk(f, func(e repodb.Entry) error { return setEntry(wb, repo, arch, e) })
		if err != nil {
			return err
		}
		return wb.Flush()
	})
	if err != nil {
		return fmt.Errorf("write entries: %w", err)
	}
	if st.Skipped > 0 {
		s.log.Warn("skipped malformed db entries", "repo", repo, "arch", arch,
			"skipped", st.Skipped, "firstReason", st.Reasons[0].Err.Error())
	}
	return s.dropStaleEntries(repo, arch, names)
}

// setEntry adds the entry and cid rows of e to a write batch.
func setEntry(wb *badger.WriteBatch, repo, arch string, e repodb.Entry) error {
	ec, err := e.CID()
	if err != nil {
		return err
	}
	v, err := json.Marshal(e)
	if err != nil {
		return err
	}
	ref, err := json.Marshal(entryRef{Repo: repo, Arch: arch, Filename: e.Filename})
	if err != nil {
		return err
	}
	if err := wb.Set(entryKey(repo, arch, e.Filename), v); err != nil {
		return err
	}
	return wb.Set(cidKey(ec), ref)
}

// dropStaleEntries deletes the entries of repo/arch not in names, and the
// cid rows that pointed at them. Their blobs stay: retention decides.
func (s *Store) dropStaleEntries(repo, arch string, names map[string]struct{}) error {
	prefix := entryPrefix(repo, arch)
	var gone []string
	err := s.scan(prefix, false, func(key, _ []byte) error {
		if _, ok := names[string(key[len(prefix):])]; !ok {
			gone = append(gone, string(key[len(prefix):]))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("drop stale entries: %w", err)
	}
	stale := make([][]byte, 0, 2*len(gone))
	for _, filename := range gone {
		key := entryKey(repo, arch, filename)
		stale = append(stale, key)
		var e repodb.Entry
		if s.getJSON(key, &e) != nil {
			continue
		}
		ec, err := e.CID()
		if err != nil {
			continue
		}
		var ref entryRef
		if s.getJSON(cidKey(ec), &ref) == nil && ref == (entryRef{repo, arch, filename}) {
			stale = append(stale, cidKey(ec))
		}
	}
	return s.deleteKeys(stale)
}

// setDBRow writes the row of a db file and removes the blob of the file it
// replaces when nothing else refers to it.
func (s *Store) setDBRow(file DBFile) error {
	key := dbKey(file.Repo, file.Arch, file.Name)
	var old DBFile
	oldErr := s.getJSON(key, &old)
	err := s.update(func(txn *badger.Txn) error { return setJSON(txn, key, file) })
	if err != nil {
		return err
	}
	if oldErr == nil && !old.CID.Equals(file.CID) && !s.blobReferenced(old.CID) {
		s.fds.drop(old.CID)
		if err := os.Remove(s.BlobPath(old.CID)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("cannot remove replaced db blob", "cid", old.CID.String(), "err", err)
		}
	}
	return nil
}

// blobPresent reports whether the file of blob c exists.
func (s *Store) blobPresent(c cid.Cid) bool {
	_, err := os.Stat(s.BlobPath(c))
	return err == nil
}

// OpenDB opens a stored repo database file (ErrNotFound).
func (s *Store) OpenDB(repo, arch, name string) (*os.File, DBFile, error) {
	if err := checkRepoFile(repo, arch, name); err != nil {
		return nil, DBFile{}, fmt.Errorf("open db %s/%s/%s: %w", repo, arch, name, err)
	}
	key := repo + "/" + arch + "/" + name
	var file DBFile
	if err := s.getJSON(dbKey(repo, arch, name), &file); err != nil {
		return nil, DBFile{}, fmt.Errorf("open db %s: %w", key, err)
	}
	f, err := openRead(s.BlobPath(file.CID))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, DBFile{}, fmt.Errorf("open db %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return nil, DBFile{}, fmt.Errorf("open db %s: %w", key, err)
	}
	return f, file, nil
}

// DBFiles calls fn for every stored repo database file.
func (s *Store) DBFiles(fn func(DBFile) error) error {
	var files []DBFile
	err := s.scan(prefixDB, true, func(key, value []byte) error {
		var f DBFile
		if err := decodeJSON(value, &f); err != nil {
			return fmt.Errorf("db row %s: %w", key, err)
		}
		files = append(files, f)
		return nil
	})
	if err != nil {
		return fmt.Errorf("list db files: %w", err)
	}
	for _, f := range files {
		if err := fn(f); err != nil {
			return err
		}
	}
	return nil
}

// Entry returns the db entry of a package file (ErrNotFound).
func (s *Store) Entry(repo, arch, filename string) (repodb.Entry, error) {
	key := repo + "/" + arch + "/" + filename
	if err := checkRepoFile(repo, arch, filename); err != nil {
		return repodb.Entry{}, fmt.Errorf("entry %q: %w", key, err)
	}
	if s.closed.Load() {
		return repodb.Entry{}, fmt.Errorf("entry %s: %w", key, ErrClosed)
	}
	if e, ok := s.entryRows.get(key); ok {
		return cloneEntry(e), nil
	}
	gen := s.entryRows.generation()
	var e repodb.Entry
	if err := s.getJSON(entryKey(repo, arch, filename), &e); err != nil {
		return repodb.Entry{}, fmt.Errorf("entry %s: %w", key, err)
	}
	s.entryRows.put(key, e, gen)
	return cloneEntry(e), nil
}

// cloneEntry copies the slices and maps of a cached entry, so no caller can
// change the cache through what it was given.
func cloneEntry(e repodb.Entry) repodb.Entry {
	e.PGPSig = slices.Clone(e.PGPSig)
	if e.Fields != nil {
		fields := make(map[string][]string, len(e.Fields))
		for k, v := range e.Fields {
			fields[k] = slices.Clone(v)
		}
		e.Fields = fields
	}
	return e
}

// EntryByCID returns the db entry (and its repo and arch) of the package whose
// sha256 is c (ErrNotFound).
func (s *Store) EntryByCID(c cid.Cid) (repo, arch string, e repodb.Entry, err error) {
	if err := checkCID(c); err != nil {
		return "", "", repodb.Entry{}, fmt.Errorf("entry by cid %s: %w", c, err)
	}
	var ref entryRef
	if err := s.getJSON(cidKey(c), &ref); err != nil {
		return "", "", repodb.Entry{}, fmt.Errorf("entry by cid %s: %w", c, err)
	}
	e, err = s.Entry(ref.Repo, ref.Arch, ref.Filename)
	if err != nil {
		return "", "", repodb.Entry{}, fmt.Errorf("entry by cid %s: %w", c, err)
	}
	// The entry may have been replaced by another build of the same file name.
	if sum, _ := verify.SHA256Of(c); e.SHA256 != hex.EncodeToString(sum) {
		return "", "", repodb.Entry{}, fmt.Errorf("entry by cid %s: %w", c, ErrNotFound)
	}
	return ref.Repo, ref.Arch, e, nil
}
