package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"
)

func TestParseRanges(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, header string
		want         []byteRange
		wantErr      error
	}{
		{"none", "", nil, nil},
		{"other unit", "items=0-5", nil, errBadRange},
		{"empty set", "bytes=", nil, nil},
		{"open", "bytes=10-", []byteRange{{10, 90}}, nil},
		{"closed", "bytes=10-19", []byteRange{{10, 10}}, nil},
		{"end past size", "bytes=90-200", []byteRange{{90, 10}}, nil},
		{"suffix", "bytes=-30", []byteRange{{70, 30}}, nil},
		{"suffix past size", "bytes=-300", []byteRange{{0, 100}}, nil},
		{"zero suffix, as ServeContent reads it", "bytes=-0", []byteRange{{100, 0}}, nil},
		{"last byte", "bytes=99-", []byteRange{{99, 1}}, nil},
		{"start at size", "bytes=100-", nil, errNoOverlap},
		{"one past, one in", "bytes=200-,0-0", []byteRange{{0, 1}}, nil},
		{"reversed", "bytes=20-10", nil, errBadRange},
		{"garbage", "bytes=abc", nil, errBadRange},
		{"negative", "bytes=--5", nil, errBadRange},
		{"multi", "bytes=0-1, 5-6", []byteRange{{0, 2}, {5, 2}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseRanges(tt.header, 100)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestNormalizeRange(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, header string
		ok           bool
		after        string // the Range header ServeContent then sees
	}{
		{"none", "", true, ""},
		{"bytes untouched", "bytes=0-5", true, "bytes=0-5"},
		{"other unit ignored", "items=0-5", true, ""},
		{"malformed left to ServeContent", "garbage", true, "garbage"},
		{"zero suffix alone", "bytes=-0", false, "bytes=-0"},
		{"zero suffixes alone", "bytes=-0, -000", false, "bytes=-0, -000"},
		{"zero suffix dropped", "bytes=-0,0-5", true, "bytes=0-5"},
		{"empty set untouched", "bytes=", true, "bytes="},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			if tt.header != "" {
				r.Header.Set("Range", tt.header)
			}
			if ok := normalizeRange(r); ok != tt.ok {
				t.Fatalf("ok = %v, want %v", ok, tt.ok)
			}
			if got := r.Header.Get("Range"); got != tt.after {
				t.Fatalf("Range after = %q, want %q", got, tt.after)
			}
		})
	}
}

// serveContentAnswer is what http.ServeContent answers to a GET of size
// bytes with the given headers.
func serveContentAnswer(size int64, modtime time.Time, etag string, hdr map[string]string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, "/f", nil)
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	w.Header().Set("Content-Type", "application/octet-stream")
	if etag != "" {
		w.Header().Set("ETag", etag)
	}
	http.ServeContent(w, r, "", modtime, bytes.NewReader(make([]byte, size)))
	return w
}

// FuzzParseRanges: the gateway reads every Range header the way
// http.ServeContent then answers it, so a resume it refuses is a resume
// ServeContent would have served.
func FuzzParseRanges(f *testing.F) {
	for _, s := range []string{"bytes=0-", "bytes=-0", "bytes=", "items=0-5", "bytes=5-1", "bytes=0-0,-1",
		"bytes= 1 - 2 ,", "bytes=-", "bytes=99999999999999999999-", "bytes=1-2,3-4,5-", "bytes=0-0,0-0"} {
		f.Add(s, int64(100))
	}
	f.Fuzz(func(t *testing.T, h string, size int64) {
		size = 1 + (size&0x7fffffff)%4096
		w := serveContentAnswer(size, time.Time{}, "", map[string]string{"Range": h})
		ranges, err := parseRanges(h, size)
		var sum int64
		for _, rg := range ranges {
			sum += rg.length
		}
		switch {
		case err != nil:
			if w.Code != http.StatusRequestedRangeNotSatisfiable {
				t.Fatalf("%q: parse error %v, ServeContent %d", h, err, w.Code)
			}
		case len(ranges) == 0 || sum > size:
			if w.Code != http.StatusOK {
				t.Fatalf("%q: whole file, ServeContent %d", h, w.Code)
			}
		case len(ranges) == 1:
			rg := ranges[0]
			want := fmt.Sprintf("bytes %d-%d/%d", rg.start, rg.start+rg.length-1, size)
			if w.Code != http.StatusPartialContent || w.Header().Get("Content-Range") != want {
				t.Fatalf("%q: %+v, ServeContent %d %q", h, rg, w.Code, w.Header().Get("Content-Range"))
			}
		default:
			if w.Code != http.StatusPartialContent || w.Header().Get("Content-Range") != "" {
				t.Fatalf("%q: %d ranges, ServeContent %d", h, len(ranges), w.Code)
			}
		}
	})
}

// FuzzIfRange: the gateway decides whether If-Range lets a Range apply
// (ETag or HTTP date) as http.ServeContent does.
func FuzzIfRange(f *testing.F) {
	modtime := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	for _, s := range []string{"", `"abc"`, `W/"abc"`, `"abd"`, modtime.Format(http.TimeFormat),
		"Sun, 01 Nov 2026 12:00:00 GMT", "Sunday, 01-Nov-26 12:00:00 GMT", "Sun Nov  1 12:00:00 2026",
		modtime.Add(time.Second).Format(http.TimeFormat), `"abc" trailing`, "garbage", `"`} {
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, ir string, noModtime bool) {
		mt := modtime
		if noModtime {
			mt = time.Time{}
		}
		w := serveContentAnswer(100, mt, `"abc"`, map[string]string{"Range": "bytes=0-0", "If-Range": ir})
		if w.Code != http.StatusOK && w.Code != http.StatusPartialContent {
			return // a header net/http rejects before If-Range matters
		}
		if got, want := ifRangeHolds(ir, `"abc"`, mt), w.Code == http.StatusPartialContent; got != want {
			t.Fatalf("If-Range %q: holds = %v, ServeContent status %d", ir, got, w.Code)
		}
	})
}
