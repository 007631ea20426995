package node

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestMirrorSpansWhileLookupOut: a download that starts on the mirror while
// its lookup is still out (no peer answered by the soft deadline) asks the
// mirror for a first span, not the whole file, so the peer that answers
// late and takes over leaves the mirror nothing more to send; a download
// whose lookup is over, or asked no peer of this site, asks the mirror once
// for the whole file. Real
// sockets (an HTTP mirror), no timer: the late answer comes once the
// mirror holds the first request, whose body waits until the test ends.
func TestMirrorSpansWhileLookupOut(t *testing.T) {
	t.Parallel()
	const size = 1 << 20
	pkg := newTestPkg(t, "span-1.0-1-x86_64.pkg.tar.zst", size, testKeyring(t).packager)
	cases := []struct {
		name       string
		lookupOut  bool
		asksLAN    bool     // the lookup asked a peer of this site
		wantRanges []string // the Range of each package request the mirror got
	}{
		{"lookup out, a late peer takes over", true, true, []string{"bytes=0-16383"}},
		{"lookup out on remote peers only", true, false, []string{""}},
		{"lookup over", false, true, []string{""}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			mirror := newFakeMirror(t, mirrorMode{}, map[string][]byte{pkg.name: pkg.data})
			asked := make(chan string, 4)
			mirror.asked = asked
			if tc.lookupOut {
				mirror.gate = make(chan struct{}) // the body waits: the peer takes over first
				t.Cleanup(func() { close(mirror.gate) })
			}
			client := &http.Client{}
			t.Cleanup(client.CloseIdleConnections)
			src := mirrorSource{client: client, base: mirror.srv.URL + "/core/os/x86_64", file: pkg.name}
			lanPeer := &pacedSource{name: "peer", id: "peerL", data: pkg.data, chunk: 256 << 10}
			n := hedgeNode()
			v := digestVerifier(t, pkg)
			out := &gapWriter{last: time.Now()}
			tr := newTransfer(n, pkg.cid, pkg.name, v, &sink{p: out, v: v, size: size}, []source{src})
			tr.spanMirrors = tc.asksLAN
			if tc.lookupOut {
				late := make(chan source)
				tr.late = late
				go func() {
					<-asked // the mirror holds the download's first request
					late <- lanPeer
					close(late)
				}()
			}
			if _, err := tr.run(t.Context()); err != nil {
				t.Fatalf("transfer: %v", err)
			}
			if !bytes.Equal(out.buf.Bytes(), pkg.data) {
				t.Fatal("the download is not the signed bytes")
			}
			var ranges []string
			for _, r := range mirror.requests(pkg.name) {
				ranges = append(ranges, r.rangeHdr)
			}
			if strings.Join(ranges, ",") != strings.Join(tc.wantRanges, ",") {
				t.Errorf("the mirror was asked for %q, want %q", ranges, tc.wantRanges)
			}
		})
	}
}

// TestMirrorFetchSpan: a span is the bytes asked for, the last one says it
// reached the end, and a mirror that ignores Range (200) gives the rest of
// the file at once.
func TestMirrorFetchSpan(t *testing.T) {
	t.Parallel()
	data := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	ranged := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "f", time.Time{}, bytes.NewReader(data))
	}))
	t.Cleanup(ranged.Close)
	whole := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(data) }))
	t.Cleanup(whole.Close)
	cases := []struct {
		name     string
		srv      *httptest.Server
		off, n   int64
		want     []byte
		wantLast bool
	}{
		{"a span inside", ranged, 100, 1000, data[100:1100], false},
		{"the last span", ranged, 60000, 8192, data[60000:], true},
		{"a span to the exact end", ranged, 0, int64(len(data)), data, true},
		{"a mirror ignoring Range", whole, 100, 1000, data[100:], true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := mirrorSource{client: tc.srv.Client(), base: tc.srv.URL, file: "f"}
			var out bytes.Buffer
			k, last, err := m.FetchSpan(t.Context(), tc.off, tc.n, &out)
			if err != nil || k != int64(len(tc.want)) || last != tc.wantLast || !bytes.Equal(out.Bytes(), tc.want) {
				t.Errorf("FetchSpan(%d, %d) = %d bytes (%d written), last %v, %v; want %d bytes, last %v",
					tc.off, tc.n, k, out.Len(), last, err, len(tc.want), tc.wantLast)
			}
		})
	}
}
