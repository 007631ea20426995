package p2p

import (
	"context"
	"net"
	"sync"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/core/sec"
	yamux "github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	tptu "github.com/libp2p/go-libp2p/p2p/net/upgrader"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
)

// Record batching. crypto/tls writes every 16 KiB record with its own
// write(2) and reads about one record per read(2); with TCP_NODELAY each of
// those wakes the receiver. On a LAN that is most of the blob stream's
// system time: a 200 MiB blob is 12,800 records each way. batchedTLS is
// libp2p's TLS transport, the same protocol on the wire, with the records of
// one write of the muxer gathered into one write(2). (Reads stay
// unbuffered: a 64 KiB read buffer under TLS made the PSK simultaneous-open
// recovery hang, TestPSKSimultaneousDial, for a gain not measured apart.)
const (
	// batchFlushAt is where a gathered write goes out even before the
	// muxer's write is done (a yamux frame is yamuxFrame, 16 records).
	batchFlushAt = 512 << 10
	// yamuxFrame is the largest yamux frame this node sends (libp2p's is
	// 64 KiB). With a frame's records in one write(2), bigger frames are
	// fewer syscalls and fewer hand-offs to yamux's send loop: 0.39-0.42 s
	// of CPU per 200 MiB against 0.44-0.53 s (in-process, 4 pairs of runs).
	// Receivers take any frame up to their window (256 KiB at first).
	yamuxFrame = 256 << 10
)

// batchedYamux is libp2p's yamux with yamuxFrame frames.
func batchedYamux() *yamux.Transport {
	t := *yamux.DefaultTransport
	t.MaxMessageSize = yamuxFrame
	return &t
}

// batchedTLS secures connections with libp2p's TLS 1.3 (protocol
// /tls/1.0.0, interoperable with any libp2p peer) over a batching socket.
type batchedTLS struct{ *libp2ptls.Transport }

var _ sec.SecureTransport = (*batchedTLS)(nil)

// newBatchedTLS is libp2ptls.New over a batching socket.
func newBatchedTLS(id protocol.ID, key crypto.PrivKey, muxers []tptu.StreamMuxer) (*batchedTLS, error) {
	t, err := libp2ptls.New(id, key, muxers)
	if err != nil {
		return nil, err
	}
	return &batchedTLS{Transport: t}, nil
}

func (t *batchedTLS) SecureInbound(ctx context.Context, insecure net.Conn, p peer.ID) (sec.SecureConn, error) {
	raw := newBatchConn(insecure)
	sc, err := t.Transport.SecureInbound(ctx, raw, p)
	if err != nil {
		return nil, err
	}
	return &batchedSecureConn{SecureConn: sc, raw: raw}, nil
}

func (t *batchedTLS) SecureOutbound(ctx context.Context, insecure net.Conn, p peer.ID) (sec.SecureConn, error) {
	raw := newBatchConn(insecure)
	sc, err := t.Transport.SecureOutbound(ctx, raw, p)
	if err != nil {
		return nil, err
	}
	return &batchedSecureConn{SecureConn: sc, raw: raw}, nil
}

// batchedSecureConn gathers the records of each Write into one write(2).
type batchedSecureConn struct {
	sec.SecureConn
	raw *batchConn
}

func (c *batchedSecureConn) Write(b []byte) (int, error) {
	c.raw.cork()
	n, err := c.SecureConn.Write(b)
	if ferr := c.raw.uncork(); err == nil && ferr != nil {
		// The records are encrypted: a write that did not reach the
		// socket broke the stream, whatever Write returned.
		return 0, ferr
	}
	return n, err
}

// batchConn is the socket under TLS: corked, writes gather in a pooled
// buffer (no memory held between writes).
type batchConn struct {
	net.Conn

	mu     sync.Mutex
	corked int
	out    *[]byte // pooled while corked and not empty
	err    error   // a failed write: every later one fails too
}

func newBatchConn(c net.Conn) *batchConn {
	return &batchConn{Conn: c}
}

var batchPool = sync.Pool{New: func() any { b := make([]byte, 0, batchFlushAt+64<<10); return &b }}

func (c *batchConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if c.corked == 0 {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
		n, err := c.Conn.Write(p)
		c.err = err
		return n, err
	}
	if c.out == nil {
		c.out = batchPool.Get().(*[]byte)
	}
	*c.out = append(*c.out, p...)
	if len(*c.out) >= batchFlushAt {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func (c *batchConn) cork() {
	c.mu.Lock()
	c.corked++
	c.mu.Unlock()
}

func (c *batchConn) uncork() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corked--
	if c.corked > 0 {
		return nil
	}
	return c.flushLocked()
}

// flushLocked writes what is gathered and gives the buffer back.
func (c *batchConn) flushLocked() error {
	if c.out == nil {
		return c.err
	}
	b := c.out
	c.out = nil
	if c.err == nil && len(*b) > 0 {
		_, c.err = c.Conn.Write(*b)
	}
	*b = (*b)[:0]
	batchPool.Put(b)
	return c.err
}
