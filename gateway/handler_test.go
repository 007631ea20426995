package gateway

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flocon/flocon/verify"
)

var dbTime = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func TestHitServeContent(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	pkgs := []testPkg{
		newTestPkg(t, "hello", "1.0-1", 100_000, nil),
		newTestPkg(t, "epochpkg", "1:2.0-1", 5_000, nil),
		newTestPkg(t, "libxx++", "1.0-1", 5_000, nil),
	}
	e.publishStored(t, pkgs...)
	hello := pkgs[0]
	lastMod := time.Unix(hello.buildDate, 0).UTC().Format(http.TimeFormat)
	tests := []struct {
		name, method, path string
		hdr                map[string]string
		status             int
		body               []byte
		contentRange       string
	}{
		{"full", http.MethodGet, "/core/os/x86_64/" + hello.filename, nil, http.StatusOK, hello.data, ""},
		{"range", http.MethodGet, "/core/os/x86_64/" + hello.filename, map[string]string{"Range": "bytes=1000-1999"},
			http.StatusPartialContent, hello.data[1000:2000], "bytes 1000-1999/100000"},
		{"resume", http.MethodGet, "/core/os/x86_64/" + hello.filename, map[string]string{"Range": "bytes=99000-"},
			http.StatusPartialContent, hello.data[99000:], "bytes 99000-99999/100000"},
		{"head", http.MethodHead, "/core/os/x86_64/" + hello.filename, nil, http.StatusOK, nil, ""},
		{"not modified", http.MethodGet, "/core/os/x86_64/" + hello.filename, map[string]string{"If-Modified-Since": lastMod},
			http.StatusNotModified, nil, ""},
		{"etag match", http.MethodGet, "/core/os/x86_64/" + hello.filename, map[string]string{"If-None-Match": `"` + hello.sha256() + `"`},
			http.StatusNotModified, nil, ""},
		{"epoch raw", http.MethodGet, "/core/os/x86_64/" + pkgs[1].filename, nil, http.StatusOK, pkgs[1].data, ""},
		{"epoch encoded", http.MethodGet, "/core/os/x86_64/" + strings.ReplaceAll(pkgs[1].filename, ":", "%3A"), nil, http.StatusOK, pkgs[1].data, ""},
		{"plus raw", http.MethodGet, "/core/os/x86_64/" + pkgs[2].filename, nil, http.StatusOK, pkgs[2].data, ""},
		{"plus encoded", http.MethodGet, "/core/os/x86_64/" + strings.ReplaceAll(pkgs[2].filename, "+", "%2B"), nil, http.StatusOK, pkgs[2].data, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp, body := e.get(t, tt.method, tt.path, tt.hdr)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if !bytes.Equal(body, tt.body) {
				t.Fatalf("body: %d bytes, want %d", len(body), len(tt.body))
			}
			if got := resp.Header.Get("Content-Range"); got != tt.contentRange {
				t.Fatalf("Content-Range %q, want %q", got, tt.contentRange)
			}
			if tt.status == http.StatusOK && tt.method == http.MethodHead {
				if resp.ContentLength != int64(len(hello.data)) {
					t.Fatalf("HEAD Content-Length %d, want %d", resp.ContentLength, len(hello.data))
				}
			}
			if tt.status/100 == 2 && resp.Header.Get("Last-Modified") != lastMod {
				t.Fatalf("Last-Modified %q, want %q", resp.Header.Get("Last-Modified"), lastMod)
			}
		})
	}
	t.Run("no download started", func(t *testing.T) {
		t.Parallel()
		e.f.mu.Lock()
		defer e.f.mu.Unlock()
		if e.f.fetches != 0 {
			t.Fatalf("a hit started %d downloads", e.f.fetches)
		}
	})
}

// TestMissStreamsWhileGrowing: the first client starts the download and gets
// bytes before it ends; a second client joins late and gets everything
// written so far at once; both end with the full verified file.
func TestMissStreamsWhileGrowing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	pkg := newTestPkg(t, "big", "1.0-1", 1<<20, nil)
	e.publish(t, dbTime, pkg)
	e.sync(t)
	path := "/core/os/x86_64/" + pkg.filename

	firstCh := e.doAsync(t, http.MethodGet, path, nil)
	p := e.awaitStart(t)
	half := len(pkg.data) / 2
	if _, err := p.Write(pkg.data[:half]); err != nil {
		t.Fatal(err)
	}
	first := <-firstCh // the headers come before the download ends
	defer first.Body.Close()
	if first.StatusCode != http.StatusOK || first.ContentLength != int64(len(pkg.data)) {
		t.Fatalf("first: status %d length %d", first.StatusCode, first.ContentLength)
	}
	quarter := make([]byte, half/2)
	if _, err := io.ReadFull(first.Body, quarter); err != nil {
		t.Fatalf("first client got no bytes while downloading: %v", err)
	}

	second := e.do(t, http.MethodGet, path, nil)
	defer second.Body.Close()
	early := make([]byte, half/2)
	if _, err := io.ReadFull(second.Body, early); err != nil {
		t.Fatalf("late joiner got no bytes at once: %v", err)
	}
	if _, err := p.Write(pkg.data[half:]); err != nil {
		t.Fatal(err)
	}
	commit(t, p, pkg, nil)

	for name, c := range map[string]struct {
		resp *http.Response
		head []byte
	}{"first": {first, quarter}, "second": {second, early}} {
		rest, err := io.ReadAll(c.resp.Body)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := append(c.head, rest...); !bytes.Equal(got, pkg.data) {
			t.Fatalf("%s: body differs (%d bytes)", name, len(got))
		}
	}
	e.f.mu.Lock()
	fetches := e.f.fetches
	e.f.mu.Unlock()
	if fetches != 2 {
		t.Fatalf("fetches = %d, want 2 (start + join)", fetches)
	}
	if got := counterValue(t, e.g, "join"); got != 1 {
		t.Fatalf("join metric = %v, want 1", got)
	}
	// Now a hit.
	resp, body := e.get(t, http.MethodGet, path, nil)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, pkg.data) {
		t.Fatalf("after commit: status %d, %d bytes", resp.StatusCode, len(body))
	}
}

func TestRangeOnInflight(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	pkg := newTestPkg(t, "ranged", "1.0-1", 400_000, nil)
	e.publish(t, dbTime, pkg)
	e.sync(t)
	path := "/core/os/x86_64/" + pkg.filename

	type result struct {
		resp *http.Response
		body []byte
		err  error
	}
	do := func(hdr map[string]string) chan result {
		ch := make(chan result, 1)
		go func() {
			resp := e.do(t, http.MethodGet, path, hdr)
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			ch <- result{resp, body, err}
		}()
		return ch
	}
	full := do(nil)
	p := e.awaitStart(t)
	if _, err := p.Write(pkg.data[:300_000]); err != nil {
		t.Fatal(err)
	}
	resume := do(map[string]string{"Range": "bytes=123456-"})
	head := e.do(t, http.MethodHead, path, map[string]string{"Range": "bytes=100-199"})
	head.Body.Close()
	if head.StatusCode != http.StatusPartialContent || head.Header.Get("Content-Range") != "bytes 100-199/400000" ||
		head.ContentLength != 100 {
		t.Fatalf("HEAD range in flight: %d %q %d", head.StatusCode, head.Header.Get("Content-Range"), head.ContentLength)
	}
	headFull, headBody := e.get(t, http.MethodHead, path, nil)
	if headFull.StatusCode != http.StatusOK || headFull.ContentLength != 400_000 || len(headBody) != 0 ||
		headFull.Header.Get("Accept-Ranges") != "bytes" {
		t.Fatalf("HEAD in flight: %d length %d body %d", headFull.StatusCode, headFull.ContentLength, len(headBody))
	}
	unsatisfiable, _ := e.get(t, http.MethodGet, path, map[string]string{"Range": "bytes=400000-"})
	if unsatisfiable.StatusCode != http.StatusRequestedRangeNotSatisfiable {
		t.Fatalf("range past the end: status %d", unsatisfiable.StatusCode)
	}
	multi := do(map[string]string{"Range": "bytes=0-9,20-29"})
	if _, err := p.Write(pkg.data[300_000:]); err != nil {
		t.Fatal(err)
	}
	commit(t, p, pkg, nil)

	r := <-resume
	if r.err != nil || r.resp.StatusCode != http.StatusPartialContent {
		t.Fatalf("resume: %v status %d", r.err, r.resp.StatusCode)
	}
	if got := r.resp.Header.Get("Content-Range"); got != "bytes 123456-399999/400000" {
		t.Fatalf("Content-Range %q", got)
	}
	if !bytes.Equal(r.body, pkg.data[123456:]) {
		t.Fatalf("resume body differs (%d bytes)", len(r.body))
	}
	if r := <-full; r.err != nil || !bytes.Equal(r.body, pkg.data) {
		t.Fatalf("full: %v, %d bytes", r.err, len(r.body))
	}
	if r := <-multi; r.err != nil || r.resp.StatusCode != http.StatusPartialContent ||
		!strings.HasPrefix(r.resp.Header.Get("Content-Type"), "multipart/byteranges") {
		t.Fatalf("multi-range: %v status %d type %q", r.err, r.resp.StatusCode, r.resp.Header.Get("Content-Type"))
	}
}

// TestAbortedDownload: bad bytes never reach a client as a complete file.
func TestAbortedDownload(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	midway := newTestPkg(t, "midway", "1.0-1", 300_000, nil)
	early := newTestPkg(t, "early", "1.0-1", 300_000, nil)
	e.publish(t, dbTime, midway, early)
	e.sync(t)

	t.Run("after the response started", func(t *testing.T) {
		respCh := e.doAsync(t, http.MethodGet, "/core/os/x86_64/"+midway.filename, nil)
		p := e.awaitStart(t)
		if _, err := p.Write(midway.data[:200_000]); err != nil {
			t.Fatal(err)
		}
		resp := <-respCh
		defer resp.Body.Close()
		buf := make([]byte, 100_000)
		if _, err := io.ReadFull(resp.Body, buf); err != nil {
			t.Fatal(err)
		}
		// The rest is wrong: the verifier refuses it.
		p.Abort(fmt.Errorf("verify %s: %w", midway.filename, verify.ErrDigestMismatch))
		rest, err := io.ReadAll(resp.Body)
		if err == nil {
			t.Fatalf("client read %d more bytes and a clean end", len(rest))
		}
		if got := 100_000 + len(rest); got >= len(midway.data) {
			t.Fatalf("client got %d bytes of %d", got, len(midway.data))
		}
	})
	t.Run("before the first byte", func(t *testing.T) {
		ch := make(chan *http.Response, 1)
		go func() {
			resp, _ := e.get(t, http.MethodGet, "/core/os/x86_64/"+early.filename, nil)
			ch <- resp
		}()
		p := e.awaitStart(t)
		p.Abort(fmt.Errorf("verify %s: %w", early.filename, verify.ErrBadSignature))
		if resp := <-ch; resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("status %d, want 502", resp.StatusCode)
		}
	})
}

func TestDBConditional(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	db := e.publish(t, dbTime, newTestPkg(t, "hello", "1.0-1", 1000, nil))
	path := "/core/os/x86_64/core.db"
	lastMod := dbTime.Format(http.TimeFormat)

	resp, body := e.get(t, http.MethodGet, path, nil)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, db) {
		t.Fatalf("first: status %d, %d bytes", resp.StatusCode, len(body))
	}
	if resp.Header.Get("Last-Modified") != lastMod || resp.ContentLength != int64(len(db)) {
		t.Fatalf("first: Last-Modified %q Content-Length %d", resp.Header.Get("Last-Modified"), resp.ContentLength)
	}
	if ims := e.f.lastIMS(); !ims.IsZero() {
		t.Fatalf("first upstream request sent If-Modified-Since %v", ims)
	}

	// pacman -Sy again: 304 passes through; upstream was asked with our date.
	resp, body = e.get(t, http.MethodGet, path, map[string]string{"If-Modified-Since": lastMod})
	if resp.StatusCode != http.StatusNotModified || len(body) != 0 {
		t.Fatalf("conditional: status %d, %d bytes", resp.StatusCode, len(body))
	}
	if ims := e.f.lastIMS(); !ims.Equal(dbTime) {
		t.Fatalf("upstream If-Modified-Since %v, want %v", ims, dbTime)
	}
	// pacman -Syy: upstream says 304, we serve our copy.
	resp, body = e.get(t, http.MethodGet, path, nil)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, db) {
		t.Fatalf("forced: status %d, %d bytes", resp.StatusCode, len(body))
	}
	if n := e.f.calls("core.db"); n != 3 {
		t.Fatalf("upstream asked %d times, want 3", n)
	}

	// The mirror publishes a newer db: clients with the old date get it.
	newer := e.publish(t, dbTime.Add(time.Hour), newTestPkg(t, "hello", "1.1-1", 1000, nil))
	resp, body = e.get(t, http.MethodGet, path, map[string]string{"If-Modified-Since": lastMod})
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, newer) {
		t.Fatalf("newer: status %d, %d bytes", resp.StatusCode, len(body))
	}

	// A lagging mirror with an older db does not roll ours back.
	e.publish(t, dbTime.Add(-time.Hour), newTestPkg(t, "hello", "0.9-1", 1000, nil))
	resp, body = e.get(t, http.MethodGet, path, nil)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, newer) {
		t.Fatalf("older upstream: status %d, %d bytes, want our newer copy", resp.StatusCode, len(body))
	}

	// Upstream unreachable: the stored copy, stale beats nothing.
	e.f.mu.Lock()
	e.f.unreachable = true
	e.f.mu.Unlock()
	resp, body = e.get(t, http.MethodGet, path, nil)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, newer) {
		t.Fatalf("unreachable: status %d, %d bytes", resp.StatusCode, len(body))
	}
	resp, _ = e.get(t, http.MethodGet, "/core/os/x86_64/core.files", nil)
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("unreachable, nothing stored: status %d, want 502", resp.StatusCode)
	}
}

// TestDBSingleFlight: concurrent requests for one db share one upstream request.
func TestDBSingleFlight(t *testing.T) {
	t.Parallel()
	gate := make(chan struct{})
	e := newEnvWith(t, Config{}, gate)
	db := e.publish(t, dbTime)
	const clients = 5
	bodies := make(chan []byte, clients)
	for range clients {
		go func() {
			resp, body := e.get(t, http.MethodGet, "/core/os/x86_64/core.db", nil)
			if resp.StatusCode != http.StatusOK {
				body = nil
			}
			bodies <- body
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for e.entered.Load() < clients {
		if time.Now().After(deadline) {
			t.Fatalf("only %d requests arrived", e.entered.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // from the handler's start to the shared call is a few instructions
	close(gate)
	for range clients {
		if body := <-bodies; !bytes.Equal(body, db) {
			t.Fatalf("a client got %d bytes", len(body))
		}
	}
	if n := e.f.calls("core.db"); n != 1 {
		t.Fatalf("upstream asked %d times, want 1", n)
	}
}

func TestDBMaxAge(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{DBMaxAge: time.Hour})
	db := e.publish(t, dbTime)
	for i := range 3 {
		resp, body := e.get(t, http.MethodGet, "/core/os/x86_64/core.db", nil)
		if resp.StatusCode != http.StatusOK || !bytes.Equal(body, db) {
			t.Fatalf("request %d: status %d", i, resp.StatusCode)
		}
	}
	if n := e.f.calls("core.db"); n != 1 {
		t.Fatalf("upstream asked %d times within DBMaxAge, want 1", n)
	}
}

func TestDBSigMissing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	e.publish(t, dbTime)
	start := time.Now()
	resp, _ := e.get(t, http.MethodGet, "/core/os/x86_64/core.db.sig", nil)
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("status %d, want 404", resp.StatusCode)
	}
	if n := e.f.calls("core.db.sig"); n != 1 {
		t.Fatalf("upstream asked %d times, want 1", n)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("404 took %v", took) // generous: only catches a wait on a timeout
	}
}

func TestPackageSig(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{SigWait: 10 * time.Second})
	dbSig := []byte("binary detached signature from %PGPSIG%")
	withSig := newTestPkg(t, "signed", "1.0-1", 2000, dbSig)
	stored := newTestPkg(t, "stored", "1.0-1", 2000, nil)
	pending := newTestPkg(t, "pending", "1.0-1", 2000, nil)
	e.publish(t, dbTime, withSig, stored, pending)
	e.sync(t)
	storedSig := []byte("signature stored with the blob")
	storeBlob(t, e.st, stored, storedSig)

	resp, body := e.get(t, http.MethodGet, "/core/os/x86_64/"+withSig.filename+".sig", nil)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, dbSig) || resp.ContentLength != int64(len(dbSig)) {
		t.Fatalf("PGPSIG: status %d body %q length %d", resp.StatusCode, body, resp.ContentLength)
	}
	resp, body = e.get(t, http.MethodGet, "/core/os/x86_64/"+stored.filename+".sig", nil)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, storedSig) {
		t.Fatalf("stored sig: status %d body %q", resp.StatusCode, body)
	}

	// No sig anywhere yet: the request starts the download and waits for it.
	ch := make(chan []byte, 1)
	go func() {
		resp, body := e.get(t, http.MethodGet, "/core/os/x86_64/"+pending.filename+".sig", nil)
		if resp.StatusCode != http.StatusOK {
			body = []byte("status " + strconv.Itoa(resp.StatusCode))
		}
		ch <- body
	}()
	p := e.awaitStart(t)
	if _, err := p.Write(pending.data); err != nil {
		t.Fatal(err)
	}
	fetchedSig := []byte("signature fetched with the download")
	commit(t, p, pending, fetchedSig)
	if got := <-ch; !bytes.Equal(got, fetchedSig) {
		t.Fatalf("awaited sig: %q", got)
	}

	// Stored without any signature (nothing to download): 404 at once.
	unsigned := newTestPkg(t, "unsigned", "1.0-1", 2000, nil)
	e.publish(t, dbTime.Add(time.Hour), withSig, stored, pending, unsigned)
	e.sync(t)
	storeBlob(t, e.st, unsigned, nil)
	resp, _ = e.get(t, http.MethodGet, "/core/os/x86_64/"+unsigned.filename+".sig", nil)
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unsigned stored blob: sig status %d, want 404", resp.StatusCode)
	}
}

func TestUnknownPackageRefreshesOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	e.publish(t, dbTime, newTestPkg(t, "hello", "1.0-1", 1000, nil))
	e.sync(t)
	calls := e.f.calls("core.db")
	for i := range 3 {
		resp, _ := e.get(t, http.MethodGet, "/core/os/x86_64/ghost-1.0-1-x86_64.pkg.tar.zst", nil)
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("request %d: status %d, want 404", i, resp.StatusCode)
		}
	}
	// The sync just confirmed the db: no refresh at all within the floor.
	if n := e.f.calls("core.db"); n != calls {
		t.Fatalf("db asked %d more times right after a sync", n-calls)
	}

	// A fresh gateway over a store without the package's db entry: a newly
	// published package is found through one refresh.
	e2 := newEnv(t, Config{})
	late := newTestPkg(t, "late", "1.0-1", 1000, nil)
	e2.publish(t, dbTime, late)
	storeBlob(t, e2.st, late, nil)
	resp, body := e2.get(t, http.MethodGet, "/core/os/x86_64/"+late.filename, nil)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, late.data) {
		t.Fatalf("late package: status %d", resp.StatusCode)
	}
	for range 2 {
		resp, _ := e2.get(t, http.MethodGet, "/core/os/x86_64/ghost-1.0-1-x86_64.pkg.tar.zst", nil)
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("ghost: status %d", resp.StatusCode)
		}
	}
	if n := e2.f.calls("core.db"); n != 1 {
		t.Fatalf("db refreshed %d times, want 1", n)
	}
	e2.f.mu.Lock()
	defer e2.f.mu.Unlock()
	if e2.f.fetches != 0 {
		t.Fatalf("an unknown package started %d downloads", e2.f.fetches)
	}
}

func TestNowhereIs404(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	gone := newTestPkg(t, "gone", "1.0-1", 1000, nil)
	e.publish(t, dbTime, gone)
	e.sync(t)
	e.f.mu.Lock()
	delete(e.f.pkgs, gone.filename) // in the db, on no source
	e.f.mu.Unlock()
	resp, _ := e.get(t, http.MethodGet, "/core/os/x86_64/"+gone.filename, nil)
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("status %d, want 404", resp.StatusCode)
	}
}

func TestBusy(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{MaxStreams: 1})
	a := newTestPkg(t, "a", "1.0-1", 1000, nil)
	b := newTestPkg(t, "b", "1.0-1", 1000, nil)
	e.publish(t, dbTime, a, b)
	e.sync(t)
	done := make(chan []byte, 1)
	go func() {
		_, body := e.get(t, http.MethodGet, "/core/os/x86_64/"+a.filename, nil)
		done <- body
	}()
	p := e.awaitStart(t) // the one stream slot is taken
	resp, _ := e.get(t, http.MethodGet, "/core/os/x86_64/"+b.filename, nil)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("status %d Retry-After %q, want 429 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if _, err := p.Write(a.data); err != nil {
		t.Fatal(err)
	}
	commit(t, p, a, nil)
	if got := <-done; !bytes.Equal(got, a.data) {
		t.Fatalf("first client: %d bytes", len(got))
	}
}

func TestHealthzAndMetrics(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	resp, body := e.get(t, http.MethodGet, "/healthz", nil)
	if resp.StatusCode != http.StatusOK || string(body) != "ok\n" {
		t.Fatalf("healthz: %d %q", resp.StatusCode, body)
	}
	e.get(t, http.MethodGet, "/core/os/x86_64/passwd", nil)
	resp, body = e.get(t, http.MethodGet, "/metrics", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("metrics: %d", resp.StatusCode)
	}
	if !strings.Contains(string(body), `flocon_gateway_requests_total{kind="other",outcome="notfound"} 1`) {
		t.Fatalf("metrics lack the 404:\n%s", body)
	}
}

func counterValue(t *testing.T, g *Gateway, outcome string) float64 {
	t.Helper()
	mfs, err := g.cfg.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != "flocon_gateway_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" && l.GetValue() == outcome {
					sum += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}
