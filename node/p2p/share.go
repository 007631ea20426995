package p2p

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/ipfs/go-cid"

	"github.com/flocon/flocon/verify"
)

// Shared caches (Config.ShareDirs, e.g. /var/cache/pacman/pkg) are indexed
// in memory (CID → path), verified once (signature from the .sig beside the
// file, or the db entry), announced and served to peers straight from the
// directory. They are only ever opened read-only: never copied, moved or
// modified. A verdict is cached in the store under (path, size, mtime), and
// every serve re-hashes the file, so a file changed later is caught.

// sharedFile is one verified package of a shared directory.
type sharedFile struct {
	path string
	size int64
	sig  []byte // the detached signature that verified it
}

// shareIndex maps CIDs to shared files and back.
type shareIndex struct {
	mu     sync.RWMutex
	byCID  map[cid.Cid]sharedFile
	byPath map[string]cid.Cid
}

func newShareIndex() *shareIndex {
	return &shareIndex{byCID: make(map[cid.Cid]sharedFile), byPath: make(map[string]cid.Cid)}
}

func (x *shareIndex) get(c cid.Cid) (sharedFile, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	f, ok := x.byCID[c]
	return f, ok
}

func (x *shareIndex) put(c cid.Cid, f sharedFile) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if old, ok := x.byPath[f.path]; ok && old != c {
		delete(x.byCID, old)
	}
	x.byCID[c] = f
	x.byPath[f.path] = c
}

// removePath drops path and returns the CID it had.
func (x *shareIndex) removePath(path string) (cid.Cid, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	c, ok := x.byPath[path]
	if !ok {
		return cid.Undef, false
	}
	delete(x.byPath, path)
	if f, ok := x.byCID[c]; ok && f.path == path {
		delete(x.byCID, c)
	}
	return c, true
}

func (x *shareIndex) len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.byCID)
}

// shareRow is the cached verdict of one shared file.
type shareRow struct {
	CID     string `json:"cid"`
	Size    int64  `json:"size"`
	ModTime int64  `json:"modTime"` // unix nanoseconds
}

// isSharedPackage reports a package file name (not a .sig, not a .part).
func isSharedPackage(name string) bool {
	return strings.Contains(name, ".pkg.tar") && !strings.HasSuffix(name, ".sig") &&
		!strings.HasSuffix(name, ".part") && !strings.HasPrefix(name, ".")
}

// runShare indexes the shared directories, then follows their changes.
func (s *Host) runShare(ctx context.Context) error {
	dirs := s.cfg.ShareDirs
	if len(dirs) == 0 {
		return nil
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		// Out of inotify instances: share what is there now, not what comes.
		s.log.Warn("share dirs not watched, new files need a restart", "err", err)
		for _, d := range dirs {
			s.scanShared(ctx, d)
		}
		<-ctx.Done()
		return nil
	}
	defer w.Close()
	for _, d := range dirs {
		if err := w.Add(d); err != nil {
			s.log.Warn("share dir not watched", "dir", d, "err", err)
		}
	}
	for _, d := range dirs {
		s.scanShared(ctx, d)
	}
	return s.watchShared(ctx, w)
}

// scanShared indexes every package of dir.
func (s *Host) scanShared(ctx context.Context, dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		s.log.Warn("share dir unreadable", "dir", dir, "err", err)
		return
	}
	for _, e := range entries {
		if ctx.Err() != nil {
			return
		}
		if isSharedPackage(e.Name()) {
			s.indexShared(filepath.Join(dir, e.Name()))
		}
	}
}

// watchShared indexes files that appear (once they have been quiet for a
// second: a file being written is not verified half-way) and forgets files
// that go.
func (s *Host) watchShared(ctx context.Context, w *fsnotify.Watcher) error {
	const settle = time.Second
	pending := make(map[string]time.Time)
	t := time.NewTicker(settle / 4)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			s.shareEvent(ev, pending)
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			s.log.Warn("share watch", "err", err)
		case now := <-t.C:
			for path, at := range pending {
				if now.Sub(at) >= settle {
					delete(pending, path)
					s.indexShared(path)
				}
			}
		}
	}
}

func (s *Host) shareEvent(ev fsnotify.Event, pending map[string]time.Time) {
	path := strings.TrimSuffix(ev.Name, ".sig") // a new .sig re-checks its package
	if !isSharedPackage(filepath.Base(path)) {
		return
	}
	if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
		if path == ev.Name {
			s.unindexShared(path)
			delete(pending, path)
			return
		}
	}
	if ev.Has(fsnotify.Create) || ev.Has(fsnotify.Write) || ev.Has(fsnotify.Rename) || ev.Has(fsnotify.Remove) {
		pending[path] = time.Now()
	}
}

func (s *Host) unindexShared(path string) {
	if c, ok := s.shared.removePath(path); ok && !s.st.Has(c) {
		s.announced.remove(c)
	}
}

// dropShared forgets a shared file found corrupt or gone while serving it;
// the file itself is left alone.
func (s *Host) dropShared(c cid.Cid, path string) {
	s.unindexShared(path)
	_ = s.st.PutMeta(shareNamespace, path, nil)
	s.log.Warn("shared file dropped", "cid", c.String(), "path", path)
}

// indexShared verifies one shared file and, when it passes, offers it.
func (s *Host) indexShared(path string) {
	c, f, err := s.verifyShared(path)
	if err != nil {
		s.unindexShared(path)
		s.log.Info("shared file not offered", "path", path, "err", err)
		return
	}
	s.shared.put(c, f)
	s.announced.add(c)
}

// verifyShared checks path, reusing the cached verdict when its size and
// modification time did not change.
func (s *Host) verifyShared(path string) (cid.Cid, sharedFile, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return cid.Undef, sharedFile{}, err
	}
	if !fi.Mode().IsRegular() {
		return cid.Undef, sharedFile{}, fmt.Errorf("share %s: not a regular file", path)
	}
	sig, err := readSigBeside(path)
	if err != nil {
		return cid.Undef, sharedFile{}, err
	}
	f := sharedFile{path: path, size: fi.Size(), sig: sig}
	if c, ok := s.cachedShare(path, fi); ok {
		if f.sig == nil {
			f.sig, _ = s.entrySig(c)
		}
		return c, f, nil
	}
	c, sig, err := s.checkShared(path, fi.Size(), sig)
	if err != nil {
		return cid.Undef, sharedFile{}, err
	}
	f.sig = sig
	row, _ := json.Marshal(shareRow{CID: c.String(), Size: fi.Size(), ModTime: fi.ModTime().UnixNano()})
	_ = s.st.PutMeta(shareNamespace, path, row)
	return c, f, nil
}

func (s *Host) cachedShare(path string, fi os.FileInfo) (cid.Cid, bool) {
	b, err := s.st.Meta(shareNamespace, path)
	if err != nil {
		return cid.Undef, false
	}
	var row shareRow
	if json.Unmarshal(b, &row) != nil || row.Size != fi.Size() || row.ModTime != fi.ModTime().UnixNano() {
		return cid.Undef, false
	}
	c, err := cid.Decode(row.CID)
	return c, err == nil
}

// checkShared verifies a shared file. With a .sig beside it: one pass, the
// CID unknown, so the package's .PKGINFO must match its file name. Without:
// the file is hashed, and its db entry (found by CID) gives the signature.
func (s *Host) checkShared(path string, size int64, sig []byte) (cid.Cid, []byte, error) {
	exp := verify.Expect{CID: cid.Undef, Size: size, Filename: filepath.Base(path), Signature: sig}
	if sig == nil {
		c, err := hashFile(path)
		if err != nil {
			return cid.Undef, nil, err
		}
		if sig, err = s.entrySig(c); err != nil {
			return cid.Undef, nil, fmt.Errorf("share %s: no .sig and no signed db entry: %w", path, err)
		}
		exp.CID, exp.Signature = c, sig
	}
	res, err := s.verifyFile(path, exp)
	if err != nil {
		return cid.Undef, nil, fmt.Errorf("share %s: %w", path, err)
	}
	return res.CID, exp.Signature, nil
}

// entrySig is the signature of c from its db entry, or the one stored with
// the blob.
func (s *Host) entrySig(c cid.Cid) ([]byte, error) {
	if _, _, e, err := s.st.EntryByCID(c); err == nil && len(e.PGPSig) > 0 {
		return e.PGPSig, nil
	}
	sig, err := s.st.Sig(c)
	if err != nil {
		return nil, err
	}
	return sig, nil
}

func (s *Host) verifyFile(path string, exp verify.Expect) (verify.Result, error) {
	kr := s.cfg.Keyring
	if s.cfg.CurrentKeyring != nil {
		kr = s.cfg.CurrentKeyring()
	}
	v, err := verify.NewVerifier(kr, exp)
	if err != nil {
		return verify.Result{}, err
	}
	defer v.Close() // ends the .PKGINFO reader when the copy fails
	f, err := os.Open(path)
	if err != nil {
		return verify.Result{}, err
	}
	defer f.Close()
	if _, err := io.Copy(v, f); err != nil {
		return verify.Result{}, err
	}
	return v.Finish()
}

func hashFile(path string) (cid.Cid, error) {
	f, err := os.Open(path)
	if err != nil {
		return cid.Undef, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return cid.Undef, fmt.Errorf("hash %s: %w", path, err)
	}
	return verify.CIDFromSHA256(h.Sum(nil))
}

// readSigBeside reads path.sig; nil when there is none.
func readSigBeside(path string) ([]byte, error) {
	f, err := os.Open(path + ".sig")
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPeerSigSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxPeerSigSize {
		return nil, fmt.Errorf("%s.sig: over %d bytes", path, maxPeerSigSize)
	}
	return b, nil
}
