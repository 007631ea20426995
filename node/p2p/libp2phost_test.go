package p2p

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"
)

// TestBuiltHost: the host assembled without libp2p.New (libp2phost.go)
// runs what libp2p.New ran for flocon: TCP and QUIC (QUIC off with a
// PSK), identify, ping, the AutoNAT service and the circuit relay
// transport, and two such hosts connect over QUIC alone.
func TestBuiltHost(t *testing.T) {
	t.Parallel()
	tcpQUIC := func(c *Config) {
		c.ListenAddrs = []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"}
	}
	a := startNode(t, newMemStore(t), tcpQUIC)
	b := startNode(t, newMemStore(t), tcpQUIC)
	var quicAddrs []ma.Multiaddr
	for _, addr := range a.s.h.Addrs() {
		if _, err := addr.ValueForProtocol(ma.P_QUIC_V1); err == nil {
			quicAddrs = append(quicAddrs, addr)
		}
	}
	if len(quicAddrs) == 0 || len(quicAddrs) == len(a.s.h.Addrs()) {
		t.Fatalf("addrs %v: want TCP and QUIC ones", a.s.h.Addrs())
	}
	protos := a.s.h.Mux().Protocols()
	for _, want := range []protocol.ID{
		"/ipfs/id/1.0.0", "/ipfs/ping/1.0.0", "/libp2p/autonat/1.0.0",
		"/libp2p/circuit/relay/0.2.0/stop",
	} { // DCUtR serves once the host has a public address: test/e2e/nat_test.go

		if !slices.Contains(protos, want) {
			t.Errorf("protocol %s not served; serving %v", want, protos)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := b.s.h.Connect(ctx, peer.AddrInfo{ID: a.id(), Addrs: quicAddrs}); err != nil {
		t.Fatalf("connect over QUIC: %v", err)
	}
	conns := b.s.h.Network().ConnsToPeer(a.id())
	if len(conns) == 0 || conns[0].ConnState().Transport != "quic-v1" {
		t.Fatalf("conns %v: want one over quic-v1", conns)
	}

	withPSK := startNode(t, newMemStore(t), tcpQUIC, func(c *Config) { c.PSKFile = writePSK(t) })
	for _, addr := range withPSK.s.h.Addrs() {
		if _, err := addr.ValueForProtocol(ma.P_QUIC_V1); err == nil {
			t.Errorf("a host with a PSK listens on QUIC: %v", addr)
		}
	}
}
