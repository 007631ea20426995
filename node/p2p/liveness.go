package p2p

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
	"github.com/libp2p/go-yamux/v5"
	"github.com/quic-go/quic-go"
)

// Liveness policy of blob streams: a receiver tells a sender that is
// alive but has nothing to send (it waits on its own source, or on an
// upload budget) from one that is dead, in under a second.
//
// A process killed with SIGKILL over QUIC sends nothing (over TCP its
// kernel resets the connection at once), nor does a machine that lost
// power: its streams just go quiet, and only the stall timer
// (stallTimeout, 5 s) used to end them. One rule, in one place, for every
// blob stream (header and body, either version): the receiver watches each
// read (a timer, not a short read deadline: see liveReader). After
// livenessTimeout without a byte on the stream and on every other stream
// from the same peer, it asks the peer for a sign of life (alive): a pong
// of the libp2p ping, a pong of the yamux session, a QUIC packet, or a
// byte on any stream from the peer. None within livenessConfirm of the
// receiver's own time (signOfLife: a starved receiver waits longer) means
// the sender is gone (ErrPeerGone); the download moves on at once. A dead
// peer is so found livenessTimeout + livenessConfirm after its last byte.
// Measured over QUIC with a real SIGKILL in network namespaces (test/e2e
// TestKillSourceMidTransfer): 0.69-0.82 s with 300 + 400 ms, load 7-10;
// 1.24-1.26 s before, with 500 + 750 ms and the libp2p ping alone.
//
// A live peer judged dead loses every stream at once (its connection is
// closed), which costs far more than a dead one found later. On a loaded
// machine the ping's handler is starved first (a new stream, a goroutine
// on the peer's side); the transport's answers need only the peer's muxer
// or QUIC goroutines, and bytes on the peer's other streams speak for it
// too. Measured (ARCHITECTURE.md "Source choice"): no live peer was asked
// at all in the 5-machine herd benches (load 6-10); node
// TestLANSingleFlight under -race with busy loops sent a follower to the
// mirror in 0 of 32 runs against 2 of 32 with the old rule.
//
// A sender that gives signs of life is waited for, up to stallTimeout of
// silence in all. On blob/1.1.0 the answer's body is framed (see
// protocol.go), and a sender that has written nothing for keepaliveEvery
// sends an empty frame, a keepalive (the ticker makes the gap up to twice
// that), so a live one is rarely silent and rarely asked; a blob/1.0.0
// sender waiting on its own source is asked every livenessTimeout. A
// sender that keeps sending keepalives and no bytes is alive but slow:
// that is the hedge's business (node/health.go), not liveness.
const (
	keepaliveEvery  = 100 * time.Millisecond
	livenessTimeout = 300 * time.Millisecond // above the 2*keepaliveEvery gap of an idle sender
	livenessConfirm = 400 * time.Millisecond // the time a silent sender has to give a sign of life
	livenessTick    = 10 * time.Millisecond  // the unit of a receiver's own time (signOfLife)
	// maxFrame bounds a data frame: a sender never frames more than a chunk.
	maxFrame = chunkSize
)

// ErrPeerGone is a blob stream that went silent past livenessTimeout, from
// a peer that then gave no sign of life within livenessConfirm: the
// sender is dead or cut off.
var ErrPeerGone = errors.New("peer went silent (no keepalive)")

// deadlineWriter is the sending half of a stream (network.Stream, net.Conn).
type deadlineWriter interface {
	io.Writer
	SetWriteDeadline(t time.Time) error
}

// deadlineReader is the receiving half of a stream.
type deadlineReader interface {
	io.Reader
	SetReadDeadline(t time.Time) error
}

// bodySender writes the body of a blob answer: raw bytes (blob/1.0.0), or
// frames with keepalives in the gaps (blob/1.1.0). One data write runs at a
// time; a keepalive never waits behind one (a write in progress says the
// sender is alive well enough).
type bodySender struct {
	w      deadlineWriter
	framed bool
	gone   func() // called when a keepalive cannot be sent
	head   []byte // the answer's header, not sent yet: it leaves with the first write

	mu   sync.Mutex // one writer on the stream at a time
	last atomic.Int64
	quit chan struct{}
	done chan struct{}
}

// newBodySender starts the keepalives of a framed body (none for a raw one);
// gone (if not nil) is called when one cannot be sent: the receiver left,
// and a sender waiting on its own source can stop waiting. stop must be
// called before the stream is closed or reset.
func newBodySender(w deadlineWriter, framed bool, gone func()) *bodySender {
	return newHeadedSender(w, framed, gone, nil)
}

// newHeadedSender is newBodySender for an answer whose header (head) is
// not sent yet: it goes out in the same write as the first frame (or
// keepalive), one yamux frame and one wake-up of the receiver fewer on
// the way to the first byte. flush sends it when no body follows.
func newHeadedSender(w deadlineWriter, framed bool, gone func(), head []byte) *bodySender {
	b := &bodySender{w: w, framed: framed, gone: gone, head: head, quit: make(chan struct{}), done: make(chan struct{})}
	b.last.Store(time.Now().UnixNano())
	if !framed {
		close(b.done)
		return b
	}
	go b.keepAlive()
	return b
}

// write sends p (one frame when framed) under a write deadline of d.
func (b *bodySender) write(p []byte, d time.Duration) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	defer b.last.Store(time.Now().UnixNano())
	_ = b.w.SetWriteDeadline(time.Now().Add(d))
	if err := b.flushLocked(); err != nil {
		return 0, err
	}
	if !b.framed {
		return b.w.Write(p)
	}
	sent := 0
	for len(p) > 0 {
		k := min(len(p), maxFrame)
		if _, err := b.w.Write(binary.AppendUvarint(nil, uint64(k))); err != nil {
			return sent, err
		}
		n, err := b.w.Write(p[:k])
		sent += n
		if err != nil {
			return sent, err
		}
		p = p[k:]
	}
	return sent, nil
}

// frameRoom is the room a chunk buffer keeps in front of its bytes (see
// getChunk): writeChunk puts the frame's length there, and the answer's
// header before the first frame, so that a chunk leaves in one write.
// Written apart, the length of blob/1.1.0 was a yamux frame of its own
// per chunk (a TLS record, a write(2), a hand-off to yamux's send loop).
// It needs 1 + 3*binary.MaxVarintLen64 bytes (a header, then a length);
// 64 keeps the chunk's bytes cache-line aligned, as they were before,
// for read(2) from the page cache and the hash.
const frameRoom = 64

var _ [frameRoom - (1 + 3*binary.MaxVarintLen64)]byte // compile-time: the room fits

// writeChunk sends buf[frameRoom:] (at most maxFrame bytes) like write,
// in one write: the frame length and a pending header are put in
// buf[:frameRoom]. It returns the bytes of the chunk sent.
func (b *bodySender) writeChunk(buf []byte, d time.Duration) (int, error) {
	p := buf[frameRoom:]
	if len(p) == 0 {
		return 0, nil
	}
	var pre [frameRoom]byte
	prefix := pre[:0]
	b.mu.Lock()
	defer b.mu.Unlock()
	defer b.last.Store(time.Now().UnixNano())
	prefix = append(prefix, b.head...)
	if b.framed {
		prefix = binary.AppendUvarint(prefix, uint64(len(p)))
	}
	if len(prefix) > frameRoom || len(p) > maxFrame {
		panic("p2p: writeChunk: no room for the frame")
	}
	start := frameRoom - len(prefix)
	copy(buf[start:], prefix)
	_ = b.w.SetWriteDeadline(time.Now().Add(d))
	n, err := b.w.Write(buf[start:])
	b.head = nil
	return max(n-len(prefix), 0), err
}

// flush sends a pending header (an answer with no body) under a deadline of d.
func (b *bodySender) flush(d time.Duration) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	_ = b.w.SetWriteDeadline(time.Now().Add(d))
	return b.flushLocked()
}

func (b *bodySender) flushLocked() error {
	if len(b.head) == 0 {
		return nil
	}
	_, err := b.w.Write(b.head)
	b.head = nil
	return err
}

// keepAlive sends an empty frame whenever the body has been quiet for
// keepaliveEvery, until stop.
func (b *bodySender) keepAlive() {
	defer close(b.done)
	tick := time.NewTicker(keepaliveEvery)
	defer tick.Stop()
	for {
		select {
		case <-b.quit:
			return
		case now := <-tick.C:
			if now.Sub(time.Unix(0, b.last.Load())) < keepaliveEvery || !b.mu.TryLock() {
				continue
			}
			_ = b.w.SetWriteDeadline(now.Add(stallTimeout))
			_, err := b.w.Write(append(slices.Clip(b.head), 0))
			b.head = nil
			b.last.Store(time.Now().UnixNano())
			b.mu.Unlock()
			if err != nil {
				if b.gone != nil {
					b.gone()
				}
				return
			}
		}
	}
}

// stop ends the keepalives; safe to call more than once.
func (b *bodySender) stop() {
	select {
	case <-b.quit:
	default:
		if b.framed {
			close(b.quit)
		}
	}
	<-b.done
}

// liveReader reads a stream for as long as its sender is alive: the read
// itself waits up to stallTimeout after the latest bytes (the stall
// limit), and a watch (a timer, not a read deadline) asks alive once a
// read has waited d without a byte. A sender that answers, or sends a byte
// meanwhile (a keepalive that waited behind a starved goroutine, the next
// chunk), is waited for, and asked again after d more; one that does not
// is gone: the watch ends the read, which returns ErrPeerGone. Without
// alive, the watch ends the read after d and the deadline's error is
// returned as is.
//
// The watch never cuts a read short on a live sender: go-yamux v5.1.0
// (the newest the Go proxy serves) counts a window update as granted
// before it sends it, and drops it when the read's deadline has passed by
// then, so a read that returns bytes as a short deadline expires loses the
// sender that much credit for good, and fails with the deadline's error
// besides; a few such reads leave the sender without a window while the
// receiver thinks it has one (TestLiveReaderKeepsYamuxCredit). Reads with
// a deadline of livenessTimeout, renewed at each read, did that: "peer
// stalled: i/o deadline reached" after 0.4-1.5 MB on live peers.
type liveReader struct {
	r     deadlineReader
	d     time.Duration
	alive func() error
	heard *atomic.Int64 // if set, the sender's latest byte on any stream (heardBook)

	mu      sync.Mutex
	last    time.Time // when the latest read returned bytes (the stall limit runs from it)
	since   time.Time // when the read in progress started
	reading bool      // a read waits on r
	reads   int64     // reads ended: an answer about an earlier one does not judge this one
	watch   *time.Timer
	armed   bool  // watch pending
	asking  bool  // alive running
	gone    error // the watch's verdict on the read in progress
	stopped bool
}

func (l *liveReader) Read(p []byte) (int, error) {
	l.mu.Lock()
	if l.last.IsZero() {
		l.last = time.Now()
	}
	stall := l.last.Add(stallTimeout)
	l.mu.Unlock()
	// Set before the read is marked in progress: the watch's own deadline
	// (now) comes after it and is not overwritten.
	_ = l.r.SetReadDeadline(stall)
	l.mu.Lock()
	l.reading, l.since, l.gone = true, time.Now(), nil
	l.arm(l.d)
	l.mu.Unlock()

	n, err := l.r.Read(p)

	l.mu.Lock()
	defer l.mu.Unlock()
	l.reading = false
	l.reads++
	if n > 0 {
		l.last = time.Now()
		if l.heard != nil {
			l.heard.Store(l.last.UnixNano())
		}
		if l.gone != nil && isTimeout(err) { // the bytes came as the watch gave up: they win
			err = nil
		}
		return n, err
	}
	if l.gone != nil && isTimeout(err) {
		return 0, l.gone
	}
	return n, err
}

// arm starts the watch to fire after d unless it is pending or asking.
// l.mu is held.
func (l *liveReader) arm(d time.Duration) {
	if l.armed || l.asking || l.stopped {
		return
	}
	l.armed = true
	if l.watch == nil {
		l.watch = time.AfterFunc(d, l.check)
		return
	}
	l.watch.Reset(d)
}

// check runs when the watch fires: a read that has waited d without a
// byte asks alive (without holding the lock) and is ended when the sender
// does not answer and sent nothing meanwhile.
func (l *liveReader) check() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.armed = false
	if !l.reading {
		return // the next read starts the watch again
	}
	if waited := time.Since(l.since); waited < l.d {
		l.arm(l.d - waited)
		return
	}
	if l.alive == nil {
		_ = l.r.SetReadDeadline(time.Now())
		return
	}
	read := l.reads
	l.asking = true
	l.mu.Unlock()
	aerr := l.alive()
	l.mu.Lock()
	l.asking = false
	switch {
	case !l.reading:
		// the read ended during the ping: the next one starts the watch
	case l.reads != read:
		// bytes came during the ping, and a new read waits: watch it
		l.arm(max(l.d-time.Since(l.since), 0))
	case aerr != nil:
		l.gone = fmt.Errorf("nothing for %s and %w: %w", l.d, aerr, ErrPeerGone)
		_ = l.r.SetReadDeadline(time.Now())
	default:
		l.since = time.Now() // answered: asked again after d more of silence
		l.arm(l.d)
	}
}

// stop ends the watch; the reader is not used after it.
func (l *liveReader) stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stopped = true
	if l.watch != nil {
		l.watch.Stop()
	}
}

// frameReader yields the data of a framed body, skipping keepalives. A
// clean end of stream between frames is the sender's end (io.EOF); inside
// a frame it is a short stream (errTruncated); a frame over maxFrame is
// errMalformed.
type frameReader struct {
	r    *bufio.Reader
	left int // bytes of the current frame not read yet
}

func (f *frameReader) Read(p []byte) (int, error) {
	for f.left == 0 {
		n, err := binary.ReadUvarint(f.r)
		switch {
		case err == io.EOF: //nolint:errorlint // identity on purpose: the clean end
			return 0, io.EOF
		case err == io.ErrUnexpectedEOF: //nolint:errorlint // identity on purpose
			return 0, fmt.Errorf("inside a frame length: %w", errTruncated)
		case err != nil:
			return 0, eofMalformed(err)
		case n > maxFrame:
			return 0, fmt.Errorf("frame of %d bytes: %w", n, errMalformed)
		}
		f.left = int(n) // 0: a keepalive
	}
	k, err := f.r.Read(p[:min(len(p), f.left)])
	f.left -= k
	// A stream may return a frame's last bytes together with io.EOF (QUIC
	// does; bufio passes it on when the read bypasses its buffer): that
	// is a clean end between frames, not a short one.
	if err == io.EOF && f.left > 0 { //nolint:errorlint // identity on purpose: a clean end mid-frame
		return k, fmt.Errorf("%d bytes short in a frame: %w", f.left, errTruncated)
	}
	return k, err
}

// alive asks p for a sign of life and returns nil at the first one before
// ctx ends: a pong of the libp2p ping (a new stream, a handler goroutine
// on p's side), a pong of the yamux session (p's muxer goroutines answer
// it, behind no stream), or, on QUIC, any packet from p once the ping is
// out (p's QUIC stack acknowledges the ping's packets within its ack
// delay). A loaded machine starves the ping's handler long before its
// transport: the transport's answers are what keep a live peer from being
// judged dead. A machine that died without closing its connections (QUIC
// sends nothing on a kill -9; a TCP peer that lost power) gives none.
func (s *Host) alive(ctx context.Context, p peer.ID) error {
	start := time.Now()
	sign, err := s.signOfLife(ctx, p)
	waited := time.Since(start)
	switch {
	case err != nil:
		s.log.Debug("no sign of life", "peer", p.String(), "waitedMs", waited.Milliseconds(), "err", err)
	case waited >= livenessConfirm/2: // a live peer near the verdict: what to tune livenessConfirm by
		s.log.Info("slow sign of life", "peer", p.String(), "sign", sign, "waitedMs", waited.Milliseconds())
	default:
		s.log.Debug("sign of life", "peer", p.String(), "sign", sign, "waitedMs", waited.Milliseconds())
	}
	return err
}

// signOfLife is alive's question; it names the first sign that came.
func (s *Host) signOfLife(ctx context.Context, p peer.ID) (string, error) {
	type answer struct {
		sign string
		err  error
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	conns := s.h.Network().ConnsToPeer(p)
	answers := make(chan answer, 1+len(conns)) // buffered: a late answer never blocks
	asked := 1
	go func() {
		select {
		case res := <-ping.Ping(ctx, s.h, p):
			answers <- answer{"ping", res.Error}
		case <-ctx.Done():
			answers <- answer{"ping", ctx.Err()}
		}
	}()
	var quics []*quic.Conn
	var received []uint64
	for _, c := range conns {
		var ys *yamux.Session
		var qc *quic.Conn
		switch {
		case c.As(&ys):
			asked++
			go func() { answers <- answer{"yamux", freshYamuxPing(ys)} }() // ends with the session at the latest
		case c.As(&qc):
			quics = append(quics, qc)
			received = append(received, qc.ConnectionStats().PacketsReceived)
		}
	}
	// The wait is livenessConfirm of this process's own time: the ticks it
	// received (a tick not received when due is dropped), and at least as
	// long on the clock. A receiver starved on loaded cores cannot tell a
	// peer starved with it from a dead one, so it waits longer; an idle one
	// waits livenessConfirm.
	tick := time.NewTicker(livenessTick)
	defer tick.Stop()
	start, ticks := time.Now(), 0
	err := errors.New("no answer")
	for {
		select {
		case a := <-answers:
			if a.err == nil {
				return a.sign, nil
			}
			err = fmt.Errorf("%s: %w", a.sign, a.err)
			if asked--; asked == 0 && len(quics) == 0 {
				return "", err
			}
		case <-tick.C:
			for i, qc := range quics {
				if qc.ConnectionStats().PacketsReceived > received[i] {
					return "quic", nil
				}
			}
			if ticks++; time.Duration(ticks)*livenessTick >= livenessConfirm && time.Since(start) >= livenessConfirm {
				return "", fmt.Errorf("none in %s (last: %w)", time.Since(start).Round(time.Millisecond), err)
			}
		case <-ctx.Done():
			return "", fmt.Errorf("%w (last: %w)", ctx.Err(), err)
		}
	}
}

// freshYamuxPing is a yamux ping sent after it was called. Session.Ping
// joins a ping already in flight (the session's own RTT pings, one at its
// start and every 30 s) and returns that ping's pong, which may have left
// the peer before it went silent: a peer cut off right after it connected
// looked alive (TestSignOfLife "cut off" failed in CI). The second ping
// started after the first call began, whichever of them it joined.
func freshYamuxPing(ys *yamux.Session) error {
	if _, err := ys.Ping(); err != nil {
		return err
	}
	_, err := ys.Ping()
	return err
}

// heardBook is when this node last received bytes (keepalives included)
// from each peer on any of its open blob streams. A stream's own silence
// is no proof of death while the same peer's other streams bring bytes:
// its frames may wait behind theirs on the connection (flow control, a
// busy sender), and a liveness ping would wait there too (measured: a herd
// on loaded cores judged a live relay gone, closed its connection and sent
// four downloads back to the mirror).
type heardBook struct {
	mu sync.Mutex
	m  map[peer.ID]*heard
}

type heard struct {
	last    atomic.Int64 // unix nanoseconds
	streams int          // open streams using it (under heardBook.mu)
}

func newHeardBook() *heardBook { return &heardBook{m: make(map[peer.ID]*heard)} }

// open returns p's entry for one more stream; done releases it.
func (b *heardBook) open(p peer.ID) (last *atomic.Int64, done func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.m[p]
	if e == nil {
		e = &heard{}
		b.m[p] = e
	}
	e.streams++
	return &e.last, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if e.streams--; e.streams == 0 {
			delete(b.m, p)
		}
	}
}

// recently reports whether p sent a byte on some stream within d.
func (b *heardBook) recently(p peer.ID, d time.Duration) bool {
	return b.since(p, time.Now().Add(-d))
}

// confirm is the liveness question about p: nil when p sent a byte on
// some stream within livenessTimeout, or answers ping (which gives up
// after livenessConfirm), or sends a byte on some stream while the ping
// is out; else ping's error.
func (b *heardBook) confirm(p peer.ID, ping func() error) error {
	if b.recently(p, livenessTimeout) {
		return nil
	}
	asked := time.Now()
	err := ping()
	if err != nil && b.since(p, asked) {
		return nil
	}
	return err
}

// since reports whether p sent a byte on some stream after t.
func (b *heardBook) since(p peer.ID, t time.Time) bool {
	b.mu.Lock()
	e := b.m[p]
	b.mu.Unlock()
	return e != nil && time.Unix(0, e.last.Load()).After(t)
}
