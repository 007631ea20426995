package p2p

import (
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/flocon/flocon/node/routing"
)

// TestPeerExchange: two hosts given only the bootstrap host's address, with
// the DHT off (so no routing table tells them of each other), connect to
// each other through what the bootstrap host answers on /flocon/peers.
func TestPeerExchange(t *testing.T) {
	t.Parallel()
	noDHT := func(c *Config) { c.DisableDHT = true }
	boot := startNode(t, newMemStore(t), noDHT)
	x := startNode(t, newMemStore(t), noDHT, withBootstrap(boot))
	y := startNode(t, newMemStore(t), noDHT, withBootstrap(boot))
	waitConnected(t, x.s.h, y.id())
	waitConnected(t, y.s.h, x.id())

	infos, err := x.s.askPeers(t.Context(), boot.id())
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 1 || infos[0].ID != y.id() || len(infos[0].Addrs) == 0 {
		t.Errorf("boot told x %+v, want y (%s) with its addresses and not x itself", infos, y.id())
	}
}

// TestLANAsksThisSite: with the DHT on, the LAN router asks only the peers
// of this site (found by mDNS): another site's copy is the DHT's to find.
// With the DHT off it is the only router and asks every connected peer.
func TestLANAsksThisSite(t *testing.T) {
	t.Parallel()
	remote := func(c *Config) { c.SingleSite = false }
	holder := newMemStore(t)
	a := startNode(t, holder, remote)
	c := holder.addBlob(t, []byte("a blob held at another site"))
	b := startNode(t, newMemStore(t), remote, withBootstrap(a))
	lanOnly := startNode(t, newMemStore(t), remote, withBootstrap(a), func(c *Config) { c.DisableDHT = true })
	waitConnected(t, b.s.h, a.id())
	waitConnected(t, lanOnly.s.h, a.id())

	find := func(tn *testNode) []routing.Provider {
		var out []routing.Provider
		for pr := range tn.s.LAN().FindProviders(t.Context(), c) {
			out = append(out, pr)
		}
		return out
	}
	if got := find(b); len(got) != 0 {
		t.Errorf("LAN router asked a peer of another site: %+v", got)
	}
	if got := find(lanOnly); len(got) != 1 || got[0].ID != a.id() || got[0].Site != routing.Remote || got[0].Via != "lan" {
		t.Errorf("with the DHT off the LAN router found %+v, want %s (remote, via lan)", got, a.id())
	}
	b.s.sites.markLAN(a.id()) // as mDNS does
	if got := find(b); len(got) != 1 || got[0].ID != a.id() || got[0].Site != routing.SameLAN || got[0].Via != "lan" {
		t.Errorf("LAN router found %+v, want %s (lan, via lan)", got, a.id())
	}
}

// TestRelaySlot: a host whose bootstrap peer runs the relay service holds a
// slot on it at once, so a peer that cannot reach it directly (no address
// to dial: a machine behind another NAT) reaches it through the relay, on
// a limited connection that `flocon peers` shows as relayed.
func TestRelaySlot(t *testing.T) {
	t.Parallel()
	noDHT := func(c *Config) { c.DisableDHT = true }
	relay := startNode(t, newMemStore(t), noDHT, func(c *Config) { c.Relay = true })
	x := startNode(t, newMemStore(t), noDHT, withBootstrap(relay))
	y, err := libp2p.New(libp2p.NoListenAddrs, libp2p.EnableRelay(), libp2p.DisableMetrics())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = y.Close() })
	if err := y.Connect(t.Context(), relay.addrInfo()); err != nil {
		t.Fatal(err)
	}
	circuit, err := ma.NewMultiaddr(relay.s.h.Addrs()[0].String() + "/p2p/" + relay.id().String() + "/p2p-circuit")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for { // x reserves its slot within a reserveCheck of connecting
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		err := y.Connect(network.WithAllowLimitedConn(ctx, "test"), peer.AddrInfo{ID: x.id(), Addrs: []ma.Multiaddr{circuit}})
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no relayed connection to x: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := x.s.h.Network().Connectedness(y.ID()); got != network.Limited {
		t.Fatalf("x's connectedness to y: %v, want limited (relayed only)", got)
	}
	if st := statOf(x.s, y.ID()); st.ID != y.ID() || !st.Relayed {
		t.Errorf("x's peer stat of y: %+v, want relayed", st)
	}
	if st := statOf(x.s, relay.id()); st.Relayed {
		t.Errorf("x's peer stat of the relay: %+v, want direct", st)
	}
}

func statOf(s *Host, p peer.ID) PeerStat {
	for _, st := range s.Connected() {
		if st.ID == p {
			return st
		}
	}
	return PeerStat{}
}
