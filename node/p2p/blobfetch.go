package p2p

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/flocon/flocon/node/routing"
)

// FetchBlob streams c from offset off, as p sends it, into w, and returns
// how many bytes it wrote; nil only when p delivered to the end. A stall, a
// reset or a "not found" (ErrPeerNotFound, wrapping store.ErrNotFound) is a
// plain failure; a malformed frame, a clean end before the announced size,
// or bytes past it are misbehaviour: p is banned on top (ErrMisbehaviour).
//
// From offset 0, the first bytes p sent with its have answer (heads.go)
// are written at once and the stream asks for the rest.
func (s *Host) FetchBlob(ctx context.Context, p peer.ID, c cid.Cid, off int64, w io.Writer) (int64, error) {
	var head int64
	if off == 0 {
		if b := s.heads.take(p, c, time.Now()); len(b) > 0 {
			k, err := w.Write(b)
			head = int64(k)
			if err != nil {
				s.peers.update(p, func(st *peerStats) { st.BytesRecv += head })
				return head, fmt.Errorf("fetch %s from %s: write: %w", c, p, err)
			}
		}
	}
	n, err := s.fetchBlob(ctx, p, blobRequest{kind: kindBlob, c: c, off: off + head}, w)
	n += head
	if n > 0 {
		s.peers.update(p, func(st *peerStats) { st.BytesRecv += n })
	}
	if err != nil {
		return n, fmt.Errorf("fetch %s from %s: %w", c, p, err)
	}
	return n, nil
}

// FetchSig asks p for the detached signature it verified c with.
func (s *Host) FetchSig(ctx context.Context, p peer.ID, c cid.Cid) ([]byte, error) {
	buf := limitedBuffer{max: maxPeerSigSize}
	if _, err := s.fetchBlob(ctx, p, blobRequest{kind: kindSig, c: c}, &buf); err != nil {
		return nil, fmt.Errorf("signature of %s from %s: %w", c, p, err)
	}
	if len(buf.b) == 0 {
		return nil, fmt.Errorf("signature of %s from %s: empty: %w", c, p, ErrPeerNotFound)
	}
	return buf.b, nil
}

// fetchBlob runs one blob request; it bans p itself on misbehaviour.
func (s *Host) fetchBlob(ctx context.Context, p peer.ID, req blobRequest, w io.Writer) (int64, error) {
	if s.droppedSinceAnswer(p) {
		return 0, fmt.Errorf("%w: its connection closed after it answered", ErrPeerGone)
	}
	dctx, cancel := context.WithTimeout(ctx, p2pDialTimeout)
	str, err := s.h.NewStream(dctx, p, blobProtoLive, blobProto) // 1.1.0 when p speaks it
	cancel()
	if err != nil {
		return 0, err
	}
	defer str.Close()
	stop := context.AfterFunc(ctx, func() { _ = str.Reset() })
	defer stop()
	_ = str.SetDeadline(time.Now().Add(stallTimeout))
	if _, err := str.Write(req.encode()); err != nil {
		_ = str.Reset()
		return 0, ctxOr(ctx, err)
	}
	_ = str.CloseWrite()
	// One liveness rule for the header and the body, whatever the version
	// (liveness.go): silence past livenessTimeout, on this stream and on
	// every other from p, asks p for a ping.
	heard, done := s.heard.open(p)
	defer done()
	live := &liveReader{r: str, d: livenessTimeout, heard: heard, alive: func() error {
		return s.heard.confirm(p, func() error { return s.alive(ctx, p) })
	}}
	defer live.stop()
	// A small reader for the header: the body goes by copyBody's buffer.
	r := bufio.NewReaderSize(live, headerBuf)
	h, err := readHeader(r)
	if err == nil {
		err = checkHeader(h, req)
	}
	if err != nil {
		_ = str.Reset()
		return 0, s.failure(ctx, p, req.c, err)
	}
	var body io.Reader = r
	if framed(str) {
		body = &frameReader{r: r}
	}
	n, err := copyBody(body, h, req.off, w)
	if err != nil {
		_ = str.Reset()
		if errors.Is(err, errTruncated) && s.wentAway(p, str.Conn()) {
			return n, s.shortAndGone(p, req.c, err)
		}
		return n, s.failure(ctx, p, req.c, err)
	}
	return n, nil
}

// headerBuf is the buffer of the answer header's reader (the body bypasses
// it once it is drained).
const headerBuf = 4 << 10

// Truncation tolerance: a peer whose host shuts down mid-transfer can end
// the stream cleanly just before its connection drops, which looks like a
// lie. A short stream followed at once by the connection going away is a
// plain failure the first times; a peer that keeps doing it is banned.
const (
	goneWait        = 300 * time.Millisecond
	maxShortAndGone = 3
)

// wentAway reports whether the connection the stream came on closes within
// goneWait.
func (s *Host) wentAway(p peer.ID, c network.Conn) bool {
	deadline := time.Now().Add(goneWait)
	for {
		if c.IsClosed() || s.h.Network().Connectedness(p) != network.Connected {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// shortAndGone counts a short stream from a peer that then disconnected.
func (s *Host) shortAndGone(p peer.ID, c cid.Cid, err error) error {
	var n int64
	s.peers.update(p, func(ps *peerStats) { ps.ShortAndGone++; n = ps.ShortAndGone })
	if n >= maxShortAndGone {
		_ = s.Ban(p, "protocol violation", Evidence{CID: c.String(),
			Detail: fmt.Sprintf("%v (%d times, each followed by a disconnect)", err, n)})
		return fmt.Errorf("%w: %w", ErrMisbehaviour, err)
	}
	return fmt.Errorf("peer went away: %w", err)
}

// checkHeader maps a blob answer's status to an error.
func checkHeader(h header, req blobRequest) error {
	switch h.code {
	case statusOK:
		if h.size >= 0 && req.off > h.size {
			return fmt.Errorf("offset %d past size %d: %w", req.off, h.size, errMalformed)
		}
		return nil
	case statusNotFound:
		return ErrPeerNotFound
	case statusBusy:
		return ErrPeerBusy
	case statusBadRequest:
		return fmt.Errorf("offset %d: %w", req.off, errProtocolLimit)
	}
	return fmt.Errorf("status %d: %w", h.code, errMalformed)
}

// errTruncated is a clean end of stream before the announced size.
var errTruncated = errors.New("stream ended before the announced size")

// errOverrun is more bytes than the announced size.
var errOverrun = errors.New("more bytes than the announced size")

// copyBody copies the body after the header to w (r renews the read
// deadline on every read) and checks it against the announced size.
func copyBody(r io.Reader, h header, off int64, w io.Writer) (int64, error) {
	bp := getChunk()
	defer putChunk(bp)
	buf := *bp
	var got int64
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if h.size >= 0 && off+got+int64(n) > h.size {
				// The bytes up to the announced size may be the whole
				// blob: they go on (the verifier judges them), then the
				// overrun is reported (and bans the peer).
				past := off + got + int64(n) - h.size
				wn, werr := w.Write(buf[:int64(n)-past])
				got += int64(wn)
				if werr != nil {
					return got, fmt.Errorf("write: %w", werr)
				}
				return got, fmt.Errorf("%d bytes past %d: %w", past, h.size, errOverrun)
			}
			wn, werr := w.Write(buf[:n])
			got += int64(wn)
			if werr != nil {
				return got, fmt.Errorf("write: %w", werr)
			}
		}
		// Only a bare io.EOF is the sender's clean end: a dropped connection
		// surfaces as a reset that may wrap io.EOF, and is a plain failure.
		if err == io.EOF { //nolint:errorlint // identity on purpose, see above
			if h.size >= 0 && off+got < h.size {
				return got, fmt.Errorf("%d of %d bytes: %w", off+got, h.size, errTruncated)
			}
			return got, nil
		}
		if err != nil {
			return got, err
		}
	}
}

// failure classifies a failed transfer: misbehaviour bans the peer; a
// dead peer loses its connection; a stall, a reset or a cancelled ctx are
// plain failures.
func (s *Host) failure(ctx context.Context, p peer.ID, c cid.Cid, err error) error {
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(err, ErrPeerGone):
		// Dead, not lying: no ban. Its connection goes at once, so every
		// other stream from it fails now rather than each on its own
		// deadline, and lookups stop asking it (peers.go, recentPeers).
		s.recent.judgedGone(p)
		_ = s.h.Network().ClosePeer(p)
		return err
	case errors.Is(err, errMalformed), errors.Is(err, errTruncated), errors.Is(err, errOverrun):
		_ = s.Ban(p, "protocol violation", Evidence{CID: c.String(), Detail: err.Error()})
		return fmt.Errorf("%w: %w", ErrMisbehaviour, err)
	case isCorruptReset(err):
		return fmt.Errorf("%w: %w", ErrPeerCorrupt, err)
	case isTimeout(err):
		return fmt.Errorf("%w: %w", ErrPeerStalled, err)
	}
	return err
}

func ctxOr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// limitedBuffer collects at most max bytes.
type limitedBuffer struct {
	b   []byte
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if len(l.b)+len(p) > l.max {
		return 0, fmt.Errorf("signature over %d bytes: %w", l.max, errMalformed)
	}
	l.b = append(l.b, p...)
	return len(p), nil
}

// droppedSinceAnswer reports whether p is a peer of this site with no
// connection: a LAN peer answers a lookup over its connection, so one that
// has none any more has dropped since (its machine died or left). Dialled
// again, a dead one holds the download for the whole dial: libp2p goes on
// with its QUIC address after the TCP one is refused, and QUIC gets no
// answer (2 s, p2pDialTimeout; a 2.2 s stall in the kill -9 bench, where
// the late answer of a live peer waited behind that dial). The caller goes
// to its next source, or makes its list again (node/churn.go).
func (s *Host) droppedSinceAnswer(p peer.ID) bool {
	return s.sites.site(p) == routing.SameLAN && s.h.Network().Connectedness(p) != network.Connected
}
