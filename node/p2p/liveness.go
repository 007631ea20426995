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
)

// Liveness policy of blob streams: a receiver tells a sender that is
// alive but has nothing to send (it waits on its own source, or on an
// upload budget) from one that is dead, in about a second.
//
// A process killed with SIGKILL over QUIC sends nothing: its streams just
// go quiet, and only the stall timer (stallTimeout, 5 s) used to end them.
// One rule, in one place, for every blob stream (header and body, either
// version): the receiver watches each read (a timer, not a short read
// deadline: see liveReader), and silence of livenessTimeout means the sender is gone (ErrPeerGone) unless it
// answers a ping, or sends a byte on the stream, in time (livenessConfirm:
// a loaded machine can starve a sender's goroutine, not its whole
// connection); the download moves on at once. The ping's time is not short: on loaded cores a live peer's ping
// took over 250 ms (a herd of five at load 22; a -race test at load 20),
// and a live peer judged dead loses every stream at once, which costs far
// more than a dead one found half a second later. A sender that answers pings is waited for, up to stallTimeout of
// silence in all. On blob/1.1.0 the answer's body is framed (see
// protocol.go), and a sender that has written nothing for keepaliveEvery
// sends an empty frame, a keepalive, so a live one is rarely silent and
// rarely pinged; a blob/1.0.0 sender waiting on its own source is pinged
// every livenessTimeout. A sender that keeps sending keepalives and no
// bytes is alive but slow: that is the hedge's business (node/health.go),
// not liveness.
const (
	keepaliveEvery  = 100 * time.Millisecond
	livenessTimeout = 500 * time.Millisecond
	livenessConfirm = 750 * time.Millisecond // a ping's time to prove a silent sender alive
	// maxFrame bounds a data frame: a sender never frames more than a chunk.
	maxFrame = chunkSize
)

// ErrPeerGone is a blob stream that went silent past livenessTimeout
// although its sender promised keepalives, from a peer that then did not
// answer a ping within livenessConfirm: the sender is dead or cut off.
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

// alive pings p once and returns nil when it answers before ctx ends: a
// machine that died without closing its connections (QUIC sends nothing
// on a kill -9) does not.
func (s *Host) alive(ctx context.Context, p peer.ID) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	select {
	case res := <-ping.Ping(ctx, s.h, p):
		return res.Error
	case <-ctx.Done():
		return ctx.Err()
	}
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
	b.mu.Lock()
	e := b.m[p]
	b.mu.Unlock()
	return e != nil && time.Since(time.Unix(0, e.last.Load())) < d
}
