package gateway

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// serveKeepAlive serves e's gateway as cmd/flocon does (Gateway.Serve on a
// TCP listener, the server's timeouts) and returns its address.
func serveKeepAlive(t *testing.T, e *env) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: e.g, ReadHeaderTimeout: ServerReadHeaderTimeout,
		ReadTimeout: ServerReadTimeout, IdleTimeout: ServerIdleTimeout, ConnContext: ConnContext}
	done := make(chan error, 1)
	go func() { done <- e.g.Serve(srv, ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve returned %v", err)
		}
	})
	return ln.Addr().String()
}

// rawClient speaks HTTP/1.1 over one connection, byte for byte.
type rawClient struct {
	t    testing.TB
	conn net.Conn
	br   *bufio.Reader
}

func dialRaw(t testing.TB, addr string) *rawClient {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &rawClient{t: t, conn: conn, br: bufio.NewReader(conn)}
}

func (c *rawClient) send(reqs ...string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, strings.Join(reqs, "")); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// rawResp is a response as it came: its head without the Date line.
type rawResp struct {
	head   string
	status int
	hdr    http.Header
	body   []byte
}

// read reads one response to a request of method; a response without
// Content-Length is read to the connection's end.
func (c *rawClient) read(method string) rawResp {
	c.t.Helper()
	tp := textproto.NewReader(c.br)
	line, err := tp.ReadLine()
	if err != nil {
		c.t.Fatalf("read status line: %v", err)
	}
	var r rawResp
	if r.status, err = strconv.Atoi(strings.Fields(line + " x")[1]); err != nil {
		c.t.Fatalf("status line %q", line)
	}
	mh, err := tp.ReadMIMEHeader()
	if err != nil {
		c.t.Fatalf("read header: %v", err)
	}
	r.hdr = http.Header(mh)
	r.head = line + "\n" + headWithoutDate(r.hdr)
	switch {
	case method == http.MethodHead || r.status == http.StatusNotModified:
	case r.hdr.Get("Content-Length") != "":
		n, _ := strconv.Atoi(r.hdr.Get("Content-Length"))
		r.body = make([]byte, n)
		if _, err := io.ReadFull(c.br, r.body); err != nil {
			c.t.Fatalf("read body: %v", err)
		}
	default:
		r.body, _ = io.ReadAll(c.br)
	}
	return r
}

func headWithoutDate(h http.Header) string {
	var b strings.Builder
	h = h.Clone()
	h.Del("Date")
	_ = h.Write(&b)
	return b.String()
}

// closed reports whether the server closed the connection with nothing
// more sent.
func (c *rawClient) closed() bool { return c.closedWithin(10 * time.Second) }

func (c *rawClient) closedWithin(d time.Duration) bool {
	_ = c.conn.SetReadDeadline(time.Now().Add(d))
	n, err := c.br.Read(make([]byte, 1))
	var ne net.Error
	return n == 0 && err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

func plainGET(path string) string {
	return "GET " + path + " HTTP/1.1\r\nHost: flocon\r\nUser-Agent: pacman/7.0.0 (Linux x86_64) libalpm/15.0.0\r\nAccept: */*\r\n\r\n"
}

// viaNetHTTP is the same GET with a header the keep-alive path does not
// know, so net/http answers it.
func viaNetHTTP(path string) string {
	return strings.Replace(plainGET(path), "\r\n\r\n", "\r\nX-Test: net/http\r\n\r\n", 1)
}

// TestKeepAliveAnswersAsNetHTTP: a plain GET of a stored package or
// signature is answered by the keep-alive path with the bytes and headers
// net/http's path gives the same request (but for Date), on one connection
// going back and forth between the two; both are logged and counted.
func TestKeepAliveAnswersAsNetHTTP(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	small := newTestPkg(t, "small", "1.0-1", 5000, []byte("a detached signature"))
	big := newTestPkg(t, "big", "2:1.0-1", 3*writeChunk+17, nil) // several sendfile chunks
	e.publish(t, dbTime, small, big)
	e.sync(t)
	storeBlob(t, e.st, small, nil)
	storeBlob(t, e.st, big, []byte("a signature stored with the blob"))
	c := dialRaw(t, serveKeepAlive(t, e))

	paths := []string{small.filename, small.filename + ".sig", big.filename, big.filename + ".sig"}
	hits := counterValue(t, e.g, outcomeHit)
	for round := range 2 { // the first plain GET is hijacked, the next ones peeked
		for _, p := range paths {
			p = "/core/os/x86_64/" + p
			before := e.g.fastServed.Load()
			c.send(viaNetHTTP(p))
			want := c.read(http.MethodGet)
			if got := e.g.fastServed.Load(); got != before {
				t.Fatalf("round %d %s: the keep-alive path answered a request with an unknown header", round, p)
			}
			c.send(plainGET(p))
			got := c.read(http.MethodGet)
			if n := e.g.fastServed.Load(); n != before+1 {
				t.Fatalf("round %d %s: the keep-alive path did not answer the plain GET", round, p)
			}
			if want.status != http.StatusOK || got.head != want.head || !bytes.Equal(got.body, want.body) {
				t.Fatalf("round %d %s:\nkeep-alive %s(%d bytes)\nnet/http   %s(%d bytes)",
					round, p, got.head, len(got.body), want.head, len(want.body))
			}
			if _, err := time.Parse(http.TimeFormat, got.hdr.Get("Date")); err != nil {
				t.Fatalf("%s: Date %q: %v", p, got.hdr.Get("Date"), err)
			}
		}
	}
	c.send(plainGET("/healthz")) // net/http's, once the last hit is counted
	if r := c.read(http.MethodGet); r.status != http.StatusOK {
		t.Fatalf("healthz: %d", r.status)
	}
	if got := counterValue(t, e.g, outcomeHit) - hits; got != float64(4*len(paths)) {
		t.Fatalf("hits counted: %v, want %d", got, 4*len(paths))
	}
}

// TestKeepAliveHandsBackTheRest: after the keep-alive path answered,
// every other kind of request on the same connection is net/http's and
// still gets its answer; the connection then comes back to the keep-alive
// path with the next plain GET.
func TestKeepAliveHandsBackTheRest(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	stored := newTestPkg(t, "stored", "1.0-1", 5000, []byte("sig"))
	unsigned := newTestPkg(t, "unsigned", "1.0-1", 3000, nil)
	cold := newTestPkg(t, "cold", "1.0-1", 4000, nil)
	e.publish(t, dbTime, stored, unsigned, cold)
	e.sync(t)
	storeBlob(t, e.st, stored, nil)
	storeBlob(t, e.st, unsigned, nil)
	c := dialRaw(t, serveKeepAlive(t, e))
	dir := "/core/os/x86_64/"
	pkg := dir + stored.filename
	etag := `"` + stored.sha256() + `"`

	cases := []struct {
		name, req, method string
		status            int
		body              []byte // nil: not checked
		// net/http reads it, then hands the connection back to the
		// keep-alive path, which answers it
		hijacked bool
	}{
		{"HEAD", "HEAD " + pkg + " HTTP/1.1\r\nHost: flocon\r\n\r\n", http.MethodHead, http.StatusOK, nil, false},
		{"Range", "GET " + pkg + " HTTP/1.1\r\nHost: flocon\r\nRange: bytes=10-19\r\n\r\n", "", http.StatusPartialContent, stored.data[10:20], false},
		{"If-None-Match", "GET " + pkg + " HTTP/1.1\r\nHost: flocon\r\nIf-None-Match: " + etag + "\r\n\r\n", "", http.StatusNotModified, nil, false},
		{"unknown package", plainGET(dir + "absent-1.0-1-x86_64.pkg.tar.zst"), "", http.StatusNotFound, nil, false},
		{"unknown repo", plainGET("/nowhere/os/x86_64/" + stored.filename), "", http.StatusNotFound, nil, false},
		{"malformed arch", plainGET("/core/os/X86/" + stored.filename), "", http.StatusBadRequest, nil, false},
		{"escaped path", plainGET(dir + "%2e%2e"), "", http.StatusBadRequest, nil, false},
		{"query", plainGET(pkg + "?x=1"), "", http.StatusOK, stored.data, false},
		{"db", plainGET(dir + "core.db"), "", http.StatusOK, nil, false},
		{"no sig anywhere", plainGET(dir + unsigned.filename + ".sig"), "", http.StatusNotFound, nil, false},
		{"healthz", plainGET("/healthz"), "", http.StatusOK, []byte("ok\n"), false},
		{"POST with a body", "POST " + pkg + " HTTP/1.1\r\nHost: flocon\r\nContent-Length: 5\r\n\r\nhello", "", http.StatusMethodNotAllowed, nil, false},
		{"Expect", "GET " + pkg + " HTTP/1.1\r\nHost: flocon\r\nExpect: 100-continue\r\n\r\n", "", http.StatusOK, stored.data, false},
		{"bare LF", "GET " + pkg + " HTTP/1.1\nHost: flocon\n\n", "", http.StatusOK, stored.data, true},
		{"long head", strings.Replace(plainGET(pkg), "\r\n\r\n", "\r\nUser-Agent: "+strings.Repeat("x", 5000)+"\r\n\r\n", 1), "", http.StatusOK, stored.data, true},
	}
	for _, tc := range cases {
		prev := e.g.fastServed.Load()
		c.send(plainGET(pkg))
		r := c.read(http.MethodGet)
		before := e.g.fastServed.Load()
		if r.status != http.StatusOK || !bytes.Equal(r.body, stored.data) || before != prev+1 {
			t.Fatalf("before %s: plain GET status %d, %d bytes, keep-alive answers %d", tc.name, r.status, len(r.body), before-prev)
		}
		c.send(tc.req)
		r = c.read(cmp.Or(tc.method, http.MethodGet))
		if r.status != tc.status || (tc.body != nil && !bytes.Equal(r.body, tc.body)) {
			t.Fatalf("%s: status %d body %.40q, want %d", tc.name, r.status, r.body, tc.status)
		}
		if hijacked := e.g.fastServed.Load() != before; hijacked != tc.hijacked {
			t.Fatalf("%s: answered by the keep-alive path: %v, want %v", tc.name, hijacked, tc.hijacked)
		}
	}

	// A package not stored: net/http starts its download and streams it.
	c.send(plainGET(pkg), plainGET(dir+cold.filename))
	if r := c.read(http.MethodGet); r.status != http.StatusOK {
		t.Fatalf("plain GET: %d", r.status)
	}
	before := e.g.fastServed.Load()
	p := e.awaitStart(t)
	if _, err := p.Write(cold.data); err != nil {
		t.Fatal(err)
	}
	commit(t, p, cold, nil)
	if r := c.read(http.MethodGet); r.status != http.StatusOK || !bytes.Equal(r.body, cold.data) || e.g.fastServed.Load() != before {
		t.Fatalf("cold package: status %d, %d bytes", r.status, len(r.body))
	}
	// Now stored: the keep-alive path's.
	c.send(plainGET(dir + cold.filename))
	if r := c.read(http.MethodGet); !bytes.Equal(r.body, cold.data) || e.g.fastServed.Load() != before+1 {
		t.Fatalf("the committed package: status %d, not from the keep-alive path", r.status)
	}
}

// TestKeepAliveClosingRequests: the requests after which net/http closes
// the connection (Connection: close, HTTP/1.0, a malformed request, which
// gets a 400) still do so after the keep-alive path answered on it.
func TestKeepAliveClosingRequests(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	stored := newTestPkg(t, "stored", "1.0-1", 5000, nil)
	e.publish(t, dbTime, stored)
	e.sync(t)
	storeBlob(t, e.st, stored, nil)
	addr := serveKeepAlive(t, e)
	pkg := "/core/os/x86_64/" + stored.filename

	cases := []struct {
		name, req string
		status    int
	}{
		{"Connection: close", "GET " + pkg + " HTTP/1.1\r\nHost: flocon\r\nConnection: close\r\n\r\n", http.StatusOK},
		{"HTTP/1.0", "GET " + pkg + " HTTP/1.0\r\nHost: flocon\r\n\r\n", http.StatusOK},
		{"malformed", "GET " + pkg + " HTTP/1.1\r\nHost: flocon\r\nno colon here\r\n\r\n", http.StatusBadRequest},
		{"garbage", "\x00\x01 nonsense\r\n\r\n", http.StatusBadRequest},
		{"two Hosts", "GET " + pkg + " HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", http.StatusBadRequest},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, addr)
			before := e.g.fastServed.Load()
			c.send(plainGET(pkg))
			if r := c.read(http.MethodGet); r.status != http.StatusOK || e.g.fastServed.Load() == before {
				t.Fatalf("plain GET: status %d, keep-alive answers %d", r.status, e.g.fastServed.Load()-before)
			}
			c.send(tc.req)
			r := c.read(http.MethodGet)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d", r.status, tc.status)
			}
			if tc.status == http.StatusOK && !bytes.Equal(r.body, stored.data) {
				t.Fatalf("body: %d bytes", len(r.body))
			}
			if !c.closed() {
				t.Fatal("the connection stayed open")
			}
		})
	}
}

// TestKeepAlivePipelined: requests sent at once, some for the keep-alive
// path and some for net/http, are answered in order.
func TestKeepAlivePipelined(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	a := newTestPkg(t, "a", "1.0-1", 7000, []byte("sig of a"))
	b := newTestPkg(t, "b", "1.0-1", 9000, nil)
	e.publish(t, dbTime, a, b)
	e.sync(t)
	storeBlob(t, e.st, a, nil)
	storeBlob(t, e.st, b, nil)
	c := dialRaw(t, serveKeepAlive(t, e))
	dir := "/core/os/x86_64/"

	c.send(plainGET(dir+a.filename),
		"HEAD "+dir+b.filename+" HTTP/1.1\r\nHost: flocon\r\n\r\n",
		plainGET(dir+b.filename),
		plainGET(dir+a.filename+".sig"),
		"GET "+dir+a.filename+" HTTP/1.1\r\nHost: flocon\r\nRange: bytes=0-3\r\n\r\n",
		plainGET(dir+"absent-1.0-1-x86_64.pkg.tar.zst"),
		plainGET(dir+b.filename))
	want := []struct {
		method string
		status int
		body   []byte
	}{
		{http.MethodGet, http.StatusOK, a.data},
		{http.MethodHead, http.StatusOK, nil},
		{http.MethodGet, http.StatusOK, b.data},
		{http.MethodGet, http.StatusOK, a.sig},
		{http.MethodGet, http.StatusPartialContent, a.data[:4]},
		{http.MethodGet, http.StatusNotFound, nil},
		{http.MethodGet, http.StatusOK, b.data},
	}
	for i, w := range want {
		r := c.read(w.method)
		if r.status != w.status || (w.body != nil && !bytes.Equal(r.body, w.body)) {
			t.Fatalf("response %d: status %d, %d bytes; want %d, %d bytes", i, r.status, len(r.body), w.status, len(w.body))
		}
	}
	if n := e.g.fastServed.Load(); n < 2 {
		t.Fatalf("the keep-alive path answered %d of the pipelined requests", n)
	}
}

// servePipes serves e's gateway with Gateway.Serve on in-memory
// connections, for a synctest bubble; Serve's result arrives on the channel.
func servePipes(e *env) (*pipeListener, *http.Server, <-chan error) {
	srv := &http.Server{Handler: e.g, ReadHeaderTimeout: ServerReadHeaderTimeout,
		ReadTimeout: ServerReadTimeout, IdleTimeout: ServerIdleTimeout}
	ln := newPipeListener()
	done := make(chan error, 1)
	go func() { done <- e.g.Serve(srv, ln) }()
	return ln, srv, done
}

// watchedConn is a server's end of a connection that tells when it is
// closed.
type watchedConn struct {
	net.Conn
	once   sync.Once
	closed chan struct{}
}

func (c *watchedConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// dialWatched connects to ln; the channel closes when the server closes
// the connection.
func dialWatched(t *testing.T, ln *pipeListener) (*rawClient, <-chan struct{}) {
	t.Helper()
	client, server := net.Pipe()
	wc := &watchedConn{Conn: server, closed: make(chan struct{})}
	select {
	case ln.conns <- wc:
	case <-t.Context().Done():
		t.Fatal(t.Context().Err())
	}
	t.Cleanup(func() { client.Close() })
	return &rawClient{t: t, conn: client, br: bufio.NewReader(client)}, wc.closed
}

func isClosed(ch <-chan struct{}) bool {
	synctest.Wait()
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// TestKeepAliveDeadlines: on the keep-alive path a client is held to the
// server's deadlines: IdleTimeout between requests, ReadHeaderTimeout for
// a head sent slowly, WriteStall for a response it does not read; and a
// shutdown closes an idle connection at once.
func TestKeepAliveDeadlines(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	stored := newTestPkg(t, "stored", "1.0-1", 5000, nil)
	e.publish(t, dbTime, stored)
	e.sync(t)
	storeBlob(t, e.st, stored, nil)
	pkg := "/core/os/x86_64/" + stored.filename

	cases := []struct {
		name  string
		then  string        // sent after a plain GET was answered
		after time.Duration // the server closes the connection this long after, not before
	}{
		{"idle", "", ServerIdleTimeout},
		{"slow head", "GET " + pkg + " HTTP/1.1\r\nHost: fl", ServerReadHeaderTimeout},
		{"never reads", plainGET(pkg), DefaultWriteStall},
		{"shutdown", "", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { //nolint:paralleltest // one Serve at a time per Gateway
			synctest.Test(t, func(t *testing.T) {
				ln, srv, done := servePipes(e)
				c, closed := dialWatched(t, ln)
				before := e.g.fastServed.Load()
				c.send(plainGET(pkg))
				if r := c.read(http.MethodGet); r.status != http.StatusOK || e.g.fastServed.Load() == before {
					t.Fatalf("plain GET: status %d, not from the keep-alive path", r.status)
				}
				if tc.then != "" {
					c.send(tc.then)
				}
				if tc.after > 0 {
					time.Sleep(tc.after - time.Second)
					if isClosed(closed) {
						t.Fatal("closed too early")
					}
					time.Sleep(2 * time.Second)
					if !isClosed(closed) {
						t.Fatalf("still open %v after", tc.after+time.Second)
					}
				}
				if err := srv.Shutdown(t.Context()); err != nil {
					t.Fatal(err)
				}
				if !isClosed(closed) {
					t.Fatal("still open after the shutdown")
				}
				if err := <-done; !errors.Is(err, http.ErrServerClosed) {
					t.Fatalf("Serve: %v", err)
				}
			})
		})
	}
}

// FuzzParseHead: a head the keep-alive path takes for a plain GET is one
// net/http reads as the same plain GET (method, version, path, no body,
// nothing that would change the answer), and it ends where net/http's ends.
func FuzzParseHead(f *testing.F) {
	for _, s := range []string{
		plainGET("/core/os/x86_64/a-1.0-1-x86_64.pkg.tar.zst"),
		viaNetHTTP("/core/os/x86_64/a-1.0-1-x86_64.pkg.tar.zst"),
		"GET /core/os/x86_64/a-1:1.0-1-x86_64.pkg.tar.zst HTTP/1.1\r\nHost: [::1]:19433\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.1\r\n",
		"GET /x HTTP/1.1\nHost: a\n\n", "GET /x HTTP/1.1\r\nHost: a\r\n Accept: b\r\n\r\n",
		"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", "GET /x HTTP/1.1\r\nHost:\r\n\r\n",
		"GET /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", "\r\nGET /x HTTP/1.1\r\nHost: a\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n := headEnd(b)
		if n == 0 {
			return
		}
		path, ok := parseHead(b[:n])
		if !ok {
			return
		}
		br := bufio.NewReader(bytes.NewReader(b))
		r, err := http.ReadRequest(br)
		if err != nil {
			t.Fatalf("taken as a plain GET of %q, net/http says %v", path, err)
		}
		if !plainRequest(r) || r.URL.Path != path || r.Host == "" {
			t.Fatalf("taken as a plain GET of %q, net/http reads %s %s %s host %q header %v",
				path, r.Method, r.RequestURI, r.Proto, r.Host, r.Header)
		}
		if read := len(b) - br.Buffered(); len(b) <= br.Size() && read != n {
			t.Fatalf("head of %d bytes, net/http read %d", n, read)
		}
	})
}

// TestKeepAliveManyConnections: connections going back and forth between
// the two paths at once all get their answers, and a shutdown in the
// middle of it ends Serve with every connection closed (goleak checks
// that nothing is left running).
func TestKeepAliveManyConnections(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	stored := newTestPkg(t, "stored", "1.0-1", 20000, []byte("sig"))
	e.publish(t, dbTime, stored)
	e.sync(t)
	storeBlob(t, e.st, stored, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: e.g, ReadHeaderTimeout: ServerReadHeaderTimeout,
		ReadTimeout: ServerReadTimeout, IdleTimeout: ServerIdleTimeout, ConnContext: ConnContext}
	done := make(chan error, 1)
	go func() { done <- e.g.Serve(srv, ln) }()
	pkg := "/core/os/x86_64/" + stored.filename
	head := "HEAD " + pkg + " HTTP/1.1\r\nHost: flocon\r\n\r\n"

	var wg sync.WaitGroup
	answered := make(chan struct{}, 8)
	for range 8 {
		wg.Go(func() {
			conn, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			c := &rawClient{t: t, conn: conn, br: bufio.NewReader(conn)}
			ok := func() bool {
				// even when a read fails the test (and ends this goroutine)
				defer func() { answered <- struct{}{} }()
				for i := range 20 {
					c.send(plainGET(pkg), head, plainGET(pkg+".sig"))
					for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodGet} {
						if r := c.read(m); r.status != http.StatusOK {
							t.Errorf("request %d: status %d", i, r.status)
							return false
						}
					}
				}
				return true
			}()
			// then idle until the shutdown closes the connection
			if _, err := c.br.ReadByte(); ok && err == nil {
				t.Error("the connection got bytes after its answers")
			}
		})
	}
	for range 8 {
		<-answered
	}
	if err := srv.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		t.Fatalf("Serve: %v", err)
	}
	wg.Wait()
	if n := e.g.fastServed.Load(); n < 8*20 {
		t.Fatalf("the keep-alive path answered %d requests", n)
	}
}
