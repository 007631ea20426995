package gateway

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/flocon/flocon/store"
)

// Two db entries point at the same bytes: the blob proven to be "hello"
// must never be served complete as "renamed", stored or streaming.
func TestIdentityMismatchRefused(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		stored bool // the blob is in the store before the request
	}{
		{"stored blob", true},
		{"download in flight", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, Config{})
			hello := newTestPkg(t, "hello", "1.0-1", 256<<10, nil)
			renamed := hello
			renamed.name, renamed.filename = "renamed", "renamed-1.0-1-x86_64.pkg.tar.zst"
			e.publish(t, dbTime, hello, renamed)
			e.sync(t)
			commitAsHello := func(p *store.Pending) {
				err := p.Commit(store.BlobInfo{CID: p.CID(), Size: int64(len(hello.data)), Repo: "core",
					Arch: "x86_64", Filename: hello.filename, Identity: "hello-1.0-1-x86_64", Added: time.Now()}, nil)
				if err != nil {
					t.Fatalf("commit: %v", err)
				}
			}
			path := "/core/os/x86_64/" + renamed.filename
			if tt.stored {
				p, _, err := e.st.Begin(hello.cid(t), int64(len(hello.data)))
				if err != nil {
					t.Fatal(err)
				}
				if _, err := p.Write(hello.data); err != nil {
					t.Fatal(err)
				}
				commitAsHello(p)
				resp, body := e.get(t, http.MethodGet, path, nil)
				if resp.StatusCode != http.StatusBadGateway || len(body) == len(hello.data) {
					t.Fatalf("renamed: status %d, %d bytes; want 502 and no package", resp.StatusCode, len(body))
				}
			} else {
				ch := e.doAsync(t, http.MethodGet, path, nil)
				p := e.awaitStart(t)
				if _, err := p.Write(hello.data); err != nil {
					t.Fatal(err)
				}
				resp := <-ch
				defer resp.Body.Close()
				commitAsHello(p)
				body, _ := io.ReadAll(resp.Body)
				if len(body) >= len(hello.data) {
					t.Fatalf("renamed: the client got all %d bytes", len(body))
				}
			}
			// Under its own name the same blob is served.
			resp, body := e.get(t, http.MethodGet, "/core/os/x86_64/"+hello.filename, nil)
			if resp.StatusCode != http.StatusOK || len(body) != len(hello.data) {
				t.Fatalf("hello: status %d, %d bytes", resp.StatusCode, len(body))
			}
		})
	}
}
