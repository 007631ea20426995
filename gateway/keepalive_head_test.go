package gateway

import (
	"bufio"
	"bytes"
	"net/http"
	"testing"
)

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
