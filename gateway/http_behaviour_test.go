package gateway

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// answer is what matters of an HTTP response for comparing two servers.
type answer struct {
	status                                                  int
	contentRange, contentLength, etag, lastModified, ranges string
	body                                                    string // multipart: the parts' ranges and bytes
}

func (a answer) String() string {
	body := a.body
	if len(body) > 64 {
		body = fmt.Sprintf("%d bytes", len(body))
	}
	return fmt.Sprintf("%d range=%q length=%q etag=%q lm=%q ar=%q body=%s",
		a.status, a.contentRange, a.contentLength, a.etag, a.lastModified, a.ranges, body)
}

func answerOf(t testing.TB, status int, h http.Header, body []byte) answer {
	t.Helper()
	a := answer{
		status: status, contentRange: h.Get("Content-Range"), contentLength: h.Get("Content-Length"),
		etag: h.Get("ETag"), lastModified: h.Get("Last-Modified"), ranges: h.Get("Accept-Ranges"),
		body: string(body),
	}
	if status/100 != 2 {
		// error texts may differ; the status and headers are the behaviour
		a.body, a.contentLength = "", ""
	}
	mt, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err == nil && mt == "multipart/byteranges" {
		var b strings.Builder
		mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
		for {
			part, err := mr.NextPart()
			if err != nil {
				break
			}
			data, _ := io.ReadAll(part)
			fmt.Fprintf(&b, "[%s %x]", part.Header.Get("Content-Range"), data)
		}
		a.body, a.contentLength = b.String(), "multipart"
	}
	return a
}

// TestOneHTTPBehaviour: a stored package and one in flight give the same
// answer to every request, and that answer is http.ServeContent's over the
// same bytes, except where ServeContent breaks RFC 9110 §14 (a zero suffix
// is unsatisfiable; another range unit is ignored).
func TestOneHTTPBehaviour(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	stored := newTestPkg(t, "stored", "1.0-1", 5000, nil)
	inflight := newTestPkg(t, "inflight", "1.0-1", 5000, nil)
	e.publish(t, dbTime, stored, inflight)
	e.sync(t)
	storeBlob(t, e.st, stored, nil)

	// The in-flight download: every byte written but the last, which is
	// held back until the commit, so each request is answered while the
	// download runs.
	inflightCases := httpCases(t, inflight)
	first := e.doAsync(t, http.MethodGet, "/core/os/x86_64/"+inflight.filename, nil)
	p := e.awaitStart(t)
	if _, err := p.Write(inflight.data); err != nil {
		t.Fatal(err)
	}
	type result struct {
		name string
		got  answer
	}
	results := make(chan result, len(inflightCases))
	gets := 0
	for _, c := range inflightCases {
		if c.method == http.MethodGet {
			gets++
		}
		go func() {
			resp, body := e.get(t, c.method, "/core/os/x86_64/"+inflight.filename, c.hdr)
			results <- result{c.name, answerOf(t, resp.StatusCode, resp.Header, body)}
		}()
	}
	// Commit only once every request has passed the point where it picks
	// the stored blob or the download (HEADs never download).
	waitFetches(t, e, 1+gets)
	commit(t, p, inflight, nil)
	inflightGot := map[string]answer{}
	for range inflightCases {
		r := <-results
		inflightGot[r.name] = r.got
	}
	if resp := <-first; resp.StatusCode != http.StatusOK {
		t.Fatalf("first client: status %d", resp.StatusCode)
	}

	for i, c := range httpCases(t, stored) {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			resp, body := e.get(t, c.method, "/core/os/x86_64/"+stored.filename, c.hdr)
			if got := answerOf(t, resp.StatusCode, resp.Header, body); got != c.want {
				t.Errorf("stored:\n got %v\nwant %v", got, c.want)
			}
			if got, want := inflightGot[c.name], inflightCases[i].want; got != want {
				t.Errorf("in flight:\n got %v\nwant %v", got, want)
			}
		})
	}
}

type httpCase struct {
	name, method string
	hdr          map[string]string
	want         answer
}

// httpCases are the requests of TestOneHTTPBehaviour for pkg, each with
// the answer http.ServeContent gives over pkg's bytes, or the RFC's where
// ServeContent departs from it.
func httpCases(t testing.TB, pkg testPkg) []httpCase {
	t.Helper()
	size := int64(len(pkg.data))
	modtime := time.Unix(pkg.buildDate, 0).UTC()
	date := modtime.Format(http.TimeFormat)
	etag := `"` + pkg.sha256() + `"`
	rng := func(kv ...string) map[string]string {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	pastEnd := rng("Range", fmt.Sprintf("bytes=%d-", size))
	cases := []struct {
		name, method string
		hdr          map[string]string
		// the answer is ServeContent's to hdr, or where it departs from
		// RFC 9110 §14, to like (nil: the request without hdr)
		like     map[string]string
		departed bool
	}{
		{"whole", http.MethodGet, nil, nil, false},
		{"head", http.MethodHead, nil, nil, false},
		{"head range", http.MethodHead, rng("Range", "bytes=0-9"), nil, false},
		{"first bytes", http.MethodGet, rng("Range", "bytes=0-99"), nil, false},
		{"resume", http.MethodGet, rng("Range", "bytes=100-"), nil, false},
		{"last byte", http.MethodGet, rng("Range", fmt.Sprintf("bytes=%d-", size-1)), nil, false},
		{"end past size", http.MethodGet, rng("Range", "bytes=4990-9999"), nil, false},
		{"suffix", http.MethodGet, rng("Range", "bytes=-10"), nil, false},
		{"suffix longer than file", http.MethodGet, rng("Range", "bytes=-99999"), nil, false},
		{"zero suffix", http.MethodGet, rng("Range", "bytes=-0"), pastEnd, true},
		{"zero suffix among others", http.MethodGet, rng("Range", "bytes=-0,0-4"), rng("Range", "bytes=0-4"), true},
		{"start at size", http.MethodGet, rng("Range", fmt.Sprintf("bytes=%d-", size)), nil, false},
		{"reversed", http.MethodGet, rng("Range", "bytes=9-2"), nil, false},
		{"empty set", http.MethodGet, rng("Range", "bytes="), nil, false},
		{"other unit", http.MethodGet, rng("Range", "items=0-5"), nil, true},
		{"garbage", http.MethodGet, rng("Range", "lots"), nil, false},
		{"multi", http.MethodGet, rng("Range", "bytes=0-9,20-29"), nil, false},
		{"multi with the end", http.MethodGet, rng("Range", "bytes=0-9,-5"), nil, false},
		{"ranges larger than the file", http.MethodGet, rng("Range", "bytes=0-,0-"), nil, false},
		{"if-range etag", http.MethodGet, rng("Range", "bytes=10-", "If-Range", etag), nil, false},
		{"if-range other etag", http.MethodGet, rng("Range", "bytes=10-", "If-Range", `"other"`), nil, false},
		{"if-range weak etag", http.MethodGet, rng("Range", "bytes=10-", "If-Range", "W/"+etag), nil, false},
		{"if-range date", http.MethodGet, rng("Range", "bytes=10-", "If-Range", date), nil, false},
		{"if-range other date", http.MethodGet, rng("Range", "bytes=10-",
			"If-Range", modtime.Add(time.Hour).Format(http.TimeFormat)), nil, false},
		{"if-none-match", http.MethodGet, rng("If-None-Match", etag), nil, false},
		{"if-none-match other", http.MethodGet, rng("If-None-Match", `"other"`), nil, false},
		{"if-none-match star", http.MethodGet, rng("If-None-Match", "*"), nil, false},
		{"if-modified-since", http.MethodGet, rng("If-Modified-Since", date), nil, false},
		{"if-modified-since older", http.MethodGet, rng("If-Modified-Since", modtime.Add(-time.Hour).Format(http.TimeFormat)), nil, false},
		{"if-match other", http.MethodGet, rng("If-Match", `"other"`), nil, false},
		{"if-match", http.MethodGet, rng("If-Match", etag, "Range", "bytes=1-2"), nil, false},
		{"if-unmodified-since older", http.MethodGet, rng("If-Unmodified-Since", modtime.Add(-time.Hour).Format(http.TimeFormat)), nil, false},
	}
	out := make([]httpCase, len(cases))
	for i, c := range cases {
		out[i] = httpCase{name: c.name, method: c.method, hdr: c.hdr}
		hdr := c.hdr
		if c.departed {
			hdr = c.like
		}
		out[i].want = referenceAnswer(t, c.method, hdr, pkg.data, modtime, etag)
	}
	return out
}

// referenceAnswer is http.ServeContent's answer with the gateway's headers.
func referenceAnswer(t testing.TB, method string, hdr map[string]string, data []byte, modtime time.Time, etag string) answer {
	t.Helper()
	r := httptest.NewRequest(method, "/f", nil)
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("ETag", etag)
	w.Header().Set("Accept-Ranges", "bytes")
	http.ServeContent(w, r, "", modtime, bytes.NewReader(data))
	body := w.Body.Bytes()
	if method == http.MethodHead {
		body = nil
	}
	return answerOf(t, w.Code, w.Header(), body)
}

// waitFetches waits until n downloads were asked of the fetcher.
func waitFetches(t testing.TB, e *env, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		e.f.mu.Lock()
		got := e.f.fetches
		e.f.mu.Unlock()
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d fetches, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestHeadDoesNotDownload: a HEAD of a package nobody has downloaded yet is
// answered from its database entry (size, ETag, date), and starts nothing.
func TestHeadDoesNotDownload(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	cold := newTestPkg(t, "cold", "1.0-1", 300_000, nil)
	e.publish(t, dbTime, cold)
	e.sync(t)
	for _, hdr := range []map[string]string{nil, {"Range": "bytes=100-"}} {
		resp, body := e.get(t, http.MethodHead, "/core/os/x86_64/"+cold.filename, hdr)
		want := referenceAnswer(t, http.MethodHead, hdr, cold.data, time.Unix(cold.buildDate, 0).UTC(), `"`+cold.sha256()+`"`)
		if got := answerOf(t, resp.StatusCode, resp.Header, body); got != want {
			t.Errorf("HEAD %v:\n got %v\nwant %v", hdr, got, want)
		}
	}
	e.f.mu.Lock()
	defer e.f.mu.Unlock()
	if e.f.fetches != 0 {
		t.Fatalf("a HEAD started %d downloads", e.f.fetches)
	}
}
