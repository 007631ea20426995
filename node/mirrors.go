package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/flocon/flocon/store"
	"github.com/flocon/flocon/verify"
)

// Mirrors is the upstream configuration in pacman's own form: URL templates
// with $repo and $arch, tried in order, plus per-repo lists for custom
// repositories with other layouts.
type Mirrors struct {
	Default []string            // e.g. https://geo.mirror.pkgbuild.com/$repo/os/$arch
	PerRepo map[string][]string // repo → templates, replacing Default for that repo
}

// BuiltinMirrors are a few well-known Arch mirrors, used when neither a
// mirrorlist nor Mirrors.Default is configured, so that zero config works.
var BuiltinMirrors = []string{
	"https://geo.mirror.pkgbuild.com/$repo/os/$arch",
	"https://mirror.rackspace.com/archlinux/$repo/os/$arch",
	"https://mirrors.kernel.org/archlinux/$repo/os/$arch",
}

// templates returns the URL templates of repo: its own list when it has
// one, else the default list.
func (m Mirrors) templates(repo string) []string {
	if t, ok := m.PerRepo[repo]; ok && len(t) > 0 {
		return t
	}
	return m.Default
}

// URLs expands the templates of repo for arch into base URLs (no trailing
// slash), in the order they are tried. repo and arch are path-escaped, so
// they can never add path segments.
func (m Mirrors) URLs(repo, arch string) []string {
	tpls := m.templates(repo)
	out := make([]string, 0, len(tpls))
	r := strings.NewReplacer("$repo", url.PathEscape(repo), "$arch", url.PathEscape(arch))
	for _, t := range tpls {
		out = append(out, strings.TrimRight(r.Replace(t), "/"))
	}
	return out
}

// validate checks that every template is an absolute http(s) URL.
func (m Mirrors) validate() error {
	check := func(tpl string) error {
		u, err := url.Parse(tpl)
		if err != nil {
			return fmt.Errorf("mirror %q: %w", tpl, err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("mirror %q: %w", tpl, ErrBadMirror)
		}
		return nil
	}
	for _, t := range m.Default {
		if err := check(t); err != nil {
			return err
		}
	}
	for repo, ts := range m.PerRepo {
		for _, t := range ts {
			if err := check(t); err != nil {
				return fmt.Errorf("repo %s: %w", repo, err)
			}
		}
	}
	return nil
}

// fileURL joins a mirror base URL and one file name, escaped so that the
// name stays one path segment.
func fileURL(base, name string) string {
	return base + "/" + url.PathEscape(name)
}

// mirrorSource fetches a package file from one mirror (base URL expanded).
type mirrorSource struct {
	client *http.Client
	base   string
	file   string
}

func (m mirrorSource) String() string { return m.base }

// Peer is "": a mirror is never banned.
func (m mirrorSource) Peer() peer.ID { return "" }

// Fetch GETs the file from offset off (Range: bytes=off-). A 206 must start
// at off; a 200 to a ranged request is the whole file, whose first off bytes
// are skipped (they are the ones already written, if the mirror is honest;
// the digest says so at the end).
func (m mirrorSource) Fetch(ctx context.Context, _ cid.Cid, off int64, w io.Writer) (int64, error) {
	k, _, err := m.FetchSpan(ctx, off, -1, w)
	return k, err
}

// FetchSpan GETs at most n bytes of the file from offset off (n < 0: to
// the end) and reports whether they reached the file's end (last); nil
// only when the span asked for was delivered. A mirror that ignores Range
// answers 200 with the whole file: its bytes are taken to the end.
func (m mirrorSource) FetchSpan(ctx context.Context, off, n int64, w io.Writer) (k int64, last bool, err error) {
	// abort ends the body's read when the writer fails (copyBig reads ahead)
	ctx, abort := context.WithCancel(ctx)
	defer abort()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fileURL(m.base, m.file), nil)
	if err != nil {
		return 0, false, err
	}
	switch {
	case n >= 0:
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, off+n-1))
	case off > 0:
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", off))
	}
	resp, err := m.client.Do(req)
	if err != nil {
		return 0, false, err
	}
	defer resp.Body.Close()
	last = true
	switch {
	case resp.StatusCode == http.StatusOK && off > 0:
		if err := skip(resp.Body, off, w); err != nil {
			return 0, false, fmt.Errorf("skip %d bytes of a 200 to a range request: %w", off, err)
		}
	case resp.StatusCode == http.StatusOK:
	case resp.StatusCode == http.StatusPartialContent:
		// A mirror may send more than the span asked for: the bytes are
		// the file's all the same (the digest says so at the end).
		start, end, size, err := contentRange(resp.Header.Get("Content-Range"))
		if err != nil || start != off {
			return 0, false, fmt.Errorf("content-range %q for offset %d: %w", resp.Header.Get("Content-Range"), off, errBadRange)
		}
		last = n < 0 || end+1 == size || (size < 0 && end+1-start < n) // "*": a short span is the end
	default:
		return 0, false, statusError(resp)
	}
	if resp.ContentLength >= 0 && resp.ContentLength <= smallBody {
		k, err = copySmall(w, resp.Body)
	} else {
		k, err = copyBig(w, resp.Body, abort)
	}
	return k, last, err
}

// copyBufs holds the buffers of copyBig.
var copyBufs = sync.Pool{New: func() any { return new([1 << 20]byte) }}

// smallBody is the largest body copied with a small buffer: a 1 MiB buffer
// per download in flight was the daemon's largest live allocation during a
// burst of small packages (two pooled, one per P: 2 MiB of a 11 MiB live
// heap, scripts/bench.sh row 5a), for bodies of tens of KiB.
const smallBody = 64 << 10

// smallBufs holds the buffers of copySmall.
var smallBufs = sync.Pool{New: func() any { return new([smallBody]byte) }}

// copySmall copies a body of at most smallBody bytes in one or two reads.
func copySmall(w io.Writer, r io.Reader) (int64, error) {
	buf := smallBufs.Get().(*[smallBody]byte)
	defer smallBufs.Put(buf)
	return io.CopyBuffer(struct{ io.Writer }{w}, struct{ io.Reader }{r}, buf[:])
}

// copyBig copies with two 1 MiB buffers, one read from the upstream while
// the other is written (copyAhead): fewer writes to the temp file and fewer
// wake-ups of the readers that follow it than io.Copy's 32 KiB, and the
// upstream read beside the write and hash instead of before them. abort
// must unblock a read of r.
func copyBig(w io.Writer, r io.Reader, abort func()) (int64, error) {
	a := copyBufs.Get().(*[1 << 20]byte)
	defer copyBufs.Put(a)
	b := copyBufs.Get().(*[1 << 20]byte)
	defer copyBufs.Put(b)
	return copyAhead(w, r, a[:], b[:], abort)
}

// skip discards off bytes of r, reporting them as progress to w's watchdog
// (a long skip is not a stall).
func skip(r io.Reader, off int64, w io.Writer) error {
	var dst io.Writer = io.Discard
	if m, ok := w.(meter); ok {
		dst = meter{w: io.Discard, wd: m.wd}
	}
	_, err := io.CopyN(dst, r, off)
	return err
}

// contentRangeStart reads the first byte position of "bytes FIRST-LAST/SIZE"
// (SIZE may be "*"), refusing anything else: signs, spaces, a range that
// ends before it starts or past the size.
func contentRangeStart(h string) (int64, error) {
	start, _, _, err := contentRange(h)
	return start, err
}

// contentRange reads "bytes FIRST-LAST/SIZE" as contentRangeStart does;
// size is -1 for "*".
func contentRange(h string) (start, end, size int64, err error) {
	spec, ok := strings.CutPrefix(h, "bytes ")
	if !ok {
		return 0, 0, 0, errBadRange
	}
	rng, total, ok := strings.Cut(spec, "/")
	if !ok {
		return 0, 0, 0, errBadRange
	}
	first, last, ok := strings.Cut(rng, "-")
	if !ok {
		return 0, 0, 0, errBadRange
	}
	start, err1 := parseDigits(first)
	end, err2 := parseDigits(last)
	if err1 != nil || err2 != nil || end < start {
		return 0, 0, 0, errBadRange
	}
	size = -1
	if total != "*" {
		if size, err = parseDigits(total); err != nil || end >= size {
			return 0, 0, 0, errBadRange
		}
	}
	return start, end, size, nil
}

// parseDigits reads a non-negative decimal number written with digits only.
func parseDigits(s string) (int64, error) {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, errBadRange
	}
	return strconv.ParseInt(s, 10, 64)
}

// errBadRange: a 206 that is not the part that was asked for.
var errBadRange = errors.New("bad content-range")

// httpStatusError is a mirror's answer other than 200/206/304/404.
type httpStatusError struct{ status string }

func (e *httpStatusError) Error() string { return "status " + e.status }

// statusError maps a failed response: 404/410 wrap store.ErrNotFound.
func statusError(resp *http.Response) error {
	if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone {
		return fmt.Errorf("status %s: %w", resp.Status, store.ErrNotFound)
	}
	return &httpStatusError{status: resp.Status}
}

// mirrorSources are the repo's mirrors as blob sources for file.
func (n *Node) mirrorSources(repo, arch, file string) []source {
	urls := n.cfg.Mirrors.URLs(repo, arch)
	out := make([]source, 0, len(urls))
	for _, u := range urls {
		out = append(out, mirrorSource{client: n.client, base: u, file: file})
	}
	return out
}

func (n *Node) fetchDB(ctx context.Context, repo, arch, name string, ims time.Time) (*http.Response, error) {
	if !verify.ValidFileName(name) {
		return nil, fmt.Errorf("fetch db %s/%s: file name %q: %w", repo, arch, name, ErrBadName)
	}
	var tally failureTally
	for _, base := range n.cfg.Mirrors.URLs(repo, arch) {
		resp, err := n.getDB(ctx, base, name, ims)
		if err == nil {
			return resp, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("fetch db %s/%s/%s: %w", repo, arch, name, context.Cause(ctx))
		}
		n.log.Debug("db mirror failed", "file", name, "source", base, "err", err)
		tally.add(err, false)
	}
	return nil, tally.err(fmt.Sprintf("fetch db %s/%s/%s", repo, arch, name))
}

// getDB is one conditional GET of a db file on one mirror. A 200 body is
// guarded by a watchdog (a stalled body fails the read) until closed.
func (n *Node) getDB(ctx context.Context, base, name string, ims time.Time) (*http.Response, error) {
	wctx, wd := n.watch(ctx)
	req, err := http.NewRequestWithContext(wctx, http.MethodGet, fileURL(base, name), nil)
	if err != nil {
		wd.stop()
		return nil, err
	}
	if !ims.IsZero() {
		req.Header.Set("If-Modified-Since", ims.UTC().Format(http.TimeFormat))
	}
	resp, err := n.client.Do(req)
	if err != nil {
		wd.stop()
		return nil, wd.cause(err)
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNotModified {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // keep the connection
		resp.Body.Close()
		wd.stop()
		return nil, statusError(resp)
	}
	if resp.StatusCode == http.StatusNotModified {
		wd.stop() // no body to guard
		return resp, nil
	}
	resp.Body = &watchedBody{ReadCloser: resp.Body, wd: wd}
	return resp, nil
}

// watchedBody counts what is read for its watchdog and stops it on Close.
type watchedBody struct {
	io.ReadCloser
	wd *watchdog
}

func (b *watchedBody) Read(p []byte) (int, error) {
	k, err := b.ReadCloser.Read(p)
	b.wd.add(int64(k))
	if err != nil && err != io.EOF {
		err = b.wd.cause(err)
	}
	return k, err
}

func (b *watchedBody) Close() error {
	err := b.ReadCloser.Close()
	b.wd.stop()
	return err
}

// fetchSig gets FILE.sig (at most maxSigSize) from the repo's mirrors in
// order. When no mirror has it: nil and no error under SigOptional, an error
// wrapping verify.ErrNoSignature and store.ErrNotFound otherwise.
func (n *Node) fetchSig(ctx context.Context, repo, arch string, exp verify.Expect) ([]byte, error) {
	name := exp.Filename + ".sig"
	var tally failureTally
	for _, base := range n.cfg.Mirrors.URLs(repo, arch) {
		sig, err := n.getSig(ctx, fileURL(base, name))
		if err == nil {
			return sig, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("fetch %s: %w", name, context.Cause(ctx))
		}
		n.log.Debug("sig mirror failed", "file", name, "source", base, "err", err)
		tally.add(err, false)
	}
	if exp.Policy == verify.SigOptional {
		return nil, nil
	}
	err := tally.err("fetch " + name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: %w", err, verify.ErrNoSignature)
	}
	return nil, err
}

// getSig reads one .sig, bounded in size and time.
func (n *Node) getSig(ctx context.Context, u string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*n.cfg.MirrorTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := n.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, statusError(resp)
	}
	sig, err := io.ReadAll(io.LimitReader(resp.Body, maxSigSize+1))
	if err != nil {
		return nil, err
	}
	if len(sig) > maxSigSize {
		return nil, fmt.Errorf("signature larger than %d bytes: %w", maxSigSize, ErrBadMirror)
	}
	return sig, nil
}

// failureTally sums up why every source failed, to tell "nowhere to be
// found" (every source that answered said 404, and no bytes came) from
// "sources failed" (a 5xx, a stall, bad bytes: the file may exist).
type failureTally struct {
	notFound int
	other    int
	errs     []error
}

// add counts one failed source; delivered: it sent some bytes.
func (t *failureTally) add(err error, delivered bool) {
	t.errs = append(t.errs, err)
	var se *httpStatusError
	switch {
	case errors.Is(err, store.ErrNotFound) && !delivered:
		t.notFound++
	case errors.As(err, &se) || delivered || errors.Is(err, ErrStalled) || errors.Is(err, errBadRange):
		t.other++
	}
	// Anything else (connection refused, DNS, timeout) says nothing about
	// whether the file exists.
}

// err is the verdict, prefixed with op.
func (t *failureTally) err(op string) error {
	if t.notFound > 0 && t.other == 0 {
		return fmt.Errorf("%s: %w", op, store.ErrNotFound)
	}
	if len(t.errs) == 0 {
		return fmt.Errorf("%s: no source: %w", op, store.ErrNotFound)
	}
	return fmt.Errorf("%s: %w: %w", op, ErrAllSourcesFailed, errors.Join(t.errs...))
}
