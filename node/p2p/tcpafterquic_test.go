package p2p

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// TestLANSimultaneousDialEndsOnTCP: two LAN machines listening on TCP and
// QUIC that dial each other at the same moment get one TCP connection by
// simultaneous open, whose handshake fails on both sides; libp2p then
// dials the QUIC address at once (no dial is left in flight), and the pair
// would stay on QUIC, every blob stream between them at about 3x the CPU
// of TCP and with no reset when one of them dies (dialorder.go). They
// must end up on TCP. Real hosts, real sockets, in a network namespace
// whose loopback drops the first SYNs (as TestPSKSimultaneousDial).
func TestLANSimultaneousDialEndsOnTCP(t *testing.T) {
	if os.Getenv(netnsChildEnv) == "" {
		runInNetns(t, "TestLANSimultaneousDialEndsOnTCP")
		return
	}
	sh := netnsShell(t)
	sh("ip", "link", "set", "lo", "up")
	const pairs = 4
	hosts := hostPairs(t, pairs, Config{ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"}})
	allowSYNs := dropSYNs(sh)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, pair := range hosts {
		for k := range 2 {
			from, to := pair[k], pair[1-k]
			from.h.Peerstore().AddAddrs(to.ID(), to.Addrs(), time.Hour)
			from.sites.markLAN(to.ID()) // as mDNS does before it dials
			wg.Go(func() {
				<-start
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				defer cancel()
				_ = from.connect(ctx, to.h.Peerstore().PeerInfo(to.ID()))
			})
		}
	}
	close(start)
	time.Sleep(300 * time.Millisecond) // every connect has sent its (dropped) SYN
	allowSYNs()
	wg.Wait()
	// The move to TCP follows the connection (the higher peer ID looks
	// after about 0.5 s): wait for it, within a bound.
	onTCP := func(h *Host, p peer.ID) bool {
		conns := h.h.Network().ConnsToPeer(p)
		for _, c := range conns {
			if _, err := c.RemoteMultiaddr().ValueForProtocol(ma.P_TCP); err != nil {
				return false
			}
		}
		return len(conns) > 0
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		all := true
		for _, pair := range hosts {
			all = all && onTCP(pair[0], pair[1].ID()) && onTCP(pair[1], pair[0].ID())
		}
		if all {
			break
		}
	}
	for i, pair := range hosts {
		for k := range 2 {
			conns := pair[k].h.Network().ConnsToPeer(pair[1-k].ID())
			if len(conns) == 0 {
				t.Errorf("pair %d side %d: not connected", i, k)
			}
			for _, c := range conns {
				if _, err := c.RemoteMultiaddr().ValueForProtocol(ma.P_TCP); err != nil {
					t.Errorf("pair %d side %d: connected over %s (%s), want TCP only", i, k, c.RemoteMultiaddr(), c.Stat().Direction)
				}
			}
		}
	}
}

// TestMoveToTCPSparesABusyConnection: a LAN peer on QUIC alone is not cut
// off while a blob stream runs over the connection (the transfer would
// fail); once the connection is idle, the move takes it to TCP.
func TestMoveToTCPSparesABusyConnection(t *testing.T) {
	t.Parallel()
	both := func(c *Config) {
		c.ListenAddrs = []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"}
	}
	a := startNode(t, newMemStore(t), both)
	b := startNode(t, newMemStore(t), both)
	// The looks a new connection starts are taken: the test makes its own.
	a.s.quic.first(b.id(), time.Now())
	b.s.quic.first(a.id(), time.Now())
	var quicAddrs []ma.Multiaddr
	for _, addr := range a.s.h.Addrs() {
		if _, err := addr.ValueForProtocol(ma.P_QUIC_V1); err == nil {
			quicAddrs = append(quicAddrs, addr)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := b.s.h.Connect(ctx, peer.AddrInfo{ID: a.id(), Addrs: quicAddrs}); err != nil {
		t.Fatalf("connect over QUIC: %v", err)
	}
	b.s.h.Peerstore().AddAddrs(a.id(), a.s.h.Addrs(), time.Hour) // its TCP address too, as identify gives it
	if !b.s.onQUICOnly(a.id()) {
		t.Fatalf("conns %v: want QUIC alone", b.s.h.Network().ConnsToPeer(a.id()))
	}
	str, err := b.s.h.NewStream(ctx, a.id(), blobProtoLive) // a waits for the request
	if err != nil {
		t.Fatal(err)
	}
	b.s.toTCP(ctx, a.id())
	if !b.s.onQUICOnly(a.id()) || str.Conn().IsClosed() {
		t.Fatalf("a QUIC connection carrying a blob stream was closed: conns %v", b.s.h.Network().ConnsToPeer(a.id()))
	}
	_ = str.Reset()
	for deadline := time.Now().Add(5 * time.Second); busy(str.Conn()) && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
	}
	b.s.toTCP(ctx, a.id())
	conns := b.s.h.Network().ConnsToPeer(a.id())
	for _, c := range conns {
		if _, err := c.RemoteMultiaddr().ValueForProtocol(ma.P_TCP); err != nil {
			t.Errorf("idle, still connected over %s, want TCP", c.RemoteMultiaddr())
		}
	}
	if len(conns) == 0 {
		t.Error("not connected after the move")
	}
}
