package gateway

import (
	"bufio"
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
	srv, done := startServe(e, ln)
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

// startServe runs e's gateway with Gateway.Serve on ln, in the server
// cmd/flocon builds (its timeouts, ConnContext); Serve's result arrives on
// the channel.
func startServe(e *env, ln net.Listener) (*http.Server, <-chan error) {
	srv := &http.Server{Handler: e.g, ReadHeaderTimeout: ServerReadHeaderTimeout,
		ReadTimeout: ServerReadTimeout, IdleTimeout: ServerIdleTimeout, ConnContext: ConnContext}
	done := make(chan error, 1)
	go func() { done <- e.g.Serve(srv, ln) }()
	return srv, done
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

// TestKeepAliveManyConnections: connections going back and forth between
// the two paths at once all get their answers, and a shutdown in the
// middle of it ends Serve with every connection closed (goleak checks
// that nothing is left running).
func TestKeepAliveManyConnections(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	stored := newTestPkg(t, "stored", "1.0-1", 20000, []byte("sig"))
	e.publishStored(t, stored)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, done := startServe(e, ln)
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
