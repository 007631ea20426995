package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/flocon/flocon/store"
	"github.com/flocon/flocon/store/repodb"
	"github.com/flocon/flocon/verify"
)

// entry finds the db entry of t.pkg and its CID. An unknown file refreshes
// its repo's database once (bounded by dbRecheckFloor) before it is a 404,
// so a package published since the last sync is found.
func (g *Gateway) entry(ctx context.Context, t *target) (repodb.Entry, cid.Cid, error) {
	e, err := g.cfg.Store.Entry(t.repo.Name, t.arch, t.pkg)
	dbName := t.repo.Name + ".db"
	if errors.Is(err, store.ErrNotFound) &&
		time.Since(g.dbState(dbKey(t.repo.Name, t.arch, dbName)).attempted) >= dbRecheckFloor {
		if _, rerr := g.refreshDB(ctx, t.repo.Name, t.arch, dbName, 0); rerr != nil {
			g.log.Debug("db refresh for unknown package failed", "repo", t.repo.Name, "arch", t.arch, "err", rerr)
		}
		e, err = g.cfg.Store.Entry(t.repo.Name, t.arch, t.pkg)
	}
	if err != nil {
		return repodb.Entry{}, cid.Undef, fmt.Errorf("entry %s/%s/%s: %w", t.repo.Name, t.arch, t.pkg, err)
	}
	c, err := verify.CIDFromHex(e.SHA256)
	if err != nil {
		return repodb.Entry{}, cid.Undef, fmt.Errorf("entry %s/%s/%s: %w: %w", t.repo.Name, t.arch, t.pkg, ErrUpstream, err)
	}
	return e, c, nil
}

// servePkg serves a package: from the store when verified and present, else
// from the shared download while it grows. A HEAD never starts a download:
// the database entry has everything it answers.
func (g *Gateway) servePkg(w http.ResponseWriter, r *http.Request, t *target) {
	e, c, err := g.entry(r.Context(), t)
	if err != nil {
		g.fail(w, r, t, err)
		return
	}
	if g.serveStored(w, r, t, c, e) {
		return
	}
	if r.Method == http.MethodHead {
		g.serveHeadFromEntry(w, r, t, c, e)
		return
	}
	g.serveDownload(w, r, t, c, e)
}

func etagOf(e repodb.Entry) string { return `"` + e.SHA256 + `"` }

// modTime is a package's Last-Modified: its build date, else when its blob
// was added (zero, so no header, while that is not known yet).
func modTime(e repodb.Entry, added time.Time) time.Time {
	if e.BuildDate > 0 {
		return time.Unix(e.BuildDate, 0).UTC()
	}
	return added
}

func setPkgHeaders(h http.Header, e repodb.Entry) {
	h.Set("Content-Type", "application/octet-stream")
	h.Set("ETag", etagOf(e))
	h.Set("Accept-Ranges", "bytes")
}

// refusedRange answers, before http.ServeContent, the Range requests the
// gateway answers differently from it (see normalizeRange) and resumes it
// refuses (see refuseTaintedResume); it reports whether it answered.
func (g *Gateway) refusedRange(w http.ResponseWriter, r *http.Request, t *target, c cid.Cid,
	e repodb.Entry, size int64, modtime time.Time) bool {
	if !normalizeRange(r) {
		unsatisfiable(w, size, "invalid range: a zero-length suffix is unsatisfiable")
		return true
	}
	return g.refuseTaintedResume(w, r, t, c, e, size, modtime)
}

// serveStored serves the verified blob c with http.ServeContent (Range,
// HEAD, conditional requests, sendfile); false when it is not stored.
// A blob whose proven identity is not the requested name is refused.
func (g *Gateway) serveStored(w http.ResponseWriter, r *http.Request, t *target, c cid.Cid, e repodb.Entry) bool {
	f, info, err := g.cfg.Store.OpenKept(c)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			g.log.Warn("stored blob unreadable", "cid", c, "err", err)
		}
		return false
	}
	defer f.Close() // kept open for the blob's next request
	if err := checkIdentity(info, t.pkg); err != nil {
		g.fail(w, r, t, err)
		return true
	}
	setOutcome(w, outcomeHit)
	setPkgHeaders(w.Header(), e)
	modtime := modTime(e, info.Added)
	if g.refusedRange(w, r, t, c, e, info.Size, modtime) {
		return true
	}
	pw := g.progress(w)
	pw.cork = corkerOf(r.Context())
	defer pw.finish()
	http.ServeContent(pw, r, "", modtime, newBlobFile(f, info.Size))
	return true
}

// entryContent is a package known only from its db entry: it has a size
// and no bytes (a HEAD never reads).
type entryContent struct{ size int64 }

func (e entryContent) Seek(off int64, whence int) (int64, error) {
	if whence == io.SeekEnd {
		off += e.size
	}
	return off, nil
}

func (e entryContent) Read([]byte) (int, error) {
	return 0, fmt.Errorf("read a package not downloaded: %w", ErrNotFound)
}

// serveHeadFromEntry answers a HEAD of a package that is not stored from its
// database entry (size, sha256 as ETag, build date), exactly as a GET's
// headers would be, without downloading anything.
func (g *Gateway) serveHeadFromEntry(w http.ResponseWriter, r *http.Request, t *target, c cid.Cid, e repodb.Entry) {
	setOutcome(w, outcomeMiss)
	setPkgHeaders(w.Header(), e)
	modtime := modTime(e, time.Time{})
	if e.CSize <= 0 { // size unknown: what can be said without the bytes
		if !modtime.IsZero() {
			w.Header().Set("Last-Modified", modtime.Format(http.TimeFormat))
		}
		w.WriteHeader(http.StatusOK)
		return
	}
	if g.refusedRange(w, r, t, c, e, e.CSize, modtime) {
		return
	}
	http.ServeContent(w, r, "", modtime, entryContent{size: e.CSize})
}

// serveDownload streams a package from its download in flight, starting it
// when none runs.
func (g *Gateway) serveDownload(w http.ResponseWriter, r *http.Request, t *target, c cid.Cid, e repodb.Entry) {
	select {
	case g.streams <- struct{}{}:
		defer func() { <-g.streams }()
	default:
		g.fail(w, r, t, fmt.Errorf("download %s: %w", t.pkg, ErrBusy))
		return
	}
	outcome := outcomeMiss
	if g.cfg.Store.Inflight(c) != nil {
		outcome = outcomeJoin
	}
	p, err := g.cfg.Fetcher.Fetch(r.Context(), t.repo.Name, t.arch, verify.Expect{
		CID: c, Size: expectedSize(e), Filename: t.pkg, Signature: e.PGPSig, Policy: t.repo.SigPolicy,
	})
	if err != nil {
		g.fail(w, r, t, fmt.Errorf("fetch %s: %w", t.pkg, err))
		return
	}
	if p == nil { // no download needed: the blob was stored meanwhile
		if !g.serveStored(w, r, t, c, e) {
			g.fail(w, r, t, fmt.Errorf("fetch %s: %w", t.pkg, ErrNotFound))
		}
		return
	}
	setOutcome(w, outcome)
	if e.CSize <= 0 { // only the finished blob knows its size
		g.serveAfterDownload(w, r, t, p, c, e)
		return
	}
	setPkgHeaders(w.Header(), e)
	if g.refusedRange(w, r, t, c, e, e.CSize, modTime(e, time.Time{})) {
		return
	}
	g.serveInflight(w, r, t, p, e, e.CSize)
}

// commitWait bounds how long a reader that failed waits to learn whether
// its download committed all the same.
const commitWait = 10 * time.Second

// followReader reads a download from an offset. When the download's reader
// fails but the download committed (its temp file became the blob while the
// reader was opening it), it goes on from the verified blob at the same offset
// — unless the reader failed because the bytes it gave were discarded.
type followReader struct {
	rd       io.ReadCloser
	off      int64
	fromBlob bool
	reopen   func(off int64) (io.ReadCloser, bool)
}

func (g *Gateway) followDownload(ctx context.Context, p *store.Pending, off int64) *followReader {
	return &followReader{rd: p.NewReader(ctx, off), off: off, reopen: func(off int64) (io.ReadCloser, bool) {
		return g.committedBlob(ctx, p, off)
	}}
}

func (f *followReader) Read(b []byte) (int, error) {
	n, err := f.rd.Read(b)
	f.off += int64(n)
	if !f.fallsBack(err) {
		return n, err
	}
	if n > 0 {
		return n, nil // the error comes back on the next read
	}
	if !f.toBlob() {
		return 0, err
	}
	return f.Read(b)
}

// sendTo is Read for a send: the same fall back to the committed blob when
// the download's reader fails (not when the client does).
func (f *followReader) sendTo(w *clientWriter, n int64) (int64, error) {
	k, err := sendFrom(f.rd, w, n)
	f.off += k
	if !f.fallsBack(err) || w.failed() || !f.toBlob() {
		return k, err
	}
	more, err := f.sendTo(w, n-k)
	return k + more, err
}

// fallsBack reports whether err, from the download's reader, is answered
// from the committed blob.
func (f *followReader) fallsBack(err error) bool {
	switch {
	case errors.Is(err, store.ErrTruncated):
		// The bytes this client already has were thrown away (a lying
		// source): the committed blob's tail must not be joined to them.
		return false
	case err == nil, errors.Is(err, io.EOF), f.fromBlob:
		return false
	}
	return true
}

// toBlob goes on from the committed blob at the reader's offset; false
// when there is none.
func (f *followReader) toBlob() bool {
	blob, ok := f.reopen(f.off)
	if !ok {
		return false
	}
	f.rd.Close()
	f.rd, f.fromBlob = blob, true
	return true
}

func (f *followReader) Close() error { return f.rd.Close() }

// committedBlob waits (bounded) for p to finish and opens its blob at off;
// false when it aborted or is still running.
func (g *Gateway) committedBlob(ctx context.Context, p *store.Pending, off int64) (io.ReadCloser, bool) {
	timer := time.NewTimer(commitWait)
	defer timer.Stop()
	select {
	case <-p.Done():
	case <-ctx.Done():
		return nil, false
	case <-timer.C:
		return nil, false
	}
	if p.Err() != nil {
		return nil, false
	}
	f, _, err := g.cfg.Store.OpenBlob(p.CID())
	if err != nil {
		return nil, false
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		f.Close()
		return nil, false
	}
	g.log.Debug("download reader failed, reading the committed blob", "cid", p.CID(), "offset", off)
	return f, true
}

// serveAfterDownload waits for p to finish and serves the stored blob.
func (g *Gateway) serveAfterDownload(w http.ResponseWriter, r *http.Request, t *target, p *store.Pending,
	c cid.Cid, e repodb.Entry) {
	select {
	case <-p.Done():
	case <-r.Context().Done():
		return
	}
	if err := p.Err(); err != nil {
		g.fail(w, r, t, fmt.Errorf("download %s: %w", t.pkg, err))
		return
	}
	if !g.serveStored(w, r, t, c, e) {
		g.fail(w, r, t, fmt.Errorf("download %s: %w: committed blob missing", t.pkg, ErrNotFound))
	}
}

// readSome reads until it gets at least one byte or an error.
func readSome(r io.Reader, p []byte) (int, error) {
	for {
		n, err := r.Read(p)
		if n > 0 || err != nil {
			return n, err
		}
	}
}

// downloadErr is why a download gave no byte: its abort error when it has
// one, else what the reader said (an early EOF is a size mismatch).
func downloadErr(p *store.Pending, err error) error {
	select {
	case <-p.Done():
		if perr := p.Err(); perr != nil {
			return perr
		}
	default:
	}
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: %w", verify.ErrSizeMismatch, io.ErrUnexpectedEOF)
	}
	return err
}
