package node

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/flocon/flocon/store"
	"github.com/flocon/flocon/verify"
)

// errNoCID: Fetch needs the content address to share the download and to
// check the bytes; files without a db entry are not fetched from outside.
var errNoCID = errors.New("no content id")

// download is the one background download (the leader's) of a blob.
type download struct {
	repo, arch string
	exp        verify.Expect
	p          *store.Pending
	cancel     context.CancelCauseFunc
	sigPeer    peer.ID // the peer the signature came from, if any
	// sources are the sources that delivered bytes, over every attempt,
	// with how many each put into the download (for its log line).
	sources []SourceBytes
	st      downloadStats // for the status page (stats.go)
}

// SourceBytes is how many bytes of a download one source delivered.
type SourceBytes struct {
	Source string // "peer <ID>" or a mirror's base URL
	Kind   string // "lan", "remote" or "mirror"
	// Via is the router that found a peer ("lan" or "dht"); "" for a mirror.
	Via   string `json:",omitempty"`
	Bytes int64
}

// recordSources adds what each source of an attempt delivered (a retry
// from zero keeps the first attempt's sources: bad bytes are part of the
// story).
func (d *download) recordSources(srcs []source, got []int64) {
	d.st.mu.Lock() // Stats reads d.sources while the download runs
	defer d.st.mu.Unlock()
next:
	for i, s := range srcs {
		if got[i] <= 0 {
			continue
		}
		for j := range d.sources {
			if d.sources[j].Source == s.String() {
				d.sources[j].Bytes += got[i]
				continue next
			}
		}
		d.sources = append(d.sources, SourceBytes{Source: s.String(), Kind: traitsOf(s).kind.String(), Via: foundBy(s), Bytes: got[i]})
	}
}

// foundBy is the router that found s ("" for a mirror).
func foundBy(s source) string {
	if f, ok := s.(interface{ foundBy() string }); ok {
		return f.foundBy()
	}
	return ""
}

// sourcesAttr renders the sources for a log line: "SOURCE (KIND[ via
// ROUTER])=BYTES, ...".
func sourcesAttr(srcs []SourceBytes) string {
	parts := make([]string, len(srcs))
	for i, s := range srcs {
		kind := s.Kind
		if s.Via != "" {
			kind += " via " + s.Via
		}
		parts[i] = fmt.Sprintf("%s (%s)=%d", s.Source, kind, s.Bytes)
	}
	return strings.Join(parts, ", ")
}

func (n *Node) fetch(ctx context.Context, repo, arch string, exp verify.Expect) (*store.Pending, error) {
	if !verify.ValidFileName(exp.Filename) {
		return nil, fmt.Errorf("fetch: file name %q: %w", exp.Filename, ErrBadName)
	}
	if !exp.CID.Defined() {
		return nil, fmt.Errorf("fetch %s: %w", exp.Filename, errNoCID)
	}
	// A client joining a download in flight needs nothing of its own (a
	// joiner's first byte is on this path): that download's verifier
	// decides for every client, as it did for a blob already stored.
	if p := n.cfg.Store.Inflight(exp.CID); p != nil {
		return p, nil
	}
	// A db entry can name another package's signed bytes (an unsigned db, a
	// hostile mirror): the package's own .PKGINFO must agree with its name.
	exp.CheckIdentity = true
	// With the signature at hand, a doomed download (unknown, untrusted,
	// revoked key) is refused before it starts.
	var v *verify.Verifier
	if exp.Signature != nil || exp.Policy == verify.SigNever {
		var err error
		if v, err = verify.NewVerifier(n.keyring(repo), exp); err != nil {
			return nil, fmt.Errorf("fetch %s: %w", exp.Filename, err)
		}
	}
	return n.start(ctx, repo, arch, exp, v)
}

// start joins the download of exp.CID, or creates it and runs it in the
// background with v (nil: the signature is fetched first).
func (n *Node) start(ctx context.Context, repo, arch string, exp verify.Expect, v *verify.Verifier) (*store.Pending, error) {
	closeUnused := func() {
		if v != nil {
			_ = v.Close()
		}
	}
	if n.cfg.Store.Has(exp.CID) {
		closeUnused()
		return nil, nil
	}
	n.mu.Lock() // held until the download is registered: shutdown sees it
	defer n.mu.Unlock()
	if n.closed {
		closeUnused()
		return nil, fmt.Errorf("fetch %s: %w", exp.Filename, ErrClosed)
	}
	p, leader, err := n.cfg.Store.Begin(exp.CID, exp.Size)
	if err != nil || !leader {
		closeUnused()
		if err != nil {
			return nil, fmt.Errorf("fetch %s: %w", exp.Filename, err)
		}
		return p, nil
	}
	// The download belongs to every client of the CID, not to this request:
	// only the node's shutdown cancels it.
	dctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	d := &download{repo: repo, arch: arch, exp: exp, p: p, cancel: cancel}
	n.downloads[d] = struct{}{}
	// In flight from now on: the start time peers compare to decide who
	// follows whom is the moment the download exists, not when its
	// goroutine gets to run (a peer asking in between must follow us).
	n.announce(dctx, exp.CID)
	n.wg.Add(1)
	go n.runDownload(dctx, d, v)
	return p, nil
}

// runDownload fetches, verifies and commits (or aborts) d.
func (n *Node) runDownload(ctx context.Context, d *download, v *verify.Verifier) {
	defer func() {
		n.mu.Lock()
		delete(n.downloads, d)
		n.mu.Unlock()
		d.cancel(nil)
		n.wg.Done()
	}()
	d.st.begin()
	c, file := d.exp.CID, d.exp.Filename
	res, err := n.download(ctx, d, v)
	if err != nil {
		d.p.Abort(err)
		n.withdraw(ctx, c)
		n.logDownload(ctx, d, d.p.Written(), err)
		return
	}
	info := store.BlobInfo{CID: c, Size: res.Size, Repo: d.repo, Arch: d.arch, Filename: file}
	if res.Signer != nil {
		info.Signer = res.Signer.Fingerprint
	}
	if id := res.Identity; id != nil {
		info.Identity = verify.PkgFile{Name: id.Name, Version: id.Version, Arch: id.Arch}.Identity()
	}
	if err := d.p.Commit(info, d.exp.Signature); err != nil {
		d.p.Abort(err)
		n.withdraw(ctx, c)
		n.logDownload(ctx, d, res.Size, fmt.Errorf("commit: %w", err))
		return
	}
	n.announce(ctx, c)
	n.logDownload(ctx, d, res.Size, nil)
}

// download gets the signature when needed, then the verified bytes.
func (n *Node) download(ctx context.Context, d *download, v *verify.Verifier) (verify.Result, error) {
	if v == nil {
		sig, sigPeer, err := n.signature(ctx, d)
		if err != nil {
			return verify.Result{}, err
		}
		d.exp.Signature, d.sigPeer = sig, sigPeer
		if v, err = verify.NewVerifier(n.keyring(d.repo), d.exp); err != nil {
			err = fmt.Errorf("fetch %s: %w", d.exp.Filename, err)
			n.blameSignature(d, err)
			return verify.Result{}, err
		}
	}
	defer v.Close()
	// Announced in flight already (start): LAN peers may stream it from us.
	peers, late := n.peers(ctx, d.exp.CID)
	srcs := n.order(peers, n.mirrorSources(d.repo, d.arch, d.exp.Filename), time.Now())
	res, srcs, got, err := n.attempt(ctx, d, v, srcs, late)
	if err == nil || !isIntegrityError(err) {
		n.blameSignature(d, err)
		return res, err
	}
	retry := n.afterBadBytes(d, srcs, got, err)
	if len(retry) == 0 {
		return res, err
	}
	n.log.Warn("bad bytes, retrying from other sources", "cid", d.exp.CID.String(), "file", d.exp.Filename, "sources", len(retry), "err", err)
	res, err2 := n.retry(ctx, d, retry)
	n.blameSignature(d, err2)
	if err2 != nil && !isIntegrityError(err2) && !errors.Is(err2, verify.ErrBadSignature) {
		// The bad bytes are the story; the retry just found nothing better.
		return res, fmt.Errorf("%w; retry: %v", err, err2)
	}
	return res, err2
}

// signature gets the detached signature of a package: from the mirrors,
// else (policy Required) from a peer that verified the blob with it.
func (n *Node) signature(ctx context.Context, d *download) ([]byte, peer.ID, error) {
	sig, err := n.fetchSig(ctx, d.repo, d.arch, d.exp)
	if err == nil || d.exp.Policy != verify.SigRequired || ctx.Err() != nil {
		return sig, "", err
	}
	psig, p, perr := n.peerSig(ctx, d.exp.CID)
	if perr != nil || len(psig) == 0 {
		n.log.Debug("no signature from peers", "cid", d.exp.CID.String(), "err", perr)
		return nil, "", err
	}
	if len(psig) > maxSigSize {
		n.ban(p, "sent an oversized signature", Evidence{CID: d.exp.CID.String(), Detail: "signature larger than 16 KiB"})
		return nil, "", err
	}
	return psig, p, nil
}

// blameSignature bans the peer a signature came from when it is not a
// signature at all or fails over the right bytes: the peer claimed it had
// verified the blob with it. A key this node does not trust is no proof of
// bad faith (keyrings differ) and bans nobody.
func (n *Node) blameSignature(d *download, err error) {
	if d.sigPeer == "" || !errors.Is(err, verify.ErrBadSignature) {
		return
	}
	n.ban(d.sigPeer, "sent a bad signature", Evidence{CID: d.exp.CID.String(), Detail: err.Error()})
	n.log.Warn("peer banned", "peer", d.sigPeer.String(), "cid", d.exp.CID.String(), "err", err)
}

// retry starts over from offset 0 with a fresh verifier and srcs.
func (n *Node) retry(ctx context.Context, d *download, srcs []source) (verify.Result, error) {
	if err := d.p.Truncate(0); err != nil {
		return verify.Result{}, &sinkError{err: err}
	}
	v, err := verify.NewVerifier(n.keyring(d.repo), d.exp)
	if err != nil {
		return verify.Result{}, fmt.Errorf("fetch %s: %w", d.exp.Filename, err)
	}
	defer v.Close()
	res, _, _, err := n.attempt(ctx, d, v, srcs, nil)
	return res, err
}

// isIntegrityError: the bytes were not the expected ones; another source
// may have the right ones. (A bad signature over the right digest is not
// one: every source has those same bytes.)
func isIntegrityError(err error) bool {
	return errors.Is(err, verify.ErrDigestMismatch) || errors.Is(err, verify.ErrSizeMismatch)
}

// afterBadBytes bans the peer when it alone sent bad bytes, and returns
// the sources of the one retry (style rule 17): those that sent nothing,
// mirrors only unless the culprit is known and banned.
func (n *Node) afterBadBytes(d *download, srcs []source, got []int64, err error) []source {
	var culprit peer.ID
	contributors := 0
	for i, k := range got {
		if k > 0 {
			contributors++
			culprit = srcs[i].Peer()
		}
	}
	banned := contributors == 1 && culprit != ""
	if banned {
		ev := Evidence{CID: d.exp.CID.String(), Detail: err.Error()}
		var dm *verify.DigestMismatchError
		if errors.As(err, &dm) {
			ev.WantSHA256, ev.GotSHA256 = hex.EncodeToString(dm.Want), hex.EncodeToString(dm.Got)
		}
		n.ban(culprit, "sent bad bytes", ev)
		n.log.Warn("peer banned", "peer", culprit.String(), "cid", ev.CID, "err", err)
	}
	var retry []source
	for i, s := range srcs {
		if got[i] == 0 && (banned || s.Peer() == "") {
			retry = append(retry, s)
		}
	}
	return retry
}

// attempt streams the blob from srcs, each resuming where the previous
// stopped or racing a slow one from the same offset (hedge.go), and returns
// the verdict over everything written, the sources in their final order
// (with those found late) and how many bytes each contributed.
func (n *Node) attempt(ctx context.Context, d *download, v *verify.Verifier, srcs []source, late <-chan source) (verify.Result, []source, []int64, error) {
	w := newSink(d.p, v, d.exp.Size)
	t := newTransfer(n, d.exp.CID, d.exp.Filename, v, w, srcs)
	t.listen(late)
	d.st.follow(t)
	res, err := t.run(ctx)
	d.recordSources(t.srcs, t.got)
	n.countSources(t.srcs, t.got)
	return res, t.srcs, t.got, err
}

// fromSource runs one source under a watchdog: no first byte within
// MirrorTimeout, or less than MinSpeed over StallWindow, fails it with
// ErrStalled.
func (n *Node) fromSource(ctx context.Context, s source, c cid.Cid, off int64, w io.Writer) (int64, error) {
	sctx, wd := n.watch(ctx)
	k, err := s.Fetch(sctx, c, off, meter{w: w, wd: wd})
	wd.stop()
	if err != nil {
		err = wd.cause(err)
	}
	return k, err
}

// sinkError is a failure to keep bytes (the store), fatal to the download.
type sinkError struct{ err error }

func (e *sinkError) Error() string { return "write pending: " + e.err.Error() }
func (e *sinkError) Unwrap() error { return e.err }

// parallelChunk is the chunk size from which the verifier runs beside the
// store write; below it the hand-off costs more than it saves.
const parallelChunk = 32 << 10

// sink writes each chunk to the pending file and, in the same pass, to the
// verifier; it never takes more than the expected size.
type sink struct {
	p    io.Writer // the pending download
	v    *verify.Verifier
	size int64 // -1: unknown
	n    int64
	// sum is p when it hashes what it keeps and the verifier takes that
	// hash (newSink); nil when the verifier hashes the bytes itself
	sum contentSummer
	// kept is p when it holds the body in memory and the verifier reads
	// .PKGINFO from those bytes (newSink); nil otherwise
	kept contentKeeper
}

// contentSummer is a writer that hashes what it keeps (store.Pending).
type contentSummer interface {
	ContentSum() (hash.Hash, error)
}

// contentKeeper is a writer that may hold what it keeps in memory
// (store.Pending): Kept returns those bytes and true, or false.
type contentKeeper interface {
	Kept() ([]byte, bool)
}

// newSink is a sink into p for v. When p hashes what it keeps (the store
// does, to refuse bytes that are not the CID), the verifier takes p's
// sha256 instead of computing it again: one pass over every byte, made
// over the bytes that were kept.
func newSink(p io.Writer, v *verify.Verifier, size int64) *sink {
	s := &sink{p: p, v: v, size: size}
	if cs, ok := p.(contentSummer); ok {
		v.SumByWriter()
		s.sum = cs
		// and the verifier reads a small body's .PKGINFO from p's own copy
		if ck, ok := p.(contentKeeper); ok {
			if _, inMem := ck.Kept(); inMem {
				v.KeptByWriter()
				s.kept = ck
			}
		}
	}
	return s
}

// parallel reports whether the verifier takes chunks beside the store's
// write: not for a body the store holds in memory (its write is a copy,
// and the whole body is checked in less time than a hand-off to another
// goroutine costs on a busy machine).
func (s *sink) parallel() bool {
	return s.size < 0 || s.size > store.DefaultMemoryBody
}

// verdict is the verifier's verdict over everything written.
func (s *sink) verdict() (verify.Result, error) {
	if s.sum == nil {
		return s.v.Finish()
	}
	sum, err := s.sum.ContentSum()
	if err != nil {
		_ = s.v.Close()
		return verify.Result{}, &sinkError{err: err}
	}
	if s.kept != nil {
		kept, _ := s.kept.Kept()
		return s.v.FinishWithKept(sum, kept)
	}
	return s.v.FinishWithSum(sum)
}

func (s *sink) Write(b []byte) (int, error) {
	over := s.size >= 0 && s.n+int64(len(b)) > s.size
	if over {
		b = b[:s.size-s.n]
	}
	// The verifier (its .PKGINFO reader, a signature hash other than the
	// sha256; the sha256 itself when p does not hash) takes b while the
	// store writes and hashes it: two cores, one pass. A failed store write
	// aborts the download, so the verifier having seen more than was kept
	// does not matter.
	var verified sync.WaitGroup
	if len(b) >= parallelChunk && s.parallel() {
		verified.Go(func() { _, _ = s.v.Write(b) }) // never fails: the verdict comes from Finish
	} else {
		_, _ = s.v.Write(b)
	}
	k, err := s.p.Write(b)
	verified.Wait()
	s.n += int64(k)
	if err != nil {
		return k, &sinkError{err: err}
	}
	if over {
		return k, fmt.Errorf("more than %d bytes: %w", s.size, verify.ErrSizeMismatch)
	}
	return k, nil
}
