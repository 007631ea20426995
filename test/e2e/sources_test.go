package e2e

import (
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path"
	"regexp"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// Issue 7: a bad or slow source costs a little time, never a failed
// upgrade. pacman (its own limits: connect 10 s, abort below 1 B/s for
// 10 s) must get the signed bytes whenever an honest source exists.

// TestHostilePeers: on a LAN, a peer claims the big package and trickles,
// crawls, stalls, or sends the right bytes with junk after them; the
// upstream mirror is honest. pacman -Sw through the victim gets the signed
// package; peers that lied about the size are banned.
func TestHostilePeers(t *testing.T) {
	fx := LoadFixtures(t)
	requirePacman(t)
	if fx.BigMB == 0 {
		t.Skip("needs the big fixture package (FLOCON_E2E_BIG_MB > 0)")
	}
	requireNetns(t)
	up := NewUpstream(t, fx.Mirror, WithAddr("0.0.0.0:0"))
	big := fx.Package(t, "big")
	for _, tc := range []struct {
		mode string
		ban  bool
	}{
		{"trickle", false}, // 1 byte every 4 s
		{"slow", false},    // 3 KB/s
		{"stall", false},   // says "have", then nothing
		{"junk", true},     // the right bytes, then more
		{"oversize", true}, // announces 1 MiB more than the file
	} {
		t.Run(tc.mode, func(t *testing.T) {
			t.Parallel()
			// A LAN of its own: the victim must meet only its hostile peer.
			lan := newLAN(t)
			hns, _ := lan.add(0)
			vns, vip := lan.add(1)
			h := startHostile(t, hns, big.CID(), big.Size, "--mode", tc.mode, "--file", fx.Path(big))
			d := StartDaemon(t, DaemonConfig{
				Mirrors: []string{"http://" + lan.gateway() + ":" + portOf(t, up.URL()) + "/$repo/os/$arch"},
				Keyring: fx.Keyring, P2P: true, Listen: vip + ":19433", Prefix: []string{"ip", "netns", "exec", vns},
				Args: []string{"--p2p-listen", "/ip4/0.0.0.0/tcp/19432"},
			})
			waitPeers(t, d, h.id)
			p := NewPacman(t, fx.Keyring, []string{d.Server()})
			p.Sy()
			start := time.Now()
			p.Sw(big.Name)
			took := time.Since(start)
			h.waitLine(t, regexp.MustCompile(`^sending `+tc.mode), time.Second) // the victim did ask it
			if sum, err := FileSHA256(p.CacheFile(big.File)); err != nil || sum != big.SHA256 {
				t.Fatalf("pacman's copy: sha256 %s (%v), want the signed %s", sum, err, big.SHA256)
			}
			banned := false
			for _, b := range bansOf(t, d) {
				banned = banned || b.Peer == h.id
			}
			if banned != tc.ban {
				t.Errorf("hostile peer banned = %v, want %v", banned, tc.ban)
			}
			t.Logf("%s: pacman -Sw took %s", tc.mode, took.Round(time.Millisecond))
		})
	}
}

// TestStallingMirror: the first mirror stalls on the big package, before
// its headers or mid-body; the second is honest. pacman -Sw gets the
// signed package (pacman would abort after 10 s without a byte).
func TestStallingMirror(t *testing.T) {
	fx := LoadFixtures(t)
	requirePacman(t)
	if fx.BigMB == 0 {
		t.Skip("needs the big fixture package (FLOCON_E2E_BIG_MB > 0)")
	}
	big := fx.Package(t, "big")
	up := NewUpstream(t, fx.Mirror)
	for _, midBody := range []bool{false, true} {
		name := "before headers"
		if midBody {
			name = "mid-body"
		}
		t.Run(name, func(t *testing.T) {
			var head []byte // the real first MiB, sent before the stall
			if midBody {
				head = fx.ReadFile(t, big)[:1<<20]
			}
			st := newStallingMirror(t, up.URL(), big.File, head, big.Size)
			d := StartDaemon(t, DaemonConfig{Mirrors: []string{st.url + "/$repo/os/$arch", up.Mirror()}, Keyring: fx.Keyring})
			p := NewPacman(t, fx.Keyring, []string{d.Server()})
			p.Sy()
			p.Sw(big.Name)
			if st.stalled.Load() == 0 {
				t.Fatal("the stalling mirror was never asked for the package")
			}
			if sum, err := FileSHA256(p.CacheFile(big.File)); err != nil || sum != big.SHA256 {
				t.Fatalf("pacman's copy: sha256 %s (%v), want the signed %s", sum, err, big.SHA256)
			}
		})
	}
}

// stallingMirror proxies to an honest upstream but stalls on one file:
// before sending its headers, or after head (the file's first bytes).
type stallingMirror struct {
	url     string
	stalled atomic.Int32
}

func newStallingMirror(t *testing.T, upstream, file string, head []byte, size int64) *stallingMirror {
	t.Helper()
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	sm := &stallingMirror{}
	proxy := httputil.NewSingleHostReverseProxy(u)
	done := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if path.Base(r.URL.Path) != file {
			proxy.ServeHTTP(w, r)
			return
		}
		sm.stalled.Add(1)
		if head != nil {
			w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(head)
			w.(http.Flusher).Flush()
		}
		select { // hold the request until the client gives up
		case <-r.Context().Done():
		case <-done:
		}
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() {
		close(done)
		_ = srv.Close()
	})
	sm.url = "http://" + l.Addr().String()
	return sm
}
