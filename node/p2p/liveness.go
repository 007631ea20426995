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
// version): the receiver reads with a deadline of livenessTimeout, and
// silence that long means the sender is gone (ErrPeerGone) unless it
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

// liveReader reads a stream under a deadline renewed before every read:
// any byte, a keepalive included, proves the sender alive for d more.
// When the deadline passes and alive is set, alive has the last word
// unless a byte comes first (confirm): a peer that still answers it (a sending goroutine starved on a loaded
// machine) is waited for, up to stallTimeout of silence in all; one that
// does not is gone (ErrPeerGone). Without alive, the deadline's error is
// returned as is.
type liveReader struct {
	r     deadlineReader
	d     time.Duration
	alive func() error
	last  time.Time     // when the latest read returned bytes
	heard *atomic.Int64 // if set, the sender's latest byte on any stream (heardBook)
}

func (l *liveReader) Read(p []byte) (int, error) {
	if l.last.IsZero() {
		l.last = time.Now()
	}
	for {
		_ = l.r.SetReadDeadline(time.Now().Add(l.d))
		n, err := l.read(p)
		if n > 0 || !isTimeout(err) || l.alive == nil || time.Since(l.last) >= stallTimeout {
			return n, err
		}
		n, err, aerr := l.confirm(p)
		if n > 0 || (err != nil && !isTimeout(err)) || time.Since(l.last) >= stallTimeout {
			return n, err
		}
		if aerr != nil {
			return 0, fmt.Errorf("nothing for %s and %w: %w", l.d, aerr, ErrPeerGone)
		}
	}
}

// read reads p and notes when bytes came.
func (l *liveReader) read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	if n > 0 {
		l.last = time.Now()
		if l.heard != nil {
			l.heard.Store(l.last.UnixNano())
		}
	}
	return n, err
}

// confirm asks alive about a silent sender and keeps reading the stream
// meanwhile: a byte that comes before the answer (a keepalive that waited
// behind a starved goroutine, the next chunk) proves the sender alive as
// well as the answer does. Measured (node TestLANSingleFlight, -race, load
// 20 on 2 cores): a live sender's bytes arrived during an unanswered ping,
// were left unread, and the follower judged it gone, closed the connection
// and downloaded the package from the mirror a second time. confirm
// returns the read's outcome, and alive's answer once the read ended
// without bytes (nil when it ended on bytes or an error of its own).
func (l *liveReader) confirm(p []byte) (n int, err, aerr error) {
	var mu sync.Mutex
	reading := true
	res := make(chan error, 1)
	_ = l.r.SetReadDeadline(l.last.Add(stallTimeout))
	go func() {
		err := l.alive()
		mu.Lock()
		if reading { // the answer ends the read: a later one keeps its own deadline
			_ = l.r.SetReadDeadline(time.Now())
		}
		mu.Unlock()
		res <- err
	}()
	n, err = l.read(p)
	mu.Lock()
	reading = false
	mu.Unlock()
	if n > 0 || !isTimeout(err) || time.Since(l.last) >= stallTimeout {
		return n, err, nil
	}
	return 0, err, <-res
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
