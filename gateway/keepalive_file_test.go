package gateway

import (
	"bytes"
	"net/http"
	"testing"
	"time"
)

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
