package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/flocon/flocon/store"
	"github.com/flocon/flocon/store/repodb"
)

// One HTTP behaviour: a stored blob and a download in flight are both
// answered by http.ServeContent (Range, multi-range, suffix, If-Range,
// HEAD, conditional requests), the download through a ReadSeeker that
// follows it as it grows. What differs is only when bytes become available.

// downloadContent is an io.ReadSeeker over a download in flight of known
// size: Seek moves freely (the size is the db's), Read blocks until the
// bytes are there and never returns the last byte before the download is
// proven and its identity matches pkg. The first read error is kept so the
// handler can tell a finished response from a cut one.
type downloadContent struct {
	g      *Gateway
	ctx    context.Context //nolint:containedctx // bound to one response; Close cancels it
	cancel context.CancelFunc
	p      *store.Pending
	size   int64
	pkg    string

	mu     sync.Mutex // ServeContent reads multi-range parts from its own goroutine
	pos    int64
	follow *followReader
	rd     *identityGate
	err    error
}

func (g *Gateway) newDownloadContent(ctx context.Context, p *store.Pending, size int64, pkg string) *downloadContent {
	ctx, cancel := context.WithCancel(ctx)
	return &downloadContent{g: g, ctx: ctx, cancel: cancel, p: p, size: size, pkg: pkg}
}

func (d *downloadContent) Seek(off int64, whence int) (int64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch whence {
	case io.SeekCurrent:
		off += d.pos
	case io.SeekEnd:
		off += d.size
	}
	if off < 0 {
		return 0, fmt.Errorf("seek %s to %d: %w", d.pkg, off, ErrBadRequest)
	}
	if off != d.pos {
		d.closeReaderLocked()
		d.pos = off
	}
	return off, nil
}

func (d *downloadContent) Read(b []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.pos >= d.size {
		return 0, io.EOF
	}
	d.openLocked()
	n, err := readSome(d.rd, b[:min(int64(len(b)), d.size-d.pos)])
	d.pos += int64(n)
	if err != nil && !errors.Is(err, io.EOF) && d.err == nil {
		d.err = err
	}
	return n, err
}

// sendTo sends up to n bytes from the position to the client as they
// arrive, from the download's file (sendfile, see store.Sender), with the
// guarantees of Read. Errors of the client are not read errors.
func (d *downloadContent) sendTo(h *heldHeader, n int64) (int64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	n = min(n, d.size-d.pos)
	if n <= 0 {
		return 0, io.EOF
	}
	d.openLocked()
	cw := &clientWriter{h: h}
	k, err := d.rd.sendTo(cw, n)
	d.pos += k
	if err != nil && !errors.Is(err, io.EOF) && cw.err == nil && d.err == nil {
		d.err = err
	}
	return k, err
}

// openLocked opens the reader at the position, if none is open.
func (d *downloadContent) openLocked() {
	if d.rd != nil {
		return
	}
	d.follow = d.g.followDownload(d.ctx, d.p, d.pos)
	d.rd = &identityGate{rd: d.follow, left: d.size - d.pos, check: func() error {
		return d.g.committedIdentity(d.ctx, d.p, d.pkg)
	}}
}

// readErr is the first error a read met (nil: every read succeeded).
func (d *downloadContent) readErr() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.err
}

func (d *downloadContent) closeReaderLocked() {
	if d.follow != nil {
		_ = d.follow.Close()
	}
	d.follow, d.rd = nil, nil
}

// Close ends any read still blocked (a multi-range part goroutine) and
// releases the download's reader.
func (d *downloadContent) Close() error {
	d.cancel()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closeReaderLocked()
	return nil
}

// heldHeader holds a 200/206 status until the first body byte: a download
// that fails before any byte still gets a real error status (a 404 lets
// pacman move on to its next server) instead of a cut 200. Other statuses
// (304, 412, 416) go out at once.
type heldHeader struct {
	http.ResponseWriter
	code  int  // held status, 0 when none
	wrote bool // the header went out
}

func (h *heldHeader) WriteHeader(code int) {
	if h.wrote || h.code != 0 {
		return
	}
	if code == http.StatusOK || code == http.StatusPartialContent {
		h.code = code
		return
	}
	h.wrote = true
	h.ResponseWriter.WriteHeader(code)
}

func (h *heldHeader) Write(b []byte) (int, error) {
	h.release()
	return h.ResponseWriter.Write(b)
}

// release sends the held header, if any.
func (h *heldHeader) release() {
	if h.wrote {
		return
	}
	h.wrote = true
	if h.code != 0 {
		h.ResponseWriter.WriteHeader(h.code)
	}
}

// ReadFrom is where http.ServeContent's copy of a download in flight
// lands (as an io.LimitedReader over the downloadContent): it is sent with
// sendTo, from the file. Anything else is copied.
func (h *heldHeader) ReadFrom(src io.Reader) (int64, error) {
	if lr, ok := src.(*io.LimitedReader); ok {
		if d, ok := lr.R.(*downloadContent); ok {
			n, err := d.sendTo(h, lr.N)
			lr.N -= n
			return n, err
		}
	}
	return io.Copy(struct{ io.Writer }{h}, src)
}

// Unwrap lets http.ResponseController reach Flush and the deadlines.
func (h *heldHeader) Unwrap() http.ResponseWriter { return h.ResponseWriter }

// clientWriter is what a download in flight is sent to: the held header
// goes out with the first byte, a span of the file goes on through the
// progressWriter's ReadFrom (sendfile), and a failure to write to the
// client is kept apart from the download's own errors.
type clientWriter struct {
	h   *heldHeader
	err error // the first write error
}

func (c *clientWriter) Write(b []byte) (int, error) {
	n, err := c.h.Write(b)
	if err != nil && c.err == nil {
		c.err = err
	}
	return n, err
}

func (c *clientWriter) ReadFrom(src io.Reader) (int64, error) {
	c.h.release()
	var n int64
	var err error
	if rf, ok := c.h.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(src)
	} else {
		n, err = io.Copy(struct{ io.Writer }{c.h}, src)
	}
	if err != nil && c.err == nil {
		c.err = err
	}
	return n, err
}

// failed reports whether writing to the client failed.
func (c *clientWriter) failed() bool { return c.err != nil }

// sendFrom sends up to n bytes of rd to w: a store reader sends from its
// file as the download grows; another reader (the committed blob, an
// *os.File) through w's ReadFrom. An early end is io.EOF.
func sendFrom(rd io.Reader, w *clientWriter, n int64) (int64, error) {
	if s, ok := rd.(store.Sender); ok {
		return s.SendTo(w, n)
	}
	k, err := io.Copy(w, io.LimitReader(rd, n))
	if err == nil && k < n {
		err = io.EOF
	}
	return k, err
}

// serveInflight answers r from the download p of a package of known size
// exactly as http.ServeContent answers from the stored blob.
func (g *Gateway) serveInflight(w http.ResponseWriter, r *http.Request, t *target, p *store.Pending,
	e repodb.Entry, size int64) {
	content := g.newDownloadContent(r.Context(), p, size, t.pkg)
	defer content.Close()
	pw := g.progress(w)
	pw.flush = true
	held := &heldHeader{ResponseWriter: pw}
	http.ServeContent(held, r, "", modTime(e, time.Time{}), content)
	err := content.readErr()
	switch {
	case err == nil:
		held.release()
		pw.finish()
	case r.Context().Err() != nil:
		// the client left
	case !held.wrote:
		g.fail(w, r, t, fmt.Errorf("download %s: %w", t.pkg, downloadErr(p, err)))
	default:
		g.log.Warn("download failed mid-response, cutting connection",
			"repo", t.repo.Name, "arch", t.arch, "file", t.file, "err", err)
		panic(http.ErrAbortHandler)
	}
}

// refuseTaintedResume answers 416 to a request that would complete a file
// from an offset when readers of c once got bytes that were then thrown
// away (a source proven wrong, a download that failed): the client's
// partial file may hold them, and the proven tail must never turn it into a
// complete wrong file. curl treats a 416 to a resume as the end of that
// attempt and pacman deletes its .part after it, so the next run starts
// from zero. It reports whether it answered.
func (g *Gateway) refuseTaintedResume(w http.ResponseWriter, r *http.Request, t *target, c cid.Cid,
	e repodb.Entry, size int64, modtime time.Time) bool {
	if size <= 0 || r.Header.Get("Range") == "" || !ifRangeHolds(r.Header.Get("If-Range"), etagOf(e), modtime) {
		return false
	}
	ranges, err := parseRanges(r.Header.Get("Range"), size)
	if err != nil || !resumes(ranges, size) {
		return false
	}
	discarded := g.cfg.Store.Discarded(c)
	if discarded == 0 {
		return false
	}
	why := refusal{"resume-refused", "part of this file was handed out from a source proven wrong; download it again from the start"}
	g.log.Warn("request refused", "status", http.StatusRequestedRangeNotSatisfiable, "reason", why.reason,
		"repo", t.repo.Name, "arch", t.arch, "file", t.file, "discardedUpTo", discarded)
	g.served.refused(why, http.StatusRequestedRangeNotSatisfiable, t.repo.Name+"/os/"+t.arch+"/"+t.file)
	w.Header().Set(RefusalHeader, why.reason)
	unsatisfiable(w, size, fmt.Sprintf("%d %s: %s (%s)", http.StatusRequestedRangeNotSatisfiable,
		http.StatusText(http.StatusRequestedRangeNotSatisfiable), why.message, why.reason))
	return true
}

// unsatisfiable answers 416 in the shape http.ServeContent gives it: the
// size in Content-Range, no validators.
func unsatisfiable(w http.ResponseWriter, size int64, msg string) {
	h := w.Header()
	h.Del("ETag")
	h.Del("Last-Modified")
	h.Set("Content-Range", "bytes */"+strconv.FormatInt(size, 10))
	http.Error(w, msg, http.StatusRequestedRangeNotSatisfiable)
}

// resumes reports whether a range set would complete a partial file: a
// range that starts past 0 and reaches the last byte.
func resumes(ranges []byteRange, size int64) bool {
	for _, rg := range ranges {
		if rg.start > 0 && rg.start+rg.length == size {
			return true
		}
	}
	return false
}
