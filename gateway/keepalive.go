package gateway

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/flocon/flocon/store"
	"github.com/flocon/flocon/store/repodb"
	"github.com/flocon/flocon/verify"
)

// The keep-alive path. pacman fetches hundreds of packages over one
// keep-alive connection, and for each net/http starts a goroutine reading
// the connection in the background, then wakes it with a past deadline when
// the response ends: thread wake-ups that cost more than the gateway's own
// work for a small stored package (ARCHITECTURE.md, "Where the time goes").
//
// So a connection whose request is a plain GET of a package or signature the
// store holds, verified, is hijacked once and served by a loop of its own:
// it peeks at each request's head without consuming it, answers the plain
// GETs of stored files itself (the same bytes, headers, log line and
// metrics as net/http's path, under the same deadlines), and hands the
// connection, with every byte it has not consumed, back to the http.Server
// through an in-process listener for anything else: HEAD, Range,
// conditional or unknown headers, a body, Expect, Connection: close,
// HTTP/1.0, db files, files not stored, unknown or malformed requests.
// net/http then answers those as it always did (a malformed one gets its
// 400), and may hand the connection back here with the next plain GET.

// ShutdownGrace bounds how long Serve lets responses of the keep-alive
// path finish once its server shuts down; then their connections are cut.
const ShutdownGrace = 10 * time.Second

var (
	errServing = errors.New("gateway: Serve is already running")
	errClosing = errors.New("gateway: shutting down")
	errNotOurs = errors.New("gateway: request head longer than the keep-alive path reads")
)

// Serve serves srv, whose Handler is g, on ln until srv is shut down or
// closed, and returns what srv.Serve(ln) returned (http.ErrServerClosed
// after a shutdown). Keep-alive connections are served as described above;
// Serve returns once they are done too, at most ShutdownGrace after srv
// stopped accepting. A Gateway served otherwise (srv.Serve, httptest)
// answers every request through net/http.
func (g *Gateway) Serve(srv *http.Server, ln net.Listener) error {
	ka := newKeepAlive(srv, ln.Addr())
	if !g.ka.CompareAndSwap(nil, ka) {
		return errServing
	}
	defer g.ka.CompareAndSwap(ka, nil)
	handed := make(chan error, 1)
	go func() { handed <- srv.Serve(ka.hl) }()
	err := srv.Serve(ln)
	_ = ka.hl.Close()
	<-handed
	ka.drain(ShutdownGrace)
	return err
}

// keepAlive is the connections the gateway serves itself, for one Serve.
type keepAlive struct {
	srv        *http.Server
	hl         *handoffListener
	idleWait   time.Duration // for a request's first byte (0: forever)
	headerWait time.Duration // for the rest of its head (0: forever)

	mu      sync.Mutex
	conns   map[*fastConn]struct{}
	closing bool
	wg      sync.WaitGroup
}

func newKeepAlive(srv *http.Server, addr net.Addr) *keepAlive {
	ka := &keepAlive{srv: srv, conns: make(map[*fastConn]struct{}),
		hl: &handoffListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}}
	// net/http's own fallbacks: ReadTimeout when the others are zero.
	ka.idleWait, ka.headerWait = srv.IdleTimeout, srv.ReadHeaderTimeout
	if ka.idleWait <= 0 {
		ka.idleWait = srv.ReadTimeout
	}
	if ka.headerWait <= 0 {
		ka.headerWait = srv.ReadTimeout
	}
	return ka
}

// add registers c before its connection is hijacked; false once draining.
func (ka *keepAlive) add(c *fastConn) bool {
	ka.mu.Lock()
	defer ka.mu.Unlock()
	if ka.closing {
		return false
	}
	ka.conns[c] = struct{}{}
	ka.wg.Add(1)
	return true
}

func (ka *keepAlive) remove(c *fastConn) {
	ka.mu.Lock()
	delete(ka.conns, c)
	ka.mu.Unlock()
	ka.wg.Done()
}

// drain wakes the idle connections, which then close, lets the others
// finish their response for at most grace, then cuts them.
func (ka *keepAlive) drain(grace time.Duration) {
	ka.mu.Lock()
	ka.closing = true
	for c := range ka.conns {
		if c.idle {
			_ = c.conn.SetReadDeadline(time.Unix(1, 0))
		}
	}
	ka.mu.Unlock()
	done := make(chan struct{})
	go func() { ka.wg.Wait(); close(done) }()
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-done:
		return
	case <-timer.C:
	}
	ka.mu.Lock()
	for c := range ka.conns {
		if c.conn != nil {
			_ = c.conn.Close()
		}
	}
	ka.mu.Unlock()
	<-done
}

// takeKeepAlive serves r on the keep-alive path when it is a plain GET of a
// stored file on a connection of Serve's server: it hijacks the connection
// and reports true. Otherwise it does nothing and reports false.
func (g *Gateway) takeKeepAlive(w http.ResponseWriter, r *http.Request) bool {
	ka := g.ka.Load()
	if ka == nil || r.Context().Value(http.ServerContextKey) != ka.srv || !plainRequest(r) {
		return false
	}
	f, ok := g.fastFile(r.URL.Path)
	if !ok {
		return false
	}
	c := &fastConn{g: g, ka: ka}
	if !ka.add(c) {
		f.close()
		return false
	}
	rwc, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		ka.remove(c)
		f.close()
		return false
	}
	c.attach(rwc, brw.Reader)
	go c.run(f)
	return true
}

// plainRequest: r (as net/http parsed it) is a GET the keep-alive path may
// answer, judged as parseHead judges a raw head.
func plainRequest(r *http.Request) bool {
	if r.Method != http.MethodGet || r.ProtoMajor != 1 || r.ProtoMinor != 1 || r.Close ||
		r.ContentLength != 0 || len(r.TransferEncoding) > 0 || len(r.Trailer) > 0 ||
		r.RequestURI != r.URL.Path || !plainPath([]byte(r.RequestURI)) || !validHost([]byte(r.Host)) {
		return false
	}
	for name, values := range r.Header {
		for _, v := range values {
			if !plainHeader([]byte(name), []byte(v)) {
				return false
			}
		}
	}
	return true
}

// plainHeaders are the request headers that change nothing in the answer
// to a GET of a stored file (besides Host, and Connection: keep-alive).
var plainHeaders = [][]byte{[]byte("Accept"), []byte("Accept-Encoding"), []byte("Accept-Language"),
	[]byte("Cache-Control"), []byte("Pragma"), []byte("User-Agent")}

func plainHeader(name, value []byte) bool {
	if !plainValue(value) {
		return false
	}
	if bytes.EqualFold(name, []byte("Connection")) {
		return bytes.EqualFold(value, []byte("keep-alive"))
	}
	for _, h := range plainHeaders {
		if bytes.EqualFold(name, h) {
			return true
		}
	}
	return false
}

// plainValue: visible ASCII, with spaces and tabs inside.
func plainValue(v []byte) bool {
	for _, c := range v {
		if (c < 0x20 && c != '\t') || c >= 0x7f {
			return false
		}
	}
	return true
}

func validHost(h []byte) bool {
	if len(h) == 0 {
		return false
	}
	for _, c := range h {
		if !isAlnumByte(c) && bytes.IndexByte([]byte(".-_:[]"), c) < 0 {
			return false
		}
	}
	return true
}

// plainPath: an absolute path with only the characters of repo, arch and
// file names, so its escaped and unescaped forms are the same bytes (no
// %, no query).
func plainPath(p []byte) bool {
	if len(p) == 0 || p[0] != '/' {
		return false
	}
	for _, c := range p {
		if !isAlnumByte(c) && bytes.IndexByte([]byte("/._+-@:"), c) < 0 {
			return false
		}
	}
	return true
}

func isAlnumByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// headEnd is the length of the request head at the start of buf (up to and
// including its blank line, bare LFs counted as net/http counts them), or 0
// while it is incomplete.
func headEnd(buf []byte) int {
	for i := 0; ; {
		j := bytes.IndexByte(buf[i:], '\n')
		if j < 0 {
			return 0
		}
		k := i + j + 1
		switch {
		case k < len(buf) && buf[k] == '\n':
			return k + 1
		case k+1 < len(buf) && buf[k] == '\r' && buf[k+1] == '\n':
			return k + 2
		}
		i = k
	}
}

// parseHead returns the path of a complete request head when it is a
// plain GET (see plainRequest), strictly formed: CRLF line ends, one Host.
func parseHead(head []byte) (string, bool) {
	line, rest, ok := cutLine(head)
	path, okGET := bytes.CutPrefix(line, []byte("GET "))
	path, okProto := bytes.CutSuffix(path, []byte(" HTTP/1.1"))
	if !ok || !okGET || !okProto || !plainPath(path) {
		return "", false
	}
	hosts := 0
	for {
		if line, rest, ok = cutLine(rest); !ok {
			return "", false
		}
		if len(line) == 0 {
			return string(path), hosts == 1 && len(rest) == 0
		}
		name, value, found := bytes.Cut(line, []byte(":"))
		value = bytes.Trim(value, " \t")
		switch {
		case !found:
			return "", false
		case bytes.EqualFold(name, []byte("Host")):
			hosts++
			if !validHost(value) {
				return "", false
			}
		case !plainHeader(name, value):
			return "", false
		}
	}
}

// cutLine cuts a CRLF-ended line holding no other CR or LF.
func cutLine(b []byte) (line, rest []byte, ok bool) {
	i := bytes.Index(b, []byte("\r\n"))
	if i < 0 || bytes.ContainsAny(b[:i], "\r\n") {
		return nil, nil, false
	}
	return b[:i], b[i+2:], true
}

// fastFile is a verified stored file the keep-alive path answers with.
type fastFile struct {
	t       target
	e       repodb.Entry
	blob    *store.Blob // a package; nil for a signature
	sig     []byte      // a signature
	size    int64
	modtime time.Time
	start   time.Time
}

// fastFile looks path up: a package whose verified blob is stored and
// proven to be that package, or a signature the db entry or the store
// holds. Anything else (db files, files not stored, errors) is net/http's.
func (g *Gateway) fastFile(path string) (*fastFile, bool) {
	start := time.Now()
	if checkEscapedPath(path) != nil {
		return nil, false
	}
	segs := bytes.Split([]byte(path), []byte("/"))
	if len(segs) != 5 || string(segs[2]) != "os" {
		return nil, false
	}
	t, err := g.parseTarget(string(segs[1]), string(segs[3]), string(segs[4]))
	if err != nil || t.kind == kindDB {
		return nil, false
	}
	e, err := g.cfg.Store.Entry(t.repo.Name, t.arch, t.pkg)
	if err != nil {
		return nil, false
	}
	c, err := verify.CIDFromHex(e.SHA256)
	if err != nil {
		return nil, false
	}
	f := &fastFile{t: t, e: e, start: start}
	if t.kind == kindPkgSig {
		f.sig = e.PGPSig
		if len(f.sig) == 0 {
			if f.sig, err = g.cfg.Store.Sig(c); err != nil {
				return nil, false
			}
		}
		f.size, f.modtime = int64(len(f.sig)), modTime(e, time.Time{})
		return f, true
	}
	b, info, err := g.cfg.Store.OpenKept(c)
	if err != nil {
		return nil, false
	}
	if checkIdentity(info, t.pkg) != nil {
		_ = b.Close()
		return nil, false
	}
	f.blob, f.size, f.modtime = b, info.Size, modTime(e, info.Added)
	return f, true
}

func (f *fastFile) close() {
	if f.blob != nil {
		_ = f.blob.Close() // kept open for the blob's next request
	}
}

// appendHeader appends the response header net/http's path writes for f:
// http.ServeContent's headers sorted by name, then Date.
func appendHeader(b []byte, f *fastFile, now time.Time) []byte {
	b = append(b, "HTTP/1.1 200 OK\r\nAccept-Ranges: bytes\r\nContent-Length: "...)
	b = strconv.AppendInt(b, f.size, 10)
	b = append(b, "\r\nContent-Type: application/octet-stream\r\n"...)
	if f.t.kind == kindPkg {
		b = append(b, "Etag: "...)
		b = append(b, etagOf(f.e)...)
		b = append(b, "\r\n"...)
	}
	if !f.modtime.IsZero() && !f.modtime.Equal(time.Unix(0, 0)) {
		b = append(b, "Last-Modified: "...)
		b = f.modtime.UTC().AppendFormat(b, http.TimeFormat)
		b = append(b, "\r\n"...)
	}
	b = append(b, "Date: "...)
	b = now.UTC().AppendFormat(b, http.TimeFormat)
	return append(b, "\r\n\r\n"...)
}

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

// handoffListener hands connections back to the http.Server: Serve runs
// srv.Serve on it beside the real listener.
type handoffListener struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return l.addr }

// handBack gives c to the server; false once it no longer accepts.
func (l *handoffListener) handBack(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.done:
		return false
	}
}

// handoffConn is a connection handed back with the bytes the keep-alive
// path peeked at and did not consume: they are read first. It keeps what
// net/http and the gateway use of the connection underneath: sendfile
// (ReadFrom), CloseWrite and the socket (ConnContext's cork).
type handoffConn struct {
	net.Conn
	pending []byte
}

func (c *handoffConn) Read(b []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(b, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

func (c *handoffConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

func (c *handoffConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func (c *handoffConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.ErrUnsupported
	}
	return sc.SyscallConn()
}
