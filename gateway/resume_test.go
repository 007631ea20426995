package gateway

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/flocon/flocon/verify"
)

// TestResumeAfterLyingSource reproduces issue 10's point 1: a source sends
// one wrong byte, the client gets everything but the held-back last byte
// and is cut; the download restarts from a good source and commits. The
// client's resume of its partial file must not be answered with the proven
// tail (that would make a complete wrong file): it gets a 416, which makes
// curl and pacman drop the partial file. Whole-file and non-completing
// requests are served as usual.
func TestResumeAfterLyingSource(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	pkg := newTestPkg(t, "flipped", "1.0-1", 200_000, nil)
	aborted := newTestPkg(t, "aborted", "1.0-1", 200_000, nil)
	fresh := newTestPkg(t, "fresh", "1.0-1", 200_000, nil)
	e.publish(t, dbTime, pkg, aborted, fresh)
	e.sync(t)
	size := int64(len(pkg.data))
	path := "/core/os/x86_64/" + pkg.filename

	respCh := e.doAsync(t, http.MethodGet, path, nil)
	p := e.awaitStart(t)
	wrong := bytes.Clone(pkg.data)
	wrong[len(wrong)/2] ^= 0xff
	if _, err := p.Write(wrong); err != nil {
		t.Fatal(err)
	}
	resp := <-respCh
	held := make([]byte, size-1)
	if _, err := io.ReadFull(resp.Body, held); err != nil {
		t.Fatalf("client got %v before the verdict", err)
	}
	// The verdict: wrong bytes. The node starts over from another source.
	if err := p.Truncate(0); err != nil {
		t.Fatal(err)
	}
	if rest, err := io.ReadAll(resp.Body); err == nil || len(rest) > 0 {
		t.Fatalf("the client was not cut: %d more bytes, err %v", len(rest), err)
	}
	resp.Body.Close()
	if _, err := p.Write(pkg.data); err != nil {
		t.Fatal(err)
	}
	commit(t, p, pkg, nil)

	resume := map[string]string{"Range": fmt.Sprintf("bytes=%d-", len(held))}
	got, body := e.get(t, http.MethodGet, path, resume)
	if got.StatusCode != http.StatusRequestedRangeNotSatisfiable || len(body) > 0 && got.StatusCode/100 == 2 {
		t.Fatalf("resume of the wrong prefix: status %d, %d bytes; want 416", got.StatusCode, len(body))
	}
	if cr := got.Header.Get("Content-Range"); cr != fmt.Sprintf("bytes */%d", size) {
		t.Fatalf("Content-Range %q", cr)
	}
	if why := got.Header.Get(RefusalHeader); why != "resume-refused" {
		t.Fatalf("%s: %q, want resume-refused", RefusalHeader, why)
	}
	for _, r := range []string{"bytes=1-", "bytes=-5", "bytes=0-0,100-"} {
		if got, _ := e.get(t, http.MethodGet, path, map[string]string{"Range": r}); got.StatusCode != http.StatusRequestedRangeNotSatisfiable {
			t.Errorf("Range %s completes a partial file: status %d, want 416", r, got.StatusCode)
		}
	}
	if got, body := e.get(t, http.MethodGet, path, nil); got.StatusCode != http.StatusOK || !bytes.Equal(body, pkg.data) {
		t.Fatalf("a fresh download: status %d, %d bytes", got.StatusCode, len(body))
	}
	if got, body := e.get(t, http.MethodGet, path, map[string]string{"Range": "bytes=0-99"}); got.StatusCode != http.StatusPartialContent ||
		!bytes.Equal(body, pkg.data[:100]) {
		t.Fatalf("a range that completes nothing: status %d", got.StatusCode)
	}

	t.Run("download aborted, stored later", func(t *testing.T) {
		path := "/core/os/x86_64/" + aborted.filename
		respCh := e.doAsync(t, http.MethodGet, path, nil)
		p := e.awaitStart(t)
		if _, err := p.Write(aborted.data[:100_000]); err != nil {
			t.Fatal(err)
		}
		resp := <-respCh
		if _, err := io.ReadFull(resp.Body, make([]byte, 50_000)); err != nil {
			t.Fatal(err)
		}
		p.Abort(fmt.Errorf("every source failed: %w", verify.ErrSizeMismatch))
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		storeBlob(t, e.st, aborted, nil)
		if got, _ := e.get(t, http.MethodGet, path, map[string]string{"Range": "bytes=50000-"}); got.StatusCode != http.StatusRequestedRangeNotSatisfiable {
			t.Fatalf("resume after an aborted download: status %d, want 416", got.StatusCode)
		}
	})
	t.Run("nothing discarded: resumes are served", func(t *testing.T) {
		storeBlob(t, e.st, fresh, nil)
		path := "/core/os/x86_64/" + fresh.filename
		got, body := e.get(t, http.MethodGet, path, map[string]string{"Range": "bytes=150000-"})
		if got.StatusCode != http.StatusPartialContent || !bytes.Equal(body, fresh.data[150_000:]) {
			t.Fatalf("status %d, %d bytes; want 206 with the rest", got.StatusCode, len(body))
		}
	})
}
