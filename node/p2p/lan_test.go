package p2p

import "testing"

// TestAsksLAN: a lookup asks a peer of this site once one is connected; a
// node whose only peer is at another site asks none (with the DHT on, the
// LAN router asks peers of this site only).
func TestAsksLAN(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		singleSite bool // every peer is of this site
		want       bool
	}{
		{"a peer of this site", true, true},
		{"a peer of another site only", false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			site := func(cfg *Config) { cfg.SingleSite = tc.singleSite }
			a := startNode(t, newMemStore(t), site)
			b := startNode(t, newMemStore(t), site)
			if got := b.s.AsksLAN(); got {
				t.Fatal("a node without peers asks a peer of its site")
			}
			if err := b.s.h.Connect(t.Context(), a.addrInfo()); err != nil {
				t.Fatal(err)
			}
			if got := b.s.AsksLAN(); got != tc.want {
				t.Errorf("AsksLAN = %v, want %v", got, tc.want)
			}
		})
	}
}
