package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/ipfs/go-cid"
)

// Index key namespaces. repo, arch, db names and meta namespaces never hold
// a '/', so every prefix scan is unambiguous.
const (
	prefixBlob  = "blob/"  // blob/<cid> → BlobInfo
	prefixSig   = "sig/"   // sig/<cid> → detached signature
	prefixDB    = "db/"    // db/<repo>/<arch>/<name> → DBFile
	prefixEntry = "entry/" // entry/<repo>/<arch>/<filename> → repodb.Entry
	prefixCID   = "cid/"   // cid/<cid> → entryRef
	prefixMeta  = "meta/"  // meta/<ns>/<key> → bytes
	prefixFile  = "file/"  // file/<filename> → cid of the stored blob
)

func fileKey(filename string) []byte { return []byte(prefixFile + filename) }

func blobKey(c cid.Cid) []byte { return []byte(prefixBlob + c.String()) }
func sigKey(c cid.Cid) []byte  { return []byte(prefixSig + c.String()) }
func cidKey(c cid.Cid) []byte  { return []byte(prefixCID + c.String()) }

func dbKey(repo, arch, name string) []byte {
	return []byte(prefixDB + repo + "/" + arch + "/" + name)
}

func entryPrefix(repo, arch string) string { return prefixEntry + repo + "/" + arch + "/" }

func entryKey(repo, arch, filename string) []byte {
	return []byte(entryPrefix(repo, arch) + filename)
}

func metaKey(ns, key string) []byte { return []byte(prefixMeta + ns + "/" + key) }

// entryRef points from a CID to the db entry that names it.
type entryRef struct {
	Repo     string `json:"repo"`
	Arch     string `json:"arch"`
	Filename string `json:"filename"`
}

// openIndex opens badger with the small-value configuration of the tech
// notes: synced writes, no compression, values kept in the LSM tree.
func openIndex(dir string, log *slog.Logger) (*badger.DB, error) {
	opts := badger.DefaultOptions(dir).
		WithSyncWrites(true).
		WithLogger(badgerLogger{log}).
		WithLoggingLevel(badger.WARNING).
		WithCompression(options.None).
		WithValueThreshold(1 << 10).
		// Metadata only: a memtable's arena (1.3x its size, on the heap)
		// was the largest part of the idle heap at 4 MiB; 1 MiB holds a few
		// thousand rows, and larger writes (a new extra.db) go in batches.
		WithMemTableSize(1 << 20).
		WithNumMemtables(2).
		WithValueLogFileSize(64 << 20).
		// Warm lookups are answered by the store's row caches; badger's
		// caches would only serve misses and scans. Without compression or
		// encryption a block is read straight from the mapped table, and
		// the indexes of a few small tables stay in memory: no cache at
		// all saves the two ristretto caches' own tables (0.7 MiB of heap).
		WithBlockCacheSize(0).
		WithIndexCacheSize(0).
		WithNumCompactors(2).
		WithDetectConflicts(false)
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open index %s: %w", dir, err)
	}
	return db, nil
}

// badgerLogger sends badger's warnings and errors to slog (static message,
// badger's text as a field).
type badgerLogger struct{ log *slog.Logger }

func (l badgerLogger) Errorf(f string, a ...any) {
	l.log.Error("badger", "detail", strings.TrimSpace(fmt.Sprintf(f, a...)))
}

func (l badgerLogger) Warningf(f string, a ...any) {
	l.log.Warn("badger", "detail", strings.TrimSpace(fmt.Sprintf(f, a...)))
}
func (l badgerLogger) Infof(string, ...any)  {}
func (l badgerLogger) Debugf(string, ...any) {}

// getJSON reads key into v; ErrNotFound when absent.
func (s *Store) getJSON(key []byte, v any) error {
	b, err := s.get(key)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode %s: %w", key, err)
	}
	return nil
}

// withDB runs fn on the open index; Close waits for it, so no operation
// ever races badger's shutdown. fn must not call withDB again.
func (s *Store) withDB(fn func(db *badger.DB) error) error {
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed.Load() {
		return ErrClosed
	}
	return s.indexErr(fn(s.db))
}

// get reads key; ErrNotFound when absent, ErrClosed after Close.
func (s *Store) get(key []byte) ([]byte, error) {
	var out []byte
	err := s.withDB(func(db *badger.DB) error {
		return db.View(func(txn *badger.Txn) error {
			it, err := txn.Get(key)
			if err != nil {
				return err
			}
			out, err = it.ValueCopy(nil)
			return err
		})
	})
	return out, err
}

// indexErr maps badger errors to the store's sentinels.
func (s *Store) indexErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, badger.ErrKeyNotFound):
		return ErrNotFound
	case errors.Is(err, badger.ErrDBClosed), s.closed.Load():
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return err
}

// update runs fn in a read-write transaction.
func (s *Store) update(fn func(txn *badger.Txn) error) error {
	return s.withDB(func(db *badger.DB) error { return db.Update(fn) })
}

// scan calls fn for every key under prefix (values copied only when
// withValues); fn must not keep the slices.
func (s *Store) scan(prefix string, withValues bool, fn func(key, value []byte) error) error {
	return s.withDB(func(db *badger.DB) error { return scanTxn(db, prefix, withValues, fn) })
}

func scanTxn(db *badger.DB, prefix string, withValues bool, fn func(key, value []byte) error) error {
	return db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte(prefix)
		opts.PrefetchValues = withValues
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			var v []byte
			if withValues {
				var err error
				if v, err = item.ValueCopy(nil); err != nil {
					return err
				}
			}
			if err := fn(item.Key(), v); err != nil {
				return err
			}
		}
		return nil
	})
}

func setJSON(txn *badger.Txn, key []byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	return txn.Set(key, b)
}
