package gateway

import (
	"bytes"
	"cmp"
	"net/http"
	"strings"
	"testing"
)

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
	e.publishStored(t, stored)
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
	e.publishStored(t, a, b)
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
