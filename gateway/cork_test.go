package gateway

import (
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
)

// corkState reads TCP_CORK of the request's connection (-1: unreachable).
func corkState(r *http.Request) int {
	c := corkerOf(r.Context())
	if c.raw == nil {
		return -1
	}
	v := -1
	_ = c.raw.Control(func(fd uintptr) {
		v, _ = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_CORK)
	})
	return v
}

// A stored blob is sent corked, and the connection is uncorked after it:
// a response left corked would wait up to 200 ms for the kernel to send
// its last segment, and so would every later response on the connection.
func TestStoredBlobSentCorked(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	pkg := newTestPkg(t, "corked", "1.0-1", 3000, nil)
	e.publishStored(t, pkg)
	during, after := make(chan int, 4), make(chan int, 4)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.g.ServeHTTP(&corkProbe{ResponseWriter: w, r: r, seen: during}, r)
		after <- corkState(r)
	}))
	srv.Config.ConnContext = ConnContext
	srv.Start()
	t.Cleanup(srv.Close)
	for range 2 { // the second on the same connection
		resp, err := srv.Client().Get(srv.URL + "/core/os/x86_64/" + pkg.filename)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if d, a := <-during, <-after; d != 1 || a != 0 {
			t.Fatalf("TCP_CORK while the header went out %d, after the response %d; want 1, 0", d, a)
		}
	}
}

// corkProbe records TCP_CORK when the header is flushed (the first flush).
type corkProbe struct {
	http.ResponseWriter
	r       *http.Request
	seen    chan int
	flushed bool
}

func (p *corkProbe) FlushError() error {
	if !p.flushed {
		p.flushed = true
		p.seen <- corkState(p.r)
	}
	return http.NewResponseController(p.ResponseWriter).Flush()
}

func (p *corkProbe) Unwrap() http.ResponseWriter { return p.ResponseWriter }
