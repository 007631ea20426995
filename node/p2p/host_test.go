package p2p

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ma "github.com/multiformats/go-multiaddr"
)

// writePSK writes an IPFS-style swarm key.
func writePSK(t *testing.T) string {
	t.Helper()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "swarm.key")
	body := "/key/swarm/psk/1.0.0/\n/base16/\n" + hex.EncodeToString(key) + "\n"
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestPrivateNetwork: nodes sharing a swarm key talk; a node with another
// key (or none) cannot; QUIC is turned off by a key.
func TestPrivateNetwork(t *testing.T) {
	t.Parallel()
	psk := writePSK(t)
	withPSK := func(path string) func(*Config) { return func(c *Config) { c.PSKFile = path } }
	a := startNode(t, newMemStore(t), withPSK(psk))
	b := startNode(t, newMemStore(t), withPSK(psk), withBootstrap(a))
	waitConnected(t, b.s.h, a.id())

	for _, tt := range []struct {
		name string
		opt  func(*Config)
	}{
		{"other key", withPSK(writePSK(t))},
		{"no key", func(*Config) {}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			outsider := startNode(t, newMemStore(t), tt.opt)
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			if err := outsider.s.h.Connect(ctx, a.addrInfo()); err == nil {
				t.Fatal("a node outside the private network connected")
			}
		})
	}
	// After the parallel outsiders: their connections were accepted and
	// never secured; a sweep past the grace counts them.
	t.Cleanup(func() {
		a.s.bans.outsiders.sweep(time.Now().Add(handshakeGrace))
		if got := a.s.Refused(); got.Handshake < 2 || got.NotAllowed != 0 || got.Banned != 0 {
			t.Errorf("Refused() = %+v, want the 2 outsiders as failed handshakes", got)
		}
		if got := b.s.Refused(); got != (Refused{}) {
			t.Errorf("B refused %+v, want nothing (it only dialed a keyed peer)", got)
		}
	})
	if _, _, err := listenAddrs([]string{"/ip4/127.0.0.1/udp/0/quic-v1"}, true); err == nil {
		t.Fatal("quic-only listen addresses accepted with a private network key")
	}
	// The defaults (TCP and QUIC) with a key: QUIC goes, TCP stays.
	out, dropped, err := listenAddrs(nil, true)
	if err != nil || len(out) != 1 || len(dropped) != 1 || out[0].String() != defaultListenAddrs[0] {
		t.Fatalf("default listen addresses with a key = %v (dropped %v), %v; want tcp only", out, dropped, err)
	}
}

// TestAddressFilters: loopback addresses are neither advertised nor dialed,
// unless the node itself is loopback-only (tests).
func TestAddressFilters(t *testing.T) {
	t.Parallel()
	addrs := func(ss ...string) []ma.Multiaddr {
		out := make([]ma.Multiaddr, len(ss))
		for i, s := range ss {
			out[i] = ma.StringCast(s)
		}
		return out
	}
	tests := []struct {
		name     string
		in       []ma.Multiaddr
		loopback bool // this node listens on loopback only
		wantAdv  int  // advertised by dropLoopback
		wantDial int  // kept by usableAddrs
	}{
		{"lan and loopback", addrs("/ip4/127.0.0.1/tcp/19432", "/ip4/10.0.0.5/tcp/19432"), false, 1, 1},
		{"loopback only, lan node", addrs("/ip4/127.0.0.1/tcp/19432"), false, 1, 0},
		{"loopback only, loopback node", addrs("/ip4/127.0.0.1/tcp/19432", "/ip6/::1/tcp/1"), true, 2, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := dropLoopback(tt.in); len(got) != tt.wantAdv {
				t.Errorf("dropLoopback = %v, want %d addresses", got, tt.wantAdv)
			}
			s := &Host{loopback: tt.loopback}
			if got := s.usableAddrs(tt.in); len(got) != tt.wantDial {
				t.Errorf("usableAddrs = %v, want %d addresses", got, tt.wantDial)
			}
		})
	}
	for _, bad := range [][]string{{"not a multiaddr"}} {
		if _, _, err := listenAddrs(bad, false); err == nil {
			t.Errorf("listenAddrs(%q) accepted", bad)
		}
	}
	if _, err := parseBootstrap([]string{"/ip4/10.0.0.1/tcp/19432"}); err == nil {
		t.Error("bootstrap address without /p2p/ID accepted")
	}
}

// TestConnectedAddrsOnce: a peer reachable over TCP and QUIC is listed with
// each distinct address once, both transports included, however many
// connections there are.
func TestConnectedAddrsOnce(t *testing.T) {
	t.Parallel()
	both := func(c *Config) {
		c.ListenAddrs = []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"}
	}
	a := startNode(t, newMemStore(t), both)
	b := startNode(t, newMemStore(t), both, withBootstrap(a))
	waitConnected(t, b.s.h, a.id())
	var got []string
	for _, ps := range b.s.Connected() {
		if ps.ID == a.id() {
			got = ps.Addrs
		}
	}
	seen := map[string]bool{}
	var tcp, quic bool
	for _, s := range got {
		if seen[s] {
			t.Fatalf("address %s listed twice in %v", s, got)
		}
		seen[s] = true
		tcp = tcp || strings.Contains(s, "/tcp/")
		quic = quic || strings.Contains(s, "/quic-v1")
	}
	if !tcp || !quic {
		t.Fatalf("Connected addrs of A = %v, want its TCP and its QUIC address", got)
	}
}
