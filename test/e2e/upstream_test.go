package e2e

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// FaultKind is a way an upstream mirror misbehaves.
type FaultKind int

// Faults an Upstream can inject (see Fault).
const (
	FaultNone        FaultKind = iota
	Fault500                   // answer 500
	Fault404                   // answer 404 (the file exists nowhere)
	FaultCut                   // send Fault.Bytes bytes of the body, then drop the connection
	FaultSlow                  // send the body in Fault.Chunk pieces, Fault.Delay apart
	FaultCorrupt               // invert one byte in the middle of the file (headers unchanged)
	FaultIgnoreRange           // answer every request with 200 and the whole file, Range or not
	FaultLonger                // serve the file with Fault.Bytes junk bytes appended (Content-Length too)
)

func (k FaultKind) String() string {
	switch k {
	case Fault500:
		return "500"
	case Fault404:
		return "404"
	case FaultCut:
		return "cut"
	case FaultSlow:
		return "slow"
	case FaultCorrupt:
		return "corrupt"
	case FaultIgnoreRange:
		return "ignore-range"
	case FaultLonger:
		return "longer"
	}
	return "none"
}

// Fault is one injected misbehaviour. A dead mirror (closed port) is
// Upstream.Stop or DeadMirror instead.
type Fault struct {
	Kind FaultKind
	// File limits the fault to requests whose base name is File ("" = every
	// request, databases included).
	File  string
	Bytes int64         // FaultCut: body bytes sent before the cut; FaultLonger: bytes added
	Delay time.Duration // FaultSlow: pause before each chunk
	Chunk int           // FaultSlow: chunk size (default 16 KiB)
}

// Upstream is a local mirror serving a directory over HTTP on 127.0.0.1, with
// Range/206, If-Modified-Since/304 and Last-Modified (http.ServeContent), a log
// of every request and fault injection.
type Upstream struct {
	root  string
	addr  string
	netns string // listen in this network namespace ("": the test's own)
	t     testing.TB

	RequestLog // every request, logged on arrival

	mu     sync.Mutex
	faults []Fault
	srv    *http.Server
	served chan struct{} // closed when the current Serve returns
}

// UpstreamOption configures NewUpstream.
type UpstreamOption func(*Upstream)

// WithAddr makes the upstream listen on addr (default 127.0.0.1:0).
func WithAddr(addr string) UpstreamOption { return func(u *Upstream) { u.addr = addr } }

// WithNetns makes the upstream listen in network namespace ns (with
// WithAddr: an address of that namespace).
func WithNetns(ns string) UpstreamOption { return func(u *Upstream) { u.netns = ns } }

// WithFaults starts the upstream with faults already set.
func WithFaults(f ...Fault) UpstreamOption { return func(u *Upstream) { u.faults = f } }

// NewUpstream serves root (e.g. Fixtures.Mirror) until the test ends.
func NewUpstream(t testing.TB, root string, opts ...UpstreamOption) *Upstream {
	t.Helper()
	u := &Upstream{root: root, addr: "127.0.0.1:0", t: t}
	for _, o := range opts {
		o(u)
	}
	u.Start()
	t.Cleanup(u.Stop)
	return u
}

// Start (re)opens the listener on the same address after Stop.
func (u *Upstream) Start() {
	u.t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.srv != nil {
		return
	}
	var l net.Listener
	var err error
	for range 50 { // the port of a stopped upstream may linger briefly
		if l, err = u.listen(); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		u.t.Fatalf("upstream listen %s: %v", u.addr, err)
	}
	u.addr = l.Addr().String()
	u.srv = &http.Server{Handler: http.HandlerFunc(u.serveHTTP), ReadHeaderTimeout: 10 * time.Second}
	u.served = make(chan struct{})
	go func(srv *http.Server, done chan struct{}) {
		defer close(done)
		_ = srv.Serve(l) // returns http.ErrServerClosed on Stop
	}(u.srv, u.served)
}

func (u *Upstream) listen() (net.Listener, error) {
	if u.netns == "" {
		return net.Listen("tcp", u.addr)
	}
	var l net.Listener
	err := inNetns(u.netns, func() error {
		var err error
		l, err = net.Listen("tcp", u.addr)
		return err
	})
	return l, err
}

// Stop closes the listener and every connection: the mirror is dead (its
// port refuses connections) until Start.
func (u *Upstream) Stop() {
	u.mu.Lock()
	srv, done := u.srv, u.served
	u.srv = nil
	u.mu.Unlock()
	if srv == nil {
		return
	}
	_ = srv.Close()
	<-done
}

// URL is the base URL, e.g. http://127.0.0.1:41234.
func (u *Upstream) URL() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return "http://" + u.addr
}

// Mirror is the pacman-style Server template: URL()/$repo/os/$arch.
func (u *Upstream) Mirror() string { return u.URL() + "/$repo/os/$arch" }

// SetFaults replaces the injected faults; the first matching one applies.
func (u *Upstream) SetFaults(f ...Fault) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.faults = append([]Fault(nil), f...)
}

func (u *Upstream) faultFor(name string) Fault {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, f := range u.faults {
		if f.File == "" || f.File == name {
			return f
		}
	}
	return Fault{}
}

func (u *Upstream) serveHTTP(w http.ResponseWriter, r *http.Request) {
	rec := &recorder{ResponseWriter: w, status: http.StatusOK}
	fault := u.faultFor(path.Base(r.URL.Path))
	seq := u.begin(r, fault.Kind.String())
	defer func() {
		u.end(seq, rec.status, rec.bytes)
		if rec.cut {
			panic(http.ErrAbortHandler) // drop the connection mid-body
		}
	}()
	switch fault.Kind {
	case Fault500:
		http.Error(rec, "injected failure", http.StatusInternalServerError)
		return
	case Fault404:
		http.NotFound(rec, r)
		return
	case FaultCut:
		rec.cutting, rec.limit = true, fault.Bytes
	case FaultSlow:
		rec.delay, rec.chunk = fault.Delay, fault.Chunk
		if rec.chunk <= 0 {
			rec.chunk = 16 << 10
		}
		rec.ctxDone = r.Context().Done()
	case FaultIgnoreRange:
		r.Header.Del("Range")
	case FaultLonger:
		u.serveLonger(rec, r, fault.Bytes)
		return
	}
	u.serveFile(rec, r, fault.Kind == FaultCorrupt)
}

// serveLonger serves a file below root with extra junk bytes after it, as
// one file of that length.
func (u *Upstream) serveLonger(w http.ResponseWriter, r *http.Request, extra int64) {
	b, err := os.ReadFile(filepath.Join(u.root, filepath.FromSlash(path.Clean("/"+r.URL.Path))))
	if err != nil {
		http.NotFound(w, r)
		return
	}
	b = append(b, bytes.Repeat([]byte{0x5a}, int(extra))...)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(b))
}

// serveFile serves a regular file below root; anything else is 404.
func (u *Upstream) serveFile(w http.ResponseWriter, r *http.Request, corrupt bool) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	clean := path.Clean("/" + r.URL.Path)
	f, err := os.Open(filepath.Join(u.root, filepath.FromSlash(clean)))
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		http.NotFound(w, r)
		return
	}
	var content io.ReadSeeker = f
	if corrupt {
		content = &corruptReader{f: f, at: st.Size() / 2}
	}
	http.ServeContent(w, r, st.Name(), st.ModTime(), content)
}

// corruptReader reads f with the byte at offset at inverted.
type corruptReader struct {
	f   *os.File
	at  int64
	pos int64
}

func (c *corruptReader) Read(p []byte) (int, error) {
	n, err := c.f.ReadAt(p, c.pos)
	if c.at >= c.pos && c.at < c.pos+int64(n) {
		p[c.at-c.pos] ^= 0xff
	}
	c.pos += int64(n)
	if errors.Is(err, io.EOF) && n > 0 {
		err = nil
	}
	return n, err
}

func (c *corruptReader) Seek(off int64, whence int) (int64, error) {
	pos, err := c.f.Seek(off, whence)
	c.pos = pos
	return pos, err
}

// errCut stops ServeContent's copy once a FaultCut limit is reached.
var errCut = errors.New("injected cut")

// recorder records the status and body size, and applies cut/slow faults.
type recorder struct {
	http.ResponseWriter
	status  int
	bytes   int64
	cutting bool  // FaultCut applies
	limit   int64 // FaultCut: bytes to send
	cut     bool  // the limit was reached
	delay   time.Duration
	chunk   int
	ctxDone <-chan struct{}
	wrote   bool
}

func (r *recorder) WriteHeader(code int) {
	if !r.wrote {
		r.status, r.wrote = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	r.wrote = true
	if r.cutting {
		return r.writeCut(p)
	}
	if r.chunk > 0 {
		return r.writeSlow(p)
	}
	n, err := r.ResponseWriter.Write(p)
	r.bytes += int64(n)
	return n, err
}

func (r *recorder) writeCut(p []byte) (int, error) {
	if r.cut {
		return 0, errCut
	}
	left := r.limit - r.bytes
	if int64(len(p)) < left {
		n, err := r.ResponseWriter.Write(p)
		r.bytes += int64(n)
		return n, err
	}
	n, _ := r.ResponseWriter.Write(p[:left])
	r.bytes += int64(n)
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
	r.cut = true
	return n, errCut
}

func (r *recorder) writeSlow(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		select {
		case <-r.ctxDone:
			return written, errors.New("client gone")
		case <-time.After(r.delay):
		}
		k := min(r.chunk, len(p))
		n, err := r.ResponseWriter.Write(p[:k])
		written += n
		r.bytes += int64(n)
		if err != nil {
			return written, err
		}
		if f, ok := r.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
		p = p[k:]
	}
	return written, nil
}

// Flush passes flushes through (the Tap streams with them).
func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the real writer.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
