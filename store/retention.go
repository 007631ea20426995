package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/ipfs/go-cid"

	"github.com/flocon/flocon/verify"
)

// Intervals of the background work done by Run.
const (
	pruneInterval = time.Hour
	// A prune scans every blob row: after new blobs or dbs it waits for this
	// much quiet (an upgrade commits many packages in a row), and at most
	// pruneMaxDelay after the first request.
	pruneQuiet     = 2 * time.Second
	pruneMaxDelay  = 30 * time.Second
	accessInterval = time.Minute
	accessChunk    = 128 // rows per transaction when flushing last accesses (fits a 1 MiB memtable)

	// versionGrace spares a blob used this recently from version retention:
	// an old version someone just downloaded (a downgrade) is still being
	// served from its blob.
	versionGrace = 10 * time.Minute
)

// Stats is what `flocon status` shows about the store.
type Stats struct {
	Blobs    int   `json:"blobs"`    // verified package blobs
	Bytes    int64 `json:"bytes"`    // their total size
	Inflight int   `json:"inflight"` // downloads in progress
	DBFiles  int   `json:"dbFiles"`  // stored repo database files (db, files, sig)
	DBBytes  int64 `json:"dbBytes"`  // their total size
	Entries  int   `json:"entries"`  // package entries of the current databases
}

// Stats counts blobs, bytes, in-flight downloads and db files.
func (s *Store) Stats() Stats {
	var st Stats
	s.mu.Lock()
	st.Inflight = len(s.pending)
	s.mu.Unlock()
	_ = s.scan(prefixBlob, true, func(_, value []byte) error {
		var info BlobInfo
		if decodeJSON(value, &info) == nil {
			st.Blobs++
			st.Bytes += info.Size
		}
		return nil
	})
	_ = s.scan(prefixDB, true, func(_, value []byte) error {
		var f DBFile
		if decodeJSON(value, &f) == nil {
			st.DBFiles++
			st.DBBytes += f.Size
		}
		return nil
	})
	_ = s.scan(prefixEntry, false, func(_, _ []byte) error {
		st.Entries++
		return nil
	})
	return st
}

// Run prunes hourly and once new dbs or blobs stop arriving (debounced), and
// writes last accesses every minute, until ctx ends.
func (s *Store) Run(ctx context.Context) error {
	prune := time.NewTicker(pruneInterval)
	defer prune.Stop()
	access := time.NewTicker(accessInterval)
	defer access.Stop()
	quiet := time.NewTimer(pruneQuiet)
	quiet.Stop()
	defer quiet.Stop()
	var firstReq time.Time // of the requests not yet served; zero: none
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-access.C:
			if err := s.flushAccess(); err != nil && !errors.Is(err, ErrClosed) {
				s.log.Warn("cannot write last accesses", "err", err)
			}
		case <-prune.C:
			s.pruneAndLog()
			s.gcIndex()
		case <-s.pruneReq:
			if firstReq.IsZero() {
				firstReq = time.Now()
			}
			quiet.Reset(min(pruneQuiet, time.Until(firstReq.Add(pruneMaxDelay))))
		case <-quiet.C:
			firstReq = time.Time{}
			s.pruneAndLog()
		}
	}
}

func (s *Store) pruneAndLog() {
	removed, freed, err := s.Prune()
	switch {
	case err != nil && !errors.Is(err, ErrClosed):
		s.log.Warn("prune failed", "err", err)
	case removed > 0:
		s.log.Info("pruned blobs", "removed", removed, "freedBytes", freed)
	}
}

// gcIndex reclaims value-log space; with small values there is little.
func (s *Store) gcIndex() {
	_ = s.withDB(func(db *badger.DB) error {
		for db.RunValueLogGC(0.5) == nil {
		}
		return nil
	})
}

// requestPrune asks Run for a prune soon (requests collapse).
func (s *Store) requestPrune() {
	if s.cfg.KeepVersions == 0 && s.cfg.MaxBytes == 0 {
		return
	}
	select {
	case s.pruneReq <- struct{}{}:
	default:
	}
}

// flushAccess writes the last accesses kept in memory to the blob rows.
func (s *Store) flushAccess() error {
	s.accessMu.Lock()
	pending := s.access
	s.access = make(map[cid.Cid]time.Time)
	s.accessMu.Unlock()
	keys := slices.Collect(maps.Keys(pending))
	for chunk := range slices.Chunk(keys, accessChunk) {
		s.blobRows.invalidate(chunk...)
		err := s.update(func(txn *badger.Txn) error {
			for _, c := range chunk {
				if err := touchRow(txn, c, pending[c]); err != nil {
					return err
				}
			}
			return nil
		})
		s.blobRows.invalidate(chunk...)
		if err != nil {
			s.restoreAccess(pending)
			return fmt.Errorf("flush last access: %w", err)
		}
	}
	return nil
}

func touchRow(txn *badger.Txn, c cid.Cid, t time.Time) error {
	item, err := txn.Get(blobKey(c))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil // removed since
	}
	if err != nil {
		return err
	}
	var info BlobInfo
	if err := item.Value(func(v []byte) error { return decodeJSON(v, &info) }); err != nil {
		return err
	}
	if !t.After(info.LastAccess) {
		return nil
	}
	info.LastAccess = t
	return setJSON(txn, blobKey(c), info)
}

// restoreAccess puts back accesses that could not be written.
func (s *Store) restoreAccess(m map[cid.Cid]time.Time) {
	s.accessMu.Lock()
	defer s.accessMu.Unlock()
	for c, t := range m {
		if t.After(s.access[c]) {
			s.access[c] = t
		}
	}
}

// Prune applies retention: per (name, arch) only the Config.KeepVersions
// newest versions (vercmp order) stay, plus anything the current databases
// list; then, over Config.MaxBytes, the least recently accessed blobs go,
// those not listed by a database first.
func (s *Store) Prune() (removed int, freed int64, err error) {
	if s.closed.Load() {
		return 0, 0, ErrClosed
	}
	s.pruneMu.Lock()
	defer s.pruneMu.Unlock()
	if err := s.flushAccess(); err != nil {
		return 0, 0, fmt.Errorf("prune: %w", err)
	}
	blobs, err := s.allBlobs()
	if err != nil {
		return 0, 0, fmt.Errorf("prune: %w", err)
	}
	referenced := make(map[string]bool)
	err = s.scan(prefixCID, false, func(key, _ []byte) error {
		referenced[string(key[len(prefixCID):])] = true
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("prune: %w", err)
	}
	recent := s.now().Add(-versionGrace)
	victims := oldVersions(blobs, referenced, s.cfg.KeepVersions, recent)
	victims = append(victims, overQuota(blobs, victims, referenced, s.cfg.MaxBytes)...)
	for _, v := range victims {
		if err := s.RemoveBlob(v.CID); err != nil {
			return removed, freed, fmt.Errorf("prune: %w", err)
		}
		removed++
		freed += v.Size
	}
	return removed, freed, nil
}

// oldVersions returns the blobs beyond the keep newest versions of their
// (name, arch) that no current database lists and nobody used after recent.
// Blobs whose file name is not a package name are left to the quota.
func oldVersions(blobs []BlobInfo, referenced map[string]bool, keep int, recent time.Time) []BlobInfo {
	if keep <= 0 {
		return nil
	}
	type group struct{ name, arch string }
	type versioned struct {
		BlobInfo
		version string
	}
	groups := make(map[group][]versioned)
	for _, b := range blobs {
		pf, err := verify.ParsePkgFilename(b.Filename)
		if err != nil {
			continue
		}
		g := group{pf.Name, pf.Arch}
		groups[g] = append(groups[g], versioned{b, pf.Version})
	}
	var victims []BlobInfo
	for _, vs := range groups {
		slices.SortStableFunc(vs, func(a, b versioned) int { return verify.Vercmp(b.version, a.version) })
		distinct := 0
		for i, v := range vs {
			if i == 0 || verify.Vercmp(v.version, vs[i-1].version) != 0 {
				distinct++
			}
			if distinct > keep && !referenced[v.CID.String()] && !v.LastAccess.After(recent) {
				victims = append(victims, v.BlobInfo)
			}
		}
	}
	return victims
}

// overQuota returns, least recently accessed first, the blobs to drop so
// that the rest fits in maxBytes: unlisted blobs first, then listed ones.
func overQuota(blobs, already []BlobInfo, referenced map[string]bool, maxBytes int64) []BlobInfo {
	if maxBytes <= 0 {
		return nil
	}
	gone := make(map[cid.Cid]bool, len(already))
	for _, v := range already {
		gone[v.CID] = true
	}
	var rest []BlobInfo
	var total int64
	for _, b := range blobs {
		if !gone[b.CID] {
			rest = append(rest, b)
			total += b.Size
		}
	}
	slices.SortFunc(rest, func(a, b BlobInfo) int {
		ra, rb := referenced[a.CID.String()], referenced[b.CID.String()]
		if ra != rb {
			if ra {
				return 1
			}
			return -1
		}
		return cmp.Or(a.LastAccess.Compare(b.LastAccess), a.Added.Compare(b.Added))
	})
	var victims []BlobInfo
	for _, b := range rest {
		if total <= maxBytes {
			break
		}
		victims = append(victims, b)
		total -= b.Size
	}
	return victims
}
