package node

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// plainTransport answers a plain-http GET (or HEAD) on the caller's own
// goroutine: it writes the request and reads the response on a kept
// connection without net/http's per-connection goroutines. net/http's
// Transport hands every request to its connection's write loop and the
// response head back from its read loop, two goroutine wake-ups per
// request and a third when the body ends, on the path of every small cold
// package (ARCHITECTURE.md, "Where the time goes": the upstream client was
// 13 % of the daemon's CPU over a burst of small packages). Everything else
// — https, a proxy, a request with a body — goes to fallback as before;
// redirects stay http.Client's.
//
// The contract is the Transport's for these requests: the response head
// within headerWait (0: no bound), a canceled context ends the exchange and
// any read of the body, a body read to its end gives the connection back for
// the next request, a body closed early or a response that says close ends
// the connection. A request sent on a kept connection that the server had
// closed meanwhile (a restarted mirror closes them all) is sent again on
// the next kept one, then on a new one (GET and HEAD are idempotent), as
// net/http does.
type plainTransport struct {
	fallback   http.RoundTripper
	dial       dialFunc
	proxy      func(*http.Request) (*url.URL, error) // nil: no proxy
	headerWait time.Duration                         // request written and response head read (0: no bound)
	idleWait   time.Duration                         // a kept connection older than this is not reused
	maxIdle    int                                   // kept connections per host

	mu   sync.Mutex
	idle map[string][]*plainConn // by host:port, most recently used last
}

// plainConn is one connection of plainTransport.
type plainConn struct {
	conn  net.Conn
	br    *bufio.Reader
	bw    *bufio.Writer
	addr  string
	since time.Time // when it was put back idle
}

// aLongTimeAgo is a deadline that has passed: it wakes a blocked read.
var aLongTimeAgo = time.Unix(1, 0)

// RoundTrip implements http.RoundTripper.
func (t *plainTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	addr, ok := t.plainAddr(req)
	if !ok {
		return t.fallback.RoundTrip(req)
	}
	for {
		pc, reused, err := t.get(req.Context(), addr)
		if err != nil {
			return nil, err
		}
		resp, err := t.exchange(pc, req, reused)
		if err == nil {
			return resp, nil
		}
		_ = pc.conn.Close()
		// A kept connection the server closed: the next kept one, or a new
		// one once none is left (each try uses one up).
		if !reused || !errors.Is(err, errStaleConn) || req.Context().Err() != nil {
			return nil, err
		}
	}
}

// plainAddr is the host:port a request this transport answers goes to;
// false for one it leaves to the fallback.
func (t *plainTransport) plainAddr(req *http.Request) (string, bool) {
	if req.URL.Scheme != "http" || req.URL.Host == "" ||
		(req.Method != http.MethodGet && req.Method != http.MethodHead) ||
		(req.Body != nil && req.Body != http.NoBody) {
		return "", false
	}
	if t.proxy != nil {
		if u, err := t.proxy(req); err != nil || u != nil {
			return "", false
		}
	}
	port := req.URL.Port()
	if port == "" {
		port = "80"
	}
	return net.JoinHostPort(req.URL.Hostname(), port), true
}

// get takes a kept connection to addr (reused) or dials a new one.
func (t *plainTransport) get(ctx context.Context, addr string) (pc *plainConn, reused bool, err error) {
	now := time.Now()
	t.mu.Lock()
	for l := t.idle[addr]; len(l) > 0; l = t.idle[addr] {
		pc = l[len(l)-1]
		t.idle[addr] = l[:len(l)-1]
		if t.idleWait <= 0 || now.Sub(pc.since) < t.idleWait {
			t.mu.Unlock()
			return pc, true, nil
		}
		_ = pc.conn.Close()
	}
	t.mu.Unlock()
	conn, err := t.dial(ctx, "tcp", addr)
	if err != nil {
		return nil, false, err
	}
	return &plainConn{conn: conn, br: bufio.NewReader(conn), bw: bufio.NewWriter(conn), addr: addr}, false, nil
}

// put keeps pc for the next request to its host, or closes it.
func (t *plainTransport) put(pc *plainConn) {
	pc.since = time.Now()
	t.mu.Lock()
	if t.idle == nil {
		t.idle = make(map[string][]*plainConn)
	}
	if l := t.idle[pc.addr]; len(l) < t.maxIdle {
		t.idle[pc.addr] = append(l, pc)
		pc = nil
	}
	t.mu.Unlock()
	if pc != nil {
		_ = pc.conn.Close()
	}
}

// CloseIdleConnections closes the kept connections, the fallback's too.
func (t *plainTransport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = nil
	t.mu.Unlock()
	for _, l := range idle {
		for _, pc := range l {
			_ = pc.conn.Close()
		}
	}
	if c, ok := t.fallback.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// errStaleConn: a kept connection failed before any byte of the response
// came back (the server closed it while it was idle).
var errStaleConn = errors.New("kept connection closed by the server")

// exchange writes req on pc and reads the response head. The body, when
// there is one, ends the exchange (plainBody); pc is the caller's to close
// on an error.
func (t *plainTransport) exchange(pc *plainConn, req *http.Request, reused bool) (*http.Response, error) {
	ctx := req.Context()
	stop := context.AfterFunc(ctx, func() { _ = pc.conn.SetDeadline(aLongTimeAgo) })
	if t.headerWait > 0 {
		_ = pc.conn.SetDeadline(time.Now().Add(t.headerWait))
	}
	resp, err := t.readHead(pc, req, reused)
	if err == nil && t.headerWait > 0 {
		_ = pc.conn.SetDeadline(time.Time{})
	}
	if ctx.Err() != nil { // canceled: its deadline may have been cleared just above
		stop()
		return nil, cancelErr(ctx, err)
	}
	if err != nil {
		stop()
		return nil, err
	}
	b := &plainBody{ctx: ctx, t: t, pc: pc, rc: resp.Body, stop: stop, close: resp.Close}
	if resp.Body == http.NoBody { // HEAD, 204, 304, an empty body
		b.finish(true)
		return resp, nil
	}
	resp.Body = b
	return resp, nil
}

// readHead writes req and reads its response head, 1xx answers skipped.
// On a reused connection, a failure before the first byte of the response
// wraps errStaleConn.
func (t *plainTransport) readHead(pc *plainConn, req *http.Request, reused bool) (*http.Response, error) {
	werr := req.Write(pc.bw)
	if werr == nil {
		werr = pc.bw.Flush()
	}
	if _, err := pc.br.Peek(1); err != nil {
		if werr != nil {
			err = werr
		}
		if reused && !isTimeout(err) {
			err = errors.Join(errStaleConn, err)
		}
		return nil, err
	}
	for {
		resp, err := http.ReadResponse(pc.br, req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			return resp, nil
		}
	}
}

// cancelErr is the error of an exchange that ctx ended.
func cancelErr(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil {
		return cause
	}
	return err
}

// isTimeout reports a deadline that passed.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// plainBody is a response body of plainTransport: read to its end, it gives
// its connection back; closed before, it closes it.
type plainBody struct {
	ctx   context.Context //nolint:containedctx // the request's, for its error
	t     *plainTransport
	pc    *plainConn
	rc    io.ReadCloser
	stop  func() bool // the context's AfterFunc
	close bool        // the response said Connection: close
	done  bool
}

func (b *plainBody) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	n, err := b.rc.Read(p)
	switch {
	case err == io.EOF:
		b.finish(true)
	case err != nil:
		if b.ctx.Err() != nil {
			err = cancelErr(b.ctx, err)
		}
		b.finish(false)
	}
	return n, err
}

func (b *plainBody) Close() error {
	b.finish(false)
	return nil
}

// finish ends the exchange once: the connection goes back when the body
// was read to its end, nothing followed it and the context did not end.
func (b *plainBody) finish(whole bool) {
	if b.done {
		return
	}
	b.done = true
	live := b.stop()
	if whole && live && !b.close && b.pc.br.Buffered() == 0 {
		b.t.put(b.pc)
		return
	}
	_ = b.pc.conn.Close()
}
