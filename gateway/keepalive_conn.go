package gateway

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"io"
	"net"
	"net/http"
	"syscall"
	"time"
)

// fastConn is a hijacked keep-alive connection.
type fastConn struct {
	g    *Gateway
	ka   *keepAlive
	conn net.Conn        // set under ka.mu; writes, deadlines, sendfile
	br   *bufio.Reader   // what the client sent and was not consumed yet
	raw  syscall.RawConn // the TCP socket, for writeMore
	hdr  []byte          // the response header, reused
	idle bool            // waiting for a request's first byte; under ka.mu
}

// attach takes the hijacked connection, without the wrapper of a previous
// hand-back when that one has nothing left to give.
func (c *fastConn) attach(rwc net.Conn, br *bufio.Reader) {
	if hc, ok := rwc.(*handoffConn); ok && len(hc.pending) == 0 {
		rwc = hc.Conn
		if br.Buffered() == 0 {
			br.Reset(rwc)
		}
	}
	if tc, ok := rwc.(*net.TCPConn); ok { // MSG_MORE is TCP's
		c.raw, _ = tc.SyscallConn()
	}
	c.ka.mu.Lock()
	c.conn, c.br = rwc, br
	c.ka.mu.Unlock()
}

// run answers f, then every following request it can, until the
// connection closes or goes back to net/http.
func (c *fastConn) run(f *fastFile) {
	defer c.ka.remove(c)
	for ok := true; ok; f, ok = c.next() {
		if !c.serve(f) {
			_ = c.conn.Close()
			return
		}
	}
}

// next returns the next request when the keep-alive path answers it;
// otherwise it has closed the connection or handed it back.
func (c *fastConn) next() (*fastFile, bool) {
	head, err := c.nextHead()
	if errors.Is(err, errNotOurs) {
		c.handBack()
		return nil, false
	}
	if err != nil { // gone, timed out, shutting down: as net/http, no answer
		_ = c.conn.Close()
		return nil, false
	}
	path, ok := parseHead(head)
	var f *fastFile
	if ok {
		f, ok = c.g.fastFile(path)
	}
	if !ok {
		c.handBack()
		return nil, false
	}
	_, _ = c.br.Discard(len(head))
	return f, true
}

// nextHead peeks at the next request's complete head, waiting for it as
// net/http would: IdleTimeout for its first byte, ReadHeaderTimeout for
// the rest.
func (c *fastConn) nextHead() ([]byte, error) {
	if c.br.Buffered() == 0 {
		if err := c.awaitRequest(); err != nil {
			return nil, err
		}
	}
	armed := false
	for {
		buf, _ := c.br.Peek(c.br.Buffered())
		if n := headEnd(buf); n > 0 {
			return buf[:n], nil
		}
		if len(buf) == c.br.Size() {
			return nil, errNotOurs
		}
		if !armed && c.ka.headerWait > 0 {
			_ = c.conn.SetReadDeadline(time.Now().Add(c.ka.headerWait))
			armed = true
		}
		if _, err := c.br.Peek(len(buf) + 1); err != nil {
			return nil, err
		}
	}
}

// awaitRequest waits idle for a request's first byte; a shutdown wakes it.
func (c *fastConn) awaitRequest() error {
	ka := c.ka
	ka.mu.Lock()
	if ka.closing {
		ka.mu.Unlock()
		return errClosing
	}
	c.idle = true
	var deadline time.Time
	if ka.idleWait > 0 {
		deadline = time.Now().Add(ka.idleWait)
	}
	_ = c.conn.SetReadDeadline(deadline)
	ka.mu.Unlock()
	_, err := c.br.Peek(1)
	ka.mu.Lock()
	c.idle = false
	ka.mu.Unlock()
	return err
}

// handBack gives the connection, with what it buffered, to net/http.
func (c *fastConn) handBack() {
	pending, _ := c.br.Peek(c.br.Buffered())
	hc := &handoffConn{Conn: c.conn, pending: bytes.Clone(pending)}
	_ = c.conn.SetDeadline(time.Time{})
	if !c.ka.hl.handBack(hc) {
		_ = c.conn.Close()
	}
}

// serve answers f (its request consumed), logs and counts it as net/http's
// path does, and reports whether the connection may go on.
func (c *fastConn) serve(f *fastFile) bool {
	c.g.fastServed.Add(1)
	n, err := c.send(f)
	f.close()
	rw := recorder{status: http.StatusOK, outcome: outcomeHit, target: &f.t, bytes: n}
	c.g.recordAs(http.MethodGet, err != nil, &rw, time.Since(f.start))
	return err == nil
}

// send writes f's response, each write under its own WriteStall deadline;
// a package's header and body leave together, as in serveStored.
func (c *fastConn) send(f *fastFile) (int64, error) {
	defer func() { _ = c.conn.SetWriteDeadline(time.Time{}) }()
	c.hdr = appendHeader(c.hdr[:0], f, time.Now())
	if f.blob == nil { // a signature: header and body in one write
		head := len(c.hdr)
		c.hdr = append(c.hdr, f.sig...)
		c.arm()
		n, err := c.conn.Write(c.hdr)
		return int64(max(0, n-head)), err
	}
	c.arm()
	if err := c.writeMore(c.hdr, f.size > 0); err != nil {
		return 0, err
	}
	body := newBlobFile(f.blob, f.size)
	var sent int64
	for sent < f.size {
		c.arm()
		n, err := io.Copy(c.conn, &io.LimitedReader{R: body, N: min(writeChunk, f.size-sent)})
		sent += n
		if err == nil && n == 0 {
			err = io.ErrUnexpectedEOF // the file is shorter than its row
		}
		if err != nil {
			return sent, err
		}
	}
	return sent, nil
}

// writeMore writes b; with more, flagged MSG_MORE: the kernel holds it
// for the sendfile that follows, whose last bytes push both out, so a small
// package's header and body leave in one segment as under serveStored's
// cork, without the cork's two setsockopt calls.
func (c *fastConn) writeMore(b []byte, more bool) error {
	if c.raw == nil || !more {
		_, err := c.conn.Write(b)
		return err
	}
	var err error
	werr := c.raw.Write(func(fd uintptr) bool {
		for len(b) > 0 {
			n, e := syscall.SendmsgN(int(fd), b, nil, nil, syscall.MSG_MORE)
			switch {
			case errors.Is(e, syscall.EAGAIN):
				return false // wait until writable, under the write deadline
			case errors.Is(e, syscall.EINTR):
				continue
			case e != nil:
				err = e
				return true
			}
			b = b[n:]
		}
		return true
	})
	return cmp.Or(werr, err)
}

func (c *fastConn) arm() {
	_ = c.conn.SetWriteDeadline(time.Now().Add(c.g.cfg.WriteStall))
}
