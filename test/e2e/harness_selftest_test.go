package e2e

import (
	"bytes"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// These tests check the harness itself (fixtures, upstream, pacman) without
// flocon, so a failure in the foundation tests points at flocon.

func TestFixturesManifest(t *testing.T) {
	t.Parallel()
	fx := LoadFixtures(t)
	want := map[string]bool{
		"ok": true, "bad-signature": true, "bad-checksum": true, "revoked-key": true,
		"untrusted-key": true, "unknown-key": true, "missing-signature": true, "renamed": true,
	}
	seen := map[string]bool{}
	for _, f := range fx.Files {
		seen[f.Expect] = true
		if !want[f.Expect] {
			t.Errorf("%s: unknown verdict %q", f.File, f.Expect)
		}
		sum, err := FileSHA256(fx.Path(f))
		if err != nil || sum != f.SHA256 {
			t.Errorf("%s: sha256 %s (%v), manifest says %s", f.File, sum, err, f.SHA256)
		}
	}
	for v := range want {
		if !seen[v] {
			t.Errorf("no fixture with verdict %q", v)
		}
	}
	big := fx.Package(t, "big")
	if big.Size < int64(fx.BigMB)<<20 {
		t.Errorf("big package is %d bytes, want >= %d MiB", big.Size, fx.BigMB)
	}
	for _, name := range []string{"epochpkg-1:2.0-1-x86_64.pkg.tar.zst", "libxx++-3.1-1-x86_64.pkg.tar.zst",
		"pactest-filesystem-1.0-1-any.pkg.tar.zst", "hello-1.0-1-x86_64.pkg.tar.zst"} {
		fx.File(t, name)
	}
	for _, k := range []string{"pactest.gpg", "pactest-trusted", "pactest-revoked"} {
		if _, err := os.Stat(fx.Keyring + "/" + k); err != nil {
			t.Errorf("keyring: %v", err)
		}
	}
}

func TestUpstreamServes(t *testing.T) {
	t.Parallel()
	fx := LoadFixtures(t)
	u := NewUpstream(t, fx.Mirror)
	c := HTTPClient(t)
	hello := fx.Package(t, "hello")
	orig := fx.ReadFile(t, hello)
	url := u.URL() + hello.URLPath(fx.Arch)

	full := Get(t, c, url)
	if full.Status != http.StatusOK || !bytes.Equal(full.Body, orig) {
		t.Fatalf("GET: status %d, %d bytes, want 200 and the file (%d bytes)", full.Status, len(full.Body), len(orig))
	}
	part := Get(t, c, url, "Range", "bytes=100-")
	if part.Status != http.StatusPartialContent || !bytes.Equal(part.Body, orig[100:]) {
		t.Errorf("Range GET: status %d, %d bytes, want 206 and the tail", part.Status, len(part.Body))
	}
	lm := full.Header.Get("Last-Modified")
	if lm == "" {
		t.Fatal("no Last-Modified")
	}
	if r := Get(t, c, url, "If-Modified-Since", lm); r.Status != http.StatusNotModified {
		t.Errorf("If-Modified-Since: status %d, want 304", r.Status)
	}
	if r := Get(t, c, u.URL()+"/core/os/x86_64/nope.pkg.tar.zst"); r.Status != http.StatusNotFound {
		t.Errorf("missing file: status %d, want 404", r.Status)
	}
	if r := Get(t, c, u.URL()+"/../../etc/passwd"); r.Status != http.StatusNotFound {
		t.Errorf("path escape: status %d, want 404", r.Status)
	}
	if n := u.CountGETs(hello.File); n != 3 {
		t.Errorf("CountGETs = %d, want 3\n%s", n, u.LogString())
	}
	if n := u.Count(func(r Request) bool { return r.Range == "bytes=100-" && r.Status == 206 }); n != 1 {
		t.Errorf("logged ranged requests = %d, want 1\n%s", n, u.LogString())
	}
}

func TestUpstreamFaults(t *testing.T) {
	t.Parallel()
	fx := LoadFixtures(t)
	hello := fx.Package(t, "hello")
	orig := fx.ReadFile(t, hello)
	tests := []struct {
		name  string
		fault Fault
		check func(t *testing.T, r Response)
	}{
		{"500", Fault{Kind: Fault500}, func(t *testing.T, r Response) {
			if r.Status != http.StatusInternalServerError {
				t.Errorf("status %d, want 500", r.Status)
			}
		}},
		{"404 for one file", Fault{Kind: Fault404, File: hello.File}, func(t *testing.T, r Response) {
			if r.Status != http.StatusNotFound {
				t.Errorf("status %d, want 404", r.Status)
			}
		}},
		{"other file unaffected", Fault{Kind: Fault500, File: "other"}, func(t *testing.T, r Response) {
			if r.Status != http.StatusOK || !bytes.Equal(r.Body, orig) {
				t.Errorf("status %d, want 200 and the file", r.Status)
			}
		}},
		{"cut", Fault{Kind: FaultCut, Bytes: 100}, func(t *testing.T, r Response) {
			if r.Err == nil || len(r.Body) != 100 || !bytes.Equal(r.Body, orig[:100]) {
				t.Errorf("got %d bytes, err %v; want the first 100 bytes and an error", len(r.Body), r.Err)
			}
		}},
		{"slow", Fault{Kind: FaultSlow, Delay: 10 * time.Millisecond, Chunk: 300}, func(t *testing.T, r Response) {
			if r.Status != http.StatusOK || !bytes.Equal(r.Body, orig) {
				t.Errorf("status %d, %d bytes; want 200 and the file", r.Status, len(r.Body))
			}
		}},
		{"corrupt", Fault{Kind: FaultCorrupt, File: hello.File}, func(t *testing.T, r Response) {
			if len(r.Body) != len(orig) || bytes.Equal(r.Body, orig) {
				t.Errorf("got %d bytes equal=%v; want same size, different bytes", len(r.Body), bytes.Equal(r.Body, orig))
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			u := NewUpstream(t, fx.Mirror, WithFaults(tc.fault))
			r := Get(t, HTTPClient(t), u.URL()+hello.URLPath(fx.Arch))
			tc.check(t, r)
			if n := u.CountGETs(hello.File); n != 1 {
				t.Errorf("logged %d GETs, want 1", n)
			}
		})
	}
}

func TestUpstreamStopStart(t *testing.T) {
	t.Parallel()
	fx := LoadFixtures(t)
	u := NewUpstream(t, fx.Mirror)
	c := HTTPClient(t)
	url := u.URL() + "/core/os/x86_64/core.db"
	if r := Get(t, c, url); r.Status != http.StatusOK {
		t.Fatalf("status %d, want 200", r.Status)
	}
	u.Stop()
	c.Transport.(*http.Transport).CloseIdleConnections()
	if _, err := do(t.Context(), c, url); err == nil {
		t.Fatal("stopped upstream still answers")
	}
	u.Start()
	if r := Get(t, c, url); r.Status != http.StatusOK {
		t.Fatalf("after Start: status %d, want 200", r.Status)
	}
	if _, err := do(t.Context(), c, strings.Replace(DeadMirror(t), "$repo/os/$arch", "core/os/x86_64/core.db", 1)); err == nil {
		t.Error("DeadMirror answers")
	}
}

// TestPacmanAgainstUpstream: the real pacman syncs and downloads from the
// upstream directly, and refuses the bad fixtures, so the fixtures mean what
// the manifest says.
func TestPacmanAgainstUpstream(t *testing.T) {
	t.Parallel()
	fx := LoadFixtures(t)
	u := NewUpstream(t, fx.Mirror)
	p := NewPacman(t, fx.Keyring, []string{u.Mirror()})
	p.Sy()
	var names []string
	for _, f := range fx.Select(ExpectOK, true) {
		names = append(names, f.Name)
	}
	p.Sw(names...)
	for _, f := range fx.Select(ExpectOK, true) {
		if sum, err := FileSHA256(p.CacheFile(f.File)); err != nil || sum != f.SHA256 {
			t.Errorf("%s in pacman's cache: sha256 %s (%v), want %s", f.File, sum, err, f.SHA256)
		}
	}
	refused := map[string]string{
		"corrupt-sig": "invalid", "corrupt-sum": "invalid", "revokedpkg": "disabled",
		"untrustedpkg": "unknown trust", "unknownkeypkg": "key", "unsignedpkg": "failed",
	}
	for name, msg := range refused {
		out, err := p.Run("-Sw", name)
		if err == nil {
			t.Errorf("pacman -Sw %s succeeded, want a refusal\n%s", name, out)
		} else if !strings.Contains(out, msg) {
			t.Errorf("pacman -Sw %s: output lacks %q\n%s", name, msg, out)
		}
	}
}

func TestTapLogsAndStreams(t *testing.T) {
	t.Parallel()
	fx := LoadFixtures(t)
	u := NewUpstream(t, fx.Mirror)
	tap := NewTap(t, u.URL())
	hello := fx.Package(t, "hello")
	orig := fx.ReadFile(t, hello)
	r := Get(t, HTTPClient(t), tap.URL()+hello.URLPath(fx.Arch), "Range", "bytes=10-")
	if r.Status != http.StatusPartialContent || !bytes.Equal(r.Body, orig[10:]) {
		t.Fatalf("through the tap: status %d, %d bytes; want 206 and the tail", r.Status, len(r.Body))
	}
	Eventually(t, 5*time.Second, "the tap to log the answer", func() bool {
		return tap.Count(func(q Request) bool {
			return q.Range == "bytes=10-" && q.Status == http.StatusPartialContent && q.Bytes == int64(len(orig)-10)
		}) == 1
	})
	if n := u.CountGETs(hello.File); n != 1 {
		t.Errorf("upstream saw %d GETs, want 1", n)
	}
}
