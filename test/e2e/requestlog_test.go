package e2e

import (
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path"
	"strings"
	"sync"
	"testing"
	"time"
)

// Request is one logged HTTP request. It is logged when it arrives; Status
// and Bytes are set when the answer is complete (0 before).
type Request struct {
	Time            time.Time
	Method          string
	Path            string
	Range           string
	IfModifiedSince string
	UserAgent       string
	Status          int
	Bytes           int64 // body bytes written
	Fault           string
	Remote          string    // the client's address
	Done            time.Time // when the answer was complete (zero before)
	seq             uint64
}

// RequestLog is a concurrency-safe log of requests with query helpers;
// Upstream and Tap embed it.
type RequestLog struct {
	mu  sync.Mutex
	log []Request
	seq uint64 // of the last logged request
}

// begin logs a request on arrival, so a client that has its answer always
// finds its request in the log; end fills in the outcome.
func (l *RequestLog) begin(r *http.Request, fault string) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	l.log = append(l.log, Request{
		seq: l.seq, Time: time.Now(), Method: r.Method, Path: r.URL.Path,
		Range: r.Header.Get("Range"), IfModifiedSince: r.Header.Get("If-Modified-Since"),
		UserAgent: r.UserAgent(), Fault: fault, Remote: r.RemoteAddr,
	})
	return l.seq
}

func (l *RequestLog) end(seq uint64, status int, bytes int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := len(l.log) - 1; i >= 0; i-- { // ResetLog may have run meanwhile
		if l.log[i].seq == seq {
			l.log[i].Status, l.log[i].Bytes, l.log[i].Done = status, bytes, time.Now()
			return
		}
	}
}

// Requests returns a copy of the log.
func (l *RequestLog) Requests() []Request {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Request(nil), l.log...)
}

// ResetLog empties the log.
func (l *RequestLog) ResetLog() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.log = nil
}

// Count counts the logged requests for which match is true.
func (l *RequestLog) Count(match func(Request) bool) int {
	n := 0
	for _, r := range l.Requests() {
		if match(r) {
			n++
		}
	}
	return n
}

// CountGETs counts GET requests of a file, given as its URL path or its base
// name.
func (l *RequestLog) CountGETs(file string) int {
	return l.Count(func(r Request) bool { return r.Method == http.MethodGet && matchPath(r.Path, file) })
}

// BytesSent sums the body bytes sent for a file (URL path or base name) by
// the requests that have ended.
func (l *RequestLog) BytesSent(file string) int64 {
	var n int64
	for _, r := range l.Requests() {
		if matchPath(r.Path, file) {
			n += r.Bytes
		}
	}
	return n
}

// LogString formats the log, one line per request (for failure messages).
func (l *RequestLog) LogString() string {
	var b strings.Builder
	for _, r := range l.Requests() {
		fmt.Fprintf(&b, "%s %s %s range=%q ims=%q -> %d %dB fault=%s\n", r.Time.Format("15:04:05.000"),
			r.Method, r.Path, r.Range, r.IfModifiedSince, r.Status, r.Bytes, r.Fault)
	}
	return b.String()
}

func matchPath(p, file string) bool {
	return p == file || path.Base(p) == file
}

// Tap is a logging reverse proxy in front of a daemon (or any server): point
// a client at the Tap to see exactly what it asked and what it got.
type Tap struct {
	RequestLog
	srv *http.Server
	url string
}

// NewTap proxies 127.0.0.1:<free port> to target (e.g. Daemon.URL()) until
// the test ends.
func NewTap(t testing.TB, target string) *Tap {
	t.Helper()
	to, err := url.Parse(target)
	if err != nil {
		t.Fatalf("tap target %q: %v", target, err)
	}
	tap := &Tap{}
	proxy := httputil.NewSingleHostReverseProxy(to)
	proxy.FlushInterval = -1 // stream as the target sends
	tr := &http.Transport{DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	proxy.Transport = tr
	l := listenLocal(t)
	tap.url = "http://" + l.Addr().String()
	tap.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &recorder{ResponseWriter: w, status: http.StatusOK}
		seq := tap.begin(r, "")
		defer func() { tap.end(seq, rec.status, rec.bytes) }()
		proxy.ServeHTTP(rec, r)
	})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = tap.srv.Serve(l)
	}()
	t.Cleanup(func() {
		_ = tap.srv.Close()
		<-done
	})
	return tap
}

// URL is the Tap's base URL.
func (tap *Tap) URL() string { return tap.url }

// Server is the pacman Server line value through the Tap.
func (tap *Tap) Server() string { return tap.url + "/$repo/os/$arch" }
