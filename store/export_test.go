package store

import (
	"os"
	"sync/atomic"
	"time"
)

// Crash closes the index the way a killed process would leave things:
// in-flight temp files stay, last accesses are not written.
func (s *Store) Crash() error {
	s.mu.Lock()
	for _, p := range s.pending {
		p.mu.Lock()
		if p.f != nil {
			_ = p.f.Close()
		}
		p.mu.Unlock()
	}
	s.mu.Unlock()
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	s.closed.Store(true)
	return s.db.Close()
}

// FailTemp makes the temp files of the next downloads fail with err: writes
// reaching past writeLimit bytes, and fsync when failSync. A nil err restores
// real files.
func (s *Store) FailTemp(err error, writeLimit int64, failSync bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		s.wrapTemp = nil
		return
	}
	s.wrapTemp = func(f *os.File) tempFile {
		return &failingFile{File: f, err: err, limit: writeLimit, failSync: failSync}
	}
}

type failingFile struct {
	*os.File
	err      error
	limit    int64
	failSync bool
}

func (f *failingFile) WriteAt(b []byte, off int64) (int, error) {
	if off+int64(len(b)) <= f.limit {
		return f.File.WriteAt(b, off)
	}
	n := max(f.limit-off, 0)
	if n > 0 {
		if _, err := f.File.WriteAt(b[:n], off); err != nil {
			return 0, err
		}
	}
	return int(n), f.err
}

func (f *failingFile) Sync() error {
	if f.failSync {
		return f.err
	}
	return f.File.Sync()
}

// HoldSync makes the fsync of the next downloads' temp files wait until
// release is closed (nil: real files).
func (s *Store) HoldSync(release <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if release == nil {
		s.wrapTemp = nil
		return
	}
	s.wrapTemp = func(f *os.File) tempFile { return &heldFile{File: f, release: release} }
}

type heldFile struct {
	*os.File
	release <-chan struct{}
}

func (f *heldFile) Sync() error {
	<-f.release
	return f.File.Sync()
}

// CountTempChmods counts the chmods of the next downloads' temp files in n
// (nil: real files).
func (s *Store) CountTempChmods(n *atomic.Int32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n == nil {
		s.wrapTemp = nil
		return
	}
	s.wrapTemp = func(f *os.File) tempFile { return &chmodCounter{File: f, n: n} }
}

type chmodCounter struct {
	*os.File
	n *atomic.Int32
}

func (f *chmodCounter) Chmod(mode os.FileMode) error {
	f.n.Add(1)
	return f.File.Chmod(mode)
}

// GateSyncs makes the fsync of the next downloads' temp files count
// themselves in running (the most at once in peak) and wait until release
// is closed.
func (s *Store) GateSyncs(running, peak *atomic.Int32, release <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.wrapTemp = func(f *os.File) tempFile {
		return &gatedFile{File: f, running: running, peak: peak, release: release}
	}
}

type gatedFile struct {
	*os.File
	running, peak *atomic.Int32
	release       <-chan struct{}
}

func (f *gatedFile) Sync() error {
	n := f.running.Add(1)
	for p := f.peak.Load(); n > p && !f.peak.CompareAndSwap(p, n); p = f.peak.Load() {
	}
	<-f.release
	f.running.Add(-1)
	return f.File.Sync()
}

// SyncParallel is syncParallel.
const SyncParallel = syncParallel

// SetClock replaces the store's clock.
func (s *Store) SetClock(now func() time.Time) { s.clock.Store(&now) }

// QueuedCommits is how many commits wait for the batch being written.
func (s *Store) QueuedCommits() int {
	s.commits.mu.Lock()
	defer s.commits.mu.Unlock()
	return len(s.commits.queue)
}

// SetCommitGather changes how long and up to how many bytes of held
// bodies a batch gathers commits (0: no gathering, batches as they come).
func (s *Store) SetCommitGather(wait time.Duration, bytes int64) {
	s.commits.mu.Lock()
	defer s.commits.mu.Unlock()
	s.commits.gatherWait, s.commits.gatherMax = wait, bytes
}

// CommitBatches is how many group-commit batches were written.
func (s *Store) CommitBatches() int {
	s.commits.mu.Lock()
	defer s.commits.mu.Unlock()
	return s.commits.batches
}

// AfterFileTruncate runs f inside every Truncate, right after the temp file
// was cut.
func (s *Store) AfterFileTruncate(f func()) { s.afterFileTruncate = f }

// KeptFDsMax is how many blob descriptors the store keeps open.
var KeptFDsMax = keptFDsMax
