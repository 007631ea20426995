package gateway

import (
	"errors"
	"net"
	"net/http"
	"sync"
	"time"
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
//
// The path's parts, a file each: this one runs it beside srv.Serve (Serve,
// the drain on shutdown) and takes connections from net/http
// (takeKeepAlive); keepalive_head.go tells which requests it answers;
// keepalive_file.go looks up the stored file and writes its header;
// keepalive_conn.go is a hijacked connection's loop (read a head, answer,
// under the deadlines); keepalive_handoff.go hands a connection back to
// net/http.

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
