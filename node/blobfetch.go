package node

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// haveAnswer is one peer's answer to a have query.
type haveAnswer struct {
	p      peer.ID
	header header
	rtt    time.Duration
}

// lookup asks every connected peer, in parallel, whether it has c, and
// returns those that do, best first. It never waits longer than the have
// timeout, and returns as soon as every peer has answered.
func (s *p2pState) lookup(ctx context.Context, c cid.Cid) []source {
	peers := s.lookupPeers()
	if len(peers) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.haveTimeout)
	defer cancel()
	answers := make(chan haveAnswer, len(peers))
	var wg sync.WaitGroup
	for _, p := range peers {
		wg.Go(func() {
			a, err := s.queryHave(ctx, p, c)
			if err != nil {
				s.recent.forget(p)
				return
			}
			if a.header.code != haveNone {
				answers <- a
			}
		})
	}
	wg.Wait()
	close(answers)
	found := make([]haveAnswer, 0, len(peers))
	for a := range answers {
		if s.mayFollow(c, a) {
			found = append(found, a)
		}
	}
	return s.rank(found)
}

// mayFollow breaks cycles of in-flight downloads: nodes that start the same
// download at once would otherwise stream from each other and stall. A node
// that is itself downloading c follows only a peer that comes first in one
// order every node computes alike: (start time as the peer announced it,
// peer ID). The LAN forms a tree rooted at the first downloader, which
// alone goes to the mirror. Clock skew between hosts can only cost an extra
// mirror download, never a cycle.
func (s *p2pState) mayFollow(c cid.Cid, a haveAnswer) bool {
	if a.header.code != haveInflight || s.st.growing(c) == nil {
		return true
	}
	mine := s.inflight.start(c, time.Now())
	return comesFirst(a.header.started, a.p, mine, s.h.ID())
}

// comesFirst is the follow order: earlier start, then lower peer ID.
func comesFirst(aStart time.Time, a peer.ID, bStart time.Time, b peer.ID) bool {
	as, bs := aStart.UnixMicro(), bStart.UnixMicro()
	return as < bs || (as == bs && a < b)
}

// rank orders answers: complete copies first, then by score (latency and
// history).
func (s *p2pState) rank(found []haveAnswer) []source {
	now := time.Now()
	score := make(map[peer.ID]float64, len(found))
	for _, a := range found {
		score[a.p] = s.peers.score(a.p, s.h.Peerstore().LatencyEWMA(a.p), now)
	}
	sort.SliceStable(found, func(i, j int) bool {
		ci, cj := found[i].header.code == haveComplete, found[j].header.code == haveComplete
		if ci != cj {
			return ci
		}
		return score[found[i].p] < score[found[j].p]
	})
	out := make([]source, len(found))
	for i, a := range found {
		out[i] = &peerSource{s: s, p: a.p, have: a.header}
	}
	return out
}

func (s *p2pState) connectedPeers() []peer.ID {
	all := s.h.Network().Peers()
	out := all[:0]
	for _, p := range all {
		if !s.bans.banned(p) {
			out = append(out, p)
		}
	}
	return out
}

// lookupPeers are the connected peers plus those whose connection dropped
// moments ago (a Wi-Fi hiccup, a restart): asking them redials, bounded by
// the have timeout, and one that does not answer is forgotten.
func (s *p2pState) lookupPeers() []peer.ID {
	peers := s.connectedPeers()
	for _, p := range s.recent.list(time.Now()) {
		if s.h.Network().Connectedness(p) != network.Connected && !s.bans.banned(p) {
			peers = append(peers, p)
		}
	}
	return peers
}

// queryHave asks p about c on a /flocon/have stream bounded by ctx.
func (s *p2pState) queryHave(ctx context.Context, p peer.ID, c cid.Cid) (haveAnswer, error) {
	start := time.Now()
	str, err := s.h.NewStream(ctx, p, haveProto)
	if err != nil {
		return haveAnswer{}, err
	}
	defer str.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = str.SetDeadline(d)
	}
	if _, err := str.Write(writeCID(nil, c)); err != nil {
		_ = str.Reset()
		return haveAnswer{}, err
	}
	_ = str.CloseWrite()
	h, err := readHave(bufio.NewReader(str))
	if err != nil {
		_ = str.Reset()
		return haveAnswer{}, err
	}
	rtt := time.Since(start)
	s.h.Peerstore().RecordLatency(p, rtt)
	return haveAnswer{p: p, header: h, rtt: rtt}, nil
}

// peerSource fetches a blob from one peer over /flocon/blob.
type peerSource struct {
	s    *p2pState
	p    peer.ID
	have header
}

func (ps *peerSource) String() string { return "peer " + ps.p.String() }

func (ps *peerSource) Peer() peer.ID { return ps.p }

// Fetch streams c from offset off into w. A stall, a reset or a "not found"
// is a plain failure (the next source takes over); a malformed frame, a
// clean end before the announced size, or bytes past it are misbehaviour
// and ban the peer on top.
func (ps *peerSource) Fetch(ctx context.Context, c cid.Cid, off int64, w io.Writer) (int64, error) {
	n, err := ps.s.fetchBlob(ctx, ps.p, blobRequest{kind: kindBlob, c: c, off: off}, w)
	ps.s.peers.update(ps.p, func(st *peerStats) {
		st.BytesRecv += n
		if err == nil {
			st.Successes++
		} else if !errors.Is(err, ErrPeerNotFound) && ctx.Err() == nil {
			st.Failures++
			st.LastFailure = time.Now()
		}
	})
	if err != nil {
		return n, fmt.Errorf("fetch %s from %s: %w", c, ps.p, err)
	}
	return n, nil
}

// fetchBlob runs one blob request; it bans p itself on misbehaviour.
func (s *p2pState) fetchBlob(ctx context.Context, p peer.ID, req blobRequest, w io.Writer) (int64, error) {
	dctx, cancel := context.WithTimeout(ctx, p2pDialTimeout)
	str, err := s.h.NewStream(dctx, p, blobProto)
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
	r := bufio.NewReaderSize(str, chunkSize)
	h, err := readHeader(r)
	if err == nil {
		err = checkHeader(h, req)
	}
	if err != nil {
		_ = str.Reset()
		return 0, s.failure(ctx, p, req.c, err)
	}
	n, err := copyBody(str, r, h, req.off, w)
	if err != nil {
		_ = str.Reset()
		if errors.Is(err, errTruncated) && s.wentAway(p, str.Conn()) {
			return n, s.shortAndGone(p, req.c, err)
		}
		return n, s.failure(ctx, p, req.c, err)
	}
	return n, nil
}

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
func (s *p2pState) wentAway(p peer.ID, c network.Conn) bool {
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
func (s *p2pState) shortAndGone(p peer.ID, c cid.Cid, err error) error {
	var n int64
	s.peers.update(p, func(ps *peerStats) { ps.ShortAndGone++; n = ps.ShortAndGone })
	if n >= maxShortAndGone {
		_ = s.ban(p, "protocol violation", Evidence{CID: c.String(),
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

// copyBody copies the body after the header to w, refreshing the stall
// deadline on every read, and checks it against the announced size.
func copyBody(str network.Stream, r io.Reader, h header, off int64, w io.Writer) (int64, error) {
	buf := make([]byte, chunkSize)
	var got int64
	for {
		_ = str.SetReadDeadline(time.Now().Add(stallTimeout))
		n, err := r.Read(buf)
		if n > 0 {
			if h.size >= 0 && off+got+int64(n) > h.size {
				return got, fmt.Errorf("%d bytes past %d: %w", off+got+int64(n)-h.size, h.size, errOverrun)
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
// stall, a reset or a cancelled ctx are plain failures.
func (s *p2pState) failure(ctx context.Context, p peer.ID, c cid.Cid, err error) error {
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(err, errMalformed), errors.Is(err, errTruncated), errors.Is(err, errOverrun):
		_ = s.ban(p, "protocol violation", Evidence{CID: c.String(), Detail: err.Error()})
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

// fetchSig asks the peers that have c for its signature, best first.
func (s *p2pState) fetchSig(ctx context.Context, c cid.Cid) ([]byte, peer.ID, error) {
	var last error = ErrPeerNotFound
	for _, src := range s.lookup(ctx, c) {
		p := src.Peer()
		var buf limitedBuffer
		buf.max = maxPeerSigSize
		_, err := s.fetchBlob(ctx, p, blobRequest{kind: kindSig, c: c}, &buf)
		if err == nil && len(buf.b) > 0 {
			return buf.b, p, nil
		}
		if err != nil {
			last = err
		}
	}
	return nil, "", fmt.Errorf("signature of %s from peers: %w", c, last)
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
