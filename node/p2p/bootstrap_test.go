package p2p

import (
	"testing"
	"time"
)

// TestParseBootstrap: IP and DNS multiaddrs need the peer ID; a /dnsaddr/
// name may come without it (its TXT records carry it).
func TestParseBootstrap(t *testing.T) {
	t.Parallel()
	const id = "12D3KooWPN5WD5DwA6idWPJsrsDoRLgzwuG9ThJa3G8eRFKQuEQs"
	tests := []struct {
		name    string
		in      []string
		peers   int
		dnsaddr int
		ok      bool
	}{
		{"ip4", []string{"/ip4/10.0.0.1/tcp/19432/p2p/" + id}, 1, 0, true},
		{"two addrs of one peer", []string{"/ip4/10.0.0.1/tcp/19432/p2p/" + id, "/dns4/boot.example.org/tcp/19432/p2p/" + id}, 1, 0, true},
		{"dns6", []string{"/dns6/boot.example.org/tcp/19432/p2p/" + id}, 1, 0, true},
		{"dnsaddr without id", []string{"/dnsaddr/boot.example.org"}, 0, 1, true},
		{"dnsaddr with id", []string{"/dnsaddr/boot.example.org/p2p/" + id}, 1, 0, true},
		{"ip4 without id", []string{"/ip4/10.0.0.1/tcp/19432"}, 0, 0, false},
		{"dns4 without id", []string{"/dns4/boot.example.org/tcp/19432"}, 0, 0, false},
		{"not a multiaddr", []string{"boot.example.org:19432"}, 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseBootstrap(tt.in)
			if (err == nil) != tt.ok {
				t.Fatalf("parseBootstrap(%q) err = %v, want ok %v", tt.in, err, tt.ok)
			}
			var peers, names int
			for _, b := range got {
				if b.dnsaddr != nil {
					names++
				} else {
					peers++
				}
			}
			if peers != tt.peers || names != tt.dnsaddr {
				t.Fatalf("parseBootstrap(%q) = %d peers, %d names; want %d, %d", tt.in, peers, names, tt.peers, tt.dnsaddr)
			}
		})
	}
}

// TestBackoff: the redial delay doubles from redialMin to redialMax, and
// jitter moves it by at most redialJitter either way.
func TestBackoff(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	var b backoff
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second}
	for i, w := range want {
		b.failed(now, 0.5) // no jitter
		if b.delay != w || b.next.Sub(now) != w {
			t.Fatalf("failure %d: delay %v, next in %v; want %v", i+1, b.delay, b.next.Sub(now), w)
		}
	}
	for _, j := range []float64{0, 1} {
		b := backoff{delay: 5 * time.Second}
		b.failed(now, j)
		lo, hi := time.Duration(float64(10*time.Second)*(1-redialJitter)), time.Duration(float64(10*time.Second)*(1+redialJitter))
		if d := b.next.Sub(now); d < lo || d > hi {
			t.Fatalf("jitter %v: next in %v, want within [%v, %v]", j, d, lo, hi)
		}
	}
}
