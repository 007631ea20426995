package p2p

import (
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	ma "github.com/multiformats/go-multiaddr"
)

func TestLANTCPFirstRanking(t *testing.T) {
	t.Parallel()
	addrs := []string{
		"/ip4/192.168.1.5/udp/19432/quic-v1",
		"/ip4/192.168.1.5/tcp/19432",
		"/ip4/10.0.0.5/tcp/19432",
		"/ip4/1.2.3.4/udp/19432/quic-v1",
		"/ip4/1.2.3.4/tcp/19432",
	}
	var in []ma.Multiaddr
	for _, s := range addrs {
		in = append(in, ma.StringCast(s))
	}
	delay := map[string]time.Duration{}
	for _, ad := range lanTCPFirst(in) {
		delay[ad.Addr.String()] = ad.Delay
	}
	if len(delay) != len(addrs) {
		t.Fatalf("ranked %d addresses, want %d: %v", len(delay), len(addrs), delay)
	}
	if d := delay["/ip4/192.168.1.5/tcp/19432"]; d != 0 {
		t.Errorf("first LAN TCP address after %v, want at once", d)
	}
	if d := delay["/ip4/10.0.0.5/tcp/19432"]; d != lanDialStep {
		t.Errorf("second LAN TCP address after %v, want %v", d, lanDialStep)
	}
	if d := delay["/ip4/192.168.1.5/udp/19432/quic-v1"]; d != lanQUICDelay {
		t.Errorf("LAN QUIC after %v, want %v (after TCP)", d, lanQUICDelay)
	}
	// Public addresses keep libp2p's order: QUIC first, TCP later.
	if q, tc := delay["/ip4/1.2.3.4/udp/19432/quic-v1"], delay["/ip4/1.2.3.4/tcp/19432"]; q != 0 || tc != swarm.PublicTCPDelay {
		t.Errorf("public QUIC after %v, TCP after %v; want libp2p's 0 and %v", q, tc, swarm.PublicTCPDelay)
	}
}

// TestLANPeersConnectOverTCP: two nodes listening on TCP and QUIC (the
// defaults) on a private address end up on TCP.
func TestLANPeersConnectOverTCP(t *testing.T) {
	t.Parallel()
	both := func(c *Config) {
		c.ListenAddrs = []string{"/ip4/127.0.0.1/udp/0/quic-v1", "/ip4/127.0.0.1/tcp/0"}
	}
	a := startNode(t, newMemStore(t), both)
	b := startNode(t, newMemStore(t), both, withBootstrap(a))
	waitConnected(t, b.s.h, a.id())
	for _, c := range b.s.h.Network().ConnsToPeer(a.id()) {
		if _, err := c.RemoteMultiaddr().ValueForProtocol(ma.P_TCP); err != nil {
			t.Errorf("connected over %s, want TCP", c.RemoteMultiaddr())
		}
	}
}
