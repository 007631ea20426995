package node

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// BenchmarkMirrorGetSmall measures one small body (50 KiB, a small package)
// fetched from a local mirror over a kept connection, one after the other
// as a burst of small cold packages asks for them: the mirror client
// (newHTTPClient, requests on the caller's goroutine) against net/http's
// Transport alone (its connection's read and write loops).
func BenchmarkMirrorGetSmall(b *testing.B) {
	body := bytes.Repeat([]byte("x"), 50<<10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "pkg", time.Time{}, bytes.NewReader(body))
	}))
	defer srv.Close()
	clients := []struct {
		name string
		c    *http.Client
	}{
		{name: "mirror-client", c: newHTTPClient(10*time.Second, "bench")},
		{name: "net-http", c: &http.Client{Transport: newHTTPClient(10*time.Second, "bench").Transport.(userAgentTransport).rt.fallback}},
	}
	for _, cl := range clients {
		b.Run(cl.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			buf := make([]byte, 64<<10)
			for b.Loop() {
				resp, err := cl.c.Get(srv.URL + "/core/os/x86_64/small.pkg.tar.zst")
				if err != nil {
					b.Fatal(err)
				}
				n, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{resp.Body}, buf)
				resp.Body.Close()
				if err != nil || n != int64(len(body)) {
					b.Fatalf("read %d bytes: %v", n, err)
				}
			}
			cl.c.CloseIdleConnections()
		})
	}
}
