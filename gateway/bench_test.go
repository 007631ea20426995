package gateway

import (
	"io"
	"net/http"
	"testing"
)

// BenchmarkServeHit measures a stored package served through the whole
// handler over HTTP (ServeContent, sendfile, middleware).
func BenchmarkServeHit(b *testing.B) {
	e := newEnv(b, Config{})
	pkg := newTestPkg(b, "bench", "1.0-1", 8<<20, nil)
	e.publish(b, dbTime, pkg)
	e.sync(b)
	storeBlob(b, e.st, pkg, nil)
	url := e.srv.URL + "/core/os/x86_64/" + pkg.filename
	client := e.srv.Client()
	b.SetBytes(int64(len(pkg.data)))
	b.ResetTimer()
	for b.Loop() {
		resp, err := client.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || n != int64(len(pkg.data)) || resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d, %d bytes, %v", resp.StatusCode, n, err)
		}
	}
}
