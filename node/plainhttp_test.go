package node

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// scriptedServer answers each request on a raw TCP connection with the
// next of its answers (a whole response, as written), counting the
// connections it accepted; an answer ending in "\x00close" is sent without
// that suffix and its connection closed after it.
type scriptedServer struct {
	ln      net.Listener
	answers chan string
	conns   atomic.Int32
	wg      sync.WaitGroup
}

func newScriptedServer(t *testing.T, answers ...string) *scriptedServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &scriptedServer{ln: ln, answers: make(chan string, len(answers))}
	for _, a := range answers {
		s.answers <- a
	}
	close(s.answers)
	s.wg.Go(s.accept)
	t.Cleanup(func() { _ = ln.Close(); s.wg.Wait() })
	return s
}

func (s *scriptedServer) url(path string) string { return "http://" + s.ln.Addr().String() + path }

func (s *scriptedServer) accept() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.conns.Add(1)
		s.wg.Go(func() { s.serve(c) })
	}
}

func (s *scriptedServer) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		a, ok := <-s.answers
		if !ok {
			return
		}
		a, last := strings.CutSuffix(a, "\x00close")
		if _, err := io.WriteString(c, a); err != nil || last {
			return
		}
	}
}

func testPlainClient() *http.Client {
	return newHTTPClient(10*time.Second, "test")
}

func getBody(t *testing.T, c *http.Client, u string) string {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: body: %v", u, err)
	}
	return string(b)
}

const okHello = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"

func TestPlainTransportConnections(t *testing.T) {
	t.Parallel()
	chunked := "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n"
	tests := []struct {
		name      string
		answers   []string
		wantConns int32
	}{
		{name: "kept for the next request", answers: []string{okHello, okHello, okHello}, wantConns: 1},
		{name: "chunked bodies keep it too", answers: []string{chunked, chunked}, wantConns: 1},
		{name: "closed by the server after an answer: asked again on a new one",
			answers: []string{okHello + "\x00close", okHello}, wantConns: 2},
		{name: "connection: close is honoured",
			answers: []string{"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello", okHello}, wantConns: 2},
		{name: "HTTP/1.0 is not kept", answers: []string{"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello", okHello}, wantConns: 2},
		{name: "1xx answers are skipped",
			answers: []string{"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n" + okHello, okHello}, wantConns: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newScriptedServer(t, tt.answers...)
			c := testPlainClient()
			defer c.CloseIdleConnections()
			for range tt.answers {
				if got := getBody(t, c, s.url("/core/os/x86_64/a.pkg.tar.zst")); got != "hello" {
					t.Fatalf("body %q, want hello", got)
				}
			}
			if got := s.conns.Load(); got != tt.wantConns {
				t.Errorf("%d connections, want %d", got, tt.wantConns)
			}
		})
	}
}

// A restarted server closed every kept connection: each is tried, then a
// new one.
func TestPlainTransportAllKeptClosed(t *testing.T) {
	t.Parallel()
	closing := okHello + "\x00close"
	s := newScriptedServer(t, closing, closing, okHello)
	c := testPlainClient()
	defer c.CloseIdleConnections()
	var bodies []io.ReadCloser
	for range 2 { // two at once: two connections, both kept after
		resp, err := c.Get(s.url("/a"))
		if err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, resp.Body)
	}
	for _, b := range bodies {
		if got, err := io.ReadAll(b); err != nil || string(got) != "hello" {
			t.Fatalf("body %q, %v", got, err)
		}
		b.Close()
	}
	if got := getBody(t, c, s.url("/a")); got != "hello" {
		t.Fatalf("third body %q, want hello", got)
	}
	if got := s.conns.Load(); got != 3 {
		t.Errorf("%d connections, want 3", got)
	}
}

// A body closed before its end takes its connection with it: what is left
// of it would be read as the next response.
func TestPlainTransportBodyClosedEarly(t *testing.T) {
	t.Parallel()
	s := newScriptedServer(t, okHello, okHello)
	c := testPlainClient()
	defer c.CloseIdleConnections()
	resp, err := c.Get(s.url("/a"))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2)
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := getBody(t, c, s.url("/a")); got != "hello" {
		t.Fatalf("second body %q, want hello", got)
	}
	if got := s.conns.Load(); got != 2 {
		t.Errorf("%d connections, want 2", got)
	}
}

// The mirror client runs a plain-http request on the caller's goroutine:
// none of net/http's connection goroutines exist after it.
func TestPlainTransportNoConnectionGoroutines(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "hello")
	}))
	defer srv.Close()
	c := testPlainClient()
	defer c.CloseIdleConnections()
	for range 2 {
		if got := getBody(t, c, srv.URL+"/a"); got != "hello" {
			t.Fatalf("body %q", got)
		}
	}
	var b strings.Builder
	if err := pprof.Lookup("goroutine").WriteTo(&b, 1); err != nil {
		t.Fatal(err)
	}
	for _, loop := range []string{"persistConn).readLoop", "persistConn).writeLoop"} {
		if strings.Contains(b.String(), loop) {
			t.Errorf("a goroutine runs net/http's %s", loop)
		}
	}
}

// A canceled request ends a read of its body that waits on the server.
func TestPlainTransportCancelBody(t *testing.T) {
	t.Parallel()
	s := newScriptedServer(t, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhel") // then nothing
	c := testPlainClient()
	defer c.CloseIdleConnections()
	ctx, cancel := context.WithCancel(t.Context())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.url("/a"), nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 3)
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := resp.Body.Read(buf); !errors.Is(err, context.Canceled) {
		t.Errorf("read after cancel: %v, want context.Canceled", err)
	}
}

// The response head must come within headerWait; the wait is bounded on a
// connection the server never answers.
func TestPlainTransportHeaderWait(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var server net.Conn
		tr := &plainTransport{fallback: http.DefaultTransport, headerWait: 3 * time.Second, maxIdle: 1,
			dial: func(context.Context, string, string) (net.Conn, error) {
				c, s := net.Pipe()
				server = s
				go func() { _, _ = http.ReadRequest(bufio.NewReader(s)) }() // reads, never answers
				return c, nil
			}}
		start := time.Now()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://mirror.test/a", nil)
		_, err := tr.RoundTrip(req)
		if !isTimeout(err) {
			t.Fatalf("RoundTrip: %v, want a timeout", err)
		}
		if waited := time.Since(start); waited != 3*time.Second {
			t.Errorf("gave up after %v, want 3s", waited)
		}
		server.Close()
	})
}

// What the transport does not answer itself goes to net/http's.
func TestPlainTransportFallback(t *testing.T) {
	t.Parallel()
	proxied := func(*http.Request) (*url.URL, error) { return url.Parse("http://proxy.test:3128") }
	tests := []struct {
		name   string
		method string
		url    string
		body   io.Reader
		proxy  func(*http.Request) (*url.URL, error)
		want   bool // answered by the fallback
	}{
		{name: "plain GET", method: http.MethodGet, url: "http://mirror.test/a"},
		{name: "plain HEAD", method: http.MethodHead, url: "http://mirror.test/a"},
		{name: "https", method: http.MethodGet, url: "https://mirror.test/a", want: true},
		{name: "through a proxy", method: http.MethodGet, url: "http://mirror.test/a", proxy: proxied, want: true},
		{name: "with a body", method: http.MethodPost, url: "http://mirror.test/a", body: strings.NewReader("x"), want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			errFallback, errDial := errors.New("fallback"), errors.New("dialed")
			tr := &plainTransport{
				fallback: roundTripFunc(func(*http.Request) (*http.Response, error) { return nil, errFallback }),
				dial:     func(context.Context, string, string) (net.Conn, error) { return nil, errDial },
				proxy:    tt.proxy,
			}
			req, _ := http.NewRequestWithContext(t.Context(), tt.method, tt.url, tt.body)
			_, err := tr.RoundTrip(req)
			if got := errors.Is(err, errFallback); got != tt.want || (!got && !errors.Is(err, errDial)) {
				t.Errorf("RoundTrip: %v; want the fallback: %v", err, tt.want)
			}
		})
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
