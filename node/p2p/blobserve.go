package p2p

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/flocon/flocon/node/routing"
	"github.com/flocon/flocon/verify"
)

// handleHave answers whether this node has a CID: complete (a verified blob
// or a verified shared file), in flight (with the bytes so far), or not.
// On have/1.1.0 a complete answer carries the blob's first bytes (heads.go).
func (s *Host) handleHave(str network.Stream) {
	_ = str.SetDeadline(time.Now().Add(headerWait * time.Second))
	r := bufio.NewReader(str)
	c, err := readCID(r)
	var want uint64
	if err == nil && str.Protocol() == haveProtoHead {
		want, err = binary.ReadUvarint(r)
	}
	if err != nil {
		_ = str.Reset()
		return
	}
	h := s.haveState(c)
	var head []byte
	if h.code == haveComplete && want > 0 {
		var size int64
		if size, head = s.readHead(c, int(min(want, maxHead))); size >= 0 {
			h.size, h.available = size, size
		}
	}
	b := appendHave(nil, h)
	if str.Protocol() == haveProtoHead {
		b = appendHead(b, head)
	}
	if _, err := str.Write(b); err != nil {
		_ = str.Reset()
		return
	}
	_ = str.Close()
}

func (s *Host) haveState(c cid.Cid) header {
	if f, ok := s.shared.get(c); ok {
		return header{code: haveComplete, size: f.size, available: f.size}
	}
	if s.st.Has(c) {
		// The size is left unknown here: the blob answer carries it.
		return header{code: haveComplete, size: -1}
	}
	if g := s.st.growing(c); g != nil {
		return header{code: haveInflight, size: g.Size(), available: g.Written(), started: s.inflight.start(c, time.Now())}
	}
	s.announced.remove(c)
	s.inflight.done(c) // an aborted download
	return header{code: haveNone, size: -1}
}

// handleBlob serves one blob (or its signature) from an offset: a verified
// shared file, a verified blob of the store, or an in-flight download.
func (s *Host) handleBlob(str network.Stream) {
	p := str.Conn().RemotePeer()
	_ = str.SetReadDeadline(time.Now().Add(headerWait * time.Second))
	req, err := readBlobRequest(bufio.NewReader(str))
	if err != nil {
		_ = str.ResetWithError(network.StreamProtocolViolation)
		return
	}
	_ = str.SetReadDeadline(time.Time{})
	if !s.slots.acquire(p) {
		s.answer(str, statusBusy)
		return
	}
	defer s.slots.release(p)
	ctx, cancel := s.streamContext()
	defer cancel()
	if req.kind == kindSig {
		s.serveSig(str, req)
		return
	}
	err = s.serveBlob(ctx, str, req)
	if err != nil {
		_ = str.Reset()
		s.log.Debug("blob not served", "peer", p.String(), "cid", req.c.String(), "err", err)
		return
	}
	s.peers.update(p, func(ps *peerStats) { ps.BlobsServed++ })
	_ = str.Close()
}

// streamContext is the context of one served stream: it ends when the
// handler returns or the p2p side stops (blocked in-flight reads wake up).
func (s *Host) streamContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-s.closing:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// answer sends a header-only answer and closes the stream.
func (s *Host) answer(str network.Stream, status byte) {
	if err := writeHeader(str, header{code: status, size: -1}); err != nil {
		_ = str.Reset()
		return
	}
	_ = str.Close()
}

func (s *Host) serveSig(str network.Stream, req blobRequest) {
	sig, err := s.signature(req.c)
	if err != nil {
		s.answer(str, statusNotFound)
		return
	}
	if req.off > int64(len(sig)) {
		s.answer(str, statusBadRequest)
		return
	}
	_ = str.SetWriteDeadline(time.Now().Add(stallTimeout))
	n := int64(len(sig))
	if writeHeader(str, header{code: statusOK, size: n, available: n}) != nil {
		_ = str.Reset()
		return
	}
	body := newBodySender(str, framed(str), nil)
	_, err = body.write(sig[req.off:], stallTimeout)
	body.stop()
	if err != nil {
		_ = str.Reset()
		return
	}
	_ = str.Close()
}

// signature is the detached signature this node verified c with.
func (s *Host) signature(c cid.Cid) ([]byte, error) {
	if f, ok := s.shared.get(c); ok && len(f.sig) > 0 {
		return f.sig, nil
	}
	return s.st.Sig(c)
}

// serveBlob writes the header and the bytes; an error means the stream must
// be reset (the receiver treats it as a plain failure).
func (s *Host) serveBlob(ctx context.Context, str network.Stream, req blobRequest) error {
	if file, size, corrupt, ok := s.openComplete(req.c); ok {
		defer file.Close()
		return s.serveFile(ctx, str, file, size, req, corrupt)
	}
	if g := s.st.growing(req.c); g != nil {
		return s.serveGrowing(ctx, str, g, req)
	}
	s.answer(str, statusNotFound)
	return nil
}

// openComplete opens a complete copy of c: a shared cache's file first (a
// shared file that cannot be opened is dropped), else the store's blob;
// corrupt drops the copy it opened.
func (s *Host) openComplete(c cid.Cid) (f *os.File, size int64, corrupt func(), ok bool) {
	if sf, ok := s.shared.get(c); ok {
		file, err := os.Open(sf.path) // read-only: shared caches are never modified
		if err == nil {
			return file, sf.size, func() { s.dropShared(c, sf.path) }, true
		}
		s.dropShared(c, sf.path)
	}
	if file, info, err := s.st.OpenBlob(c); err == nil {
		return file, info.Size, func() { s.dropBlob(c) }, true
	}
	return nil, 0, nil, false
}

// serveFile sends a complete blob, hashing all of it (the part before the
// offset too) while it goes out, and holds the chunk that ends the file
// back until the hash is proven: a file that rotted on disk is never sent
// whole, the stream is reset with codeCorrupt and the copy is dropped.
func (s *Host) serveFile(ctx context.Context, str network.Stream, f *os.File, size int64, req blobRequest, corrupt func()) error {
	want, err := verify.SHA256Of(req.c)
	if err != nil {
		s.answer(str, statusNotFound)
		return nil
	}
	if req.off > size {
		s.answer(str, statusBadRequest)
		return nil
	}
	// The header leaves with the first frame (or a keepalive while the
	// offset is hashed).
	head := appendHeader(nil, header{code: statusOK, size: size, available: size})
	body := newHeadedSender(str, framed(str), nil, head)
	defer body.stop()
	bp := getChunk()
	defer putChunk(bp)
	start := time.Now()
	stamp, stamped := stampOf(f)
	if stamped && stamp.size == size && s.verified.fresh(req.c, stamp, start) {
		return s.sendProven(ctx, str, body, f, req, size, *bp, corrupt)
	}
	h := sha256.New()
	if _, err := io.CopyN(h, f, req.off); err != nil {
		return s.corrupt(str, body, req.c, "short file", corrupt)
	}
	last, err := s.sendAllButLast(ctx, str, body, f, h, size-req.off, *bp)
	if errors.Is(err, errShortFile) {
		return s.corrupt(str, body, req.c, "short file", corrupt)
	}
	if err != nil {
		return err
	}
	if !bytes.Equal(h.Sum(nil), want) || !atEOF(f) {
		return s.corrupt(str, body, req.c, "hash mismatch", corrupt)
	}
	if stamped {
		s.verified.mark(req.c, stamp, start)
	}
	if err := s.send(ctx, str, body, last); err != nil {
		return err
	}
	return body.flush(stallTimeout)
}

// sendProven sends a file a recent send proved whole, unchanged since
// (verified.go), from the offset without hashing it again.
func (s *Host) sendProven(ctx context.Context, str network.Stream, body *bodySender, f *os.File, req blobRequest, size int64, room []byte, corrupt func()) error {
	if _, err := f.Seek(req.off, io.SeekStart); err != nil {
		return err
	}
	n := size - req.off
	for k := int64(firstChunk); n > 0; k = min(2*k, chunkSize) {
		buf := room[:frameRoom+min(k, n)]
		if _, err := io.ReadFull(f, buf[frameRoom:]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return s.corrupt(str, body, req.c, "short file", corrupt)
			}
			return err
		}
		if err := s.send(ctx, str, body, buf); err != nil {
			return err
		}
		n -= int64(len(buf) - frameRoom)
	}
	return body.flush(stallTimeout)
}

// firstChunk is the size of a served file's first chunk; each next one is
// twice the last, up to chunkSize. The first bytes go out as soon as they
// are read (the hash runs beside the send), not after 2 MiB (the peer's
// first byte took 7.7 ms, p50 on a loaded machine); big chunks keep the
// syscalls and the hand-offs few for the rest.
const firstChunk = 32 << 10

// errShortFile is a file that ended before its stat'ed size.
var errShortFile = errors.New("file shorter than its size")

// sendAllButLast reads n bytes of f in chunks into room[frameRoom:] and
// sends each through h, all but the one that ends the file, which it hashes
// and returns (in room, with its frame room) unsent. A chunk is hashed on
// the other core while it goes out: the sender's sha256 was a sixth of a
// transfer's CPU, in series with the encryption (BenchmarkP2PThroughput
// profile).
func (s *Host) sendAllButLast(ctx context.Context, str network.Stream, body *bodySender, f io.Reader, h io.Writer, n int64, room []byte) ([]byte, error) {
	size := int64(firstChunk)
	for {
		k := min(size, n)
		size = min(2*size, chunkSize)
		buf := room[:frameRoom+k]
		if _, err := io.ReadFull(f, buf[frameRoom:]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, errShortFile
			}
			return nil, err
		}
		n -= k
		if n == 0 {
			h.Write(buf[frameRoom:])
			return buf, nil
		}
		var hashed sync.WaitGroup
		hashed.Go(func() { h.Write(buf[frameRoom:]) })
		err := s.send(ctx, str, body, buf)
		hashed.Wait()
		if err != nil {
			return nil, err
		}
	}
}

// atEOF reports whether f has nothing left to read: a file longer than its
// stat'ed size is not the blob either.
func atEOF(f io.Reader) bool {
	var b [1]byte
	n, err := f.Read(b[:])
	return n == 0 && errors.Is(err, io.EOF)
}

// chunkPool holds the chunk buffers of blob streams, both sides: a stream
// used to allocate (and zero) 2 MiB, which cost a small blob more than its
// bytes and left the garbage collector a pile per transfer. A sender's
// chunk is buf[frameRoom:], the room in front for the frame's length.
var chunkPool = sync.Pool{New: func() any { b := make([]byte, frameRoom+chunkSize); return &b }}

func getChunk() *[]byte  { return chunkPool.Get().(*[]byte) }
func putChunk(b *[]byte) { chunkPool.Put(b) }

// corrupt resets the stream with codeCorrupt and drops the local copy.
func (s *Host) corrupt(str network.Stream, body *bodySender, c cid.Cid, detail string, drop func()) error {
	body.stop() // no keepalive after the reset
	_ = str.ResetWithError(codeCorrupt)
	s.log.Error("served blob is corrupt on disk, dropped", "cid", c.String(), "detail", detail)
	s.verified.forget(c)
	drop()
	return nil
}

func (s *Host) dropBlob(c cid.Cid) {
	s.announced.remove(c)
	if err := s.st.RemoveBlob(c); err != nil {
		s.log.Error("remove corrupt blob", "cid", c.String(), "err", err)
	}
}

// send writes the chunk buf[frameRoom:] to the body under the stall
// deadline and the peer's upload rate (keepalives go out while it waits
// for the rate).
func (s *Host) send(ctx context.Context, str network.Stream, body *bodySender, buf []byte) error {
	k := len(buf) - frameRoom
	if k <= 0 {
		return nil
	}
	p := str.Conn().RemotePeer()
	if err := s.limiter.wait(ctx, p, k); err != nil {
		return err
	}
	if s.sites.site(p) == routing.Remote {
		if err := s.wan.wait(ctx, wanBucket, k); err != nil {
			return err
		}
	}
	n, err := body.writeChunk(buf, sendDeadline(k))
	s.countSent(p, n)
	if err != nil {
		return fmt.Errorf("send to %s: %w", p, err)
	}
	return nil
}

// wanBucket keys the one upload budget all remote peers share.
const wanBucket = peer.ID("")

// minSendRate is the slowest link a chunk may cross before its send fails:
// a chunk gets stallTimeout, or longer when its size at this rate needs
// more (1 MiB: 32 s), so a shared slow WAN link is not mistaken for a dead
// peer. The receiver's hedge judges the speed, not the sender.
const minSendRate = 32 << 10 // bytes/s

func sendDeadline(n int) time.Duration {
	return max(stallTimeout, time.Duration(n)*time.Second/minSendRate)
}

func (s *Host) countSent(p peer.ID, n int) {
	if n > 0 {
		s.peers.update(p, func(ps *peerStats) { ps.BytesSent += int64(n) })
	}
}

// serveGrowing streams an in-flight download as it arrives ("LAN-wide single
// flight"). The store never releases the last bytes before the download is
// verified and committed, so nothing unverified is ever complete here.
func (s *Host) serveGrowing(ctx context.Context, str network.Stream, g growingBlob, req blobRequest) error {
	size := g.Size()
	if size >= 0 && req.off > size {
		s.answer(str, statusBadRequest)
		return nil
	}
	_ = str.SetWriteDeadline(time.Now().Add(stallTimeout))
	if err := writeHeader(str, header{code: statusOK, size: size, available: g.Written()}); err != nil {
		return err
	}
	// While this node waits on its own source, keepalives tell the
	// follower it is alive: the follower waits rather than giving up.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	body := newBodySender(str, framed(str), cancel) // a follower that left ends the wait
	defer body.stop()
	defer s.followers.add(req.c, str.Conn().RemotePeer())()
	r := g.NewReader(ctx, req.off)
	defer r.Close()
	bp := getChunk()
	defer putChunk(bp)
	buf := *bp
	for {
		n, err := r.Read(buf[frameRoom:])
		if serr := s.send(ctx, str, body, buf[:frameRoom+n]); serr != nil {
			return serr
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("in-flight %s: %w", req.c, err)
		}
	}
}
