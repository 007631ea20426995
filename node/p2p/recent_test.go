package p2p

import (
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/flocon/flocon/store/storetest"
)

// TestLookupDoesNotWaitForDeadPeer: a peer of this site killed (kill -9,
// over QUIC: it sends nothing) is still asked as a recently dropped peer,
// and its redial gets no answer. The lookup ends with the live peer's
// answer anyway, instead of waiting for that dial (before the fix, the
// swarm's dial timeout, 5 s on a private network: every lookup of the
// kill -9 bench ran past its soft deadline). The dead peer is then
// forgotten, so the next lookup does not dial it again. Every dial and
// lookup bound other than the redial's is an hour here, so without the
// redial's own bound the lookup never ends; the minute below only turns
// that hang into a failure.
func TestLookupDoesNotWaitForDeadPeer(t *testing.T) {
	t.Parallel()
	data := storetest.RandomBytes(3, 64<<10)
	stLive := newMemStore(t)
	c := stLive.addBlob(t, data)
	a := startNode(t, newMemStore(t), func(cfg *Config) {
		cfg.HaveTimeout = time.Hour
		cfg.swarmOpts = []swarm.Option{swarm.WithDialTimeout(time.Hour), swarm.WithDialTimeoutLocal(time.Hour)}
	})
	live := startNode(t, stLive)
	if err := a.s.h.Connect(t.Context(), live.addrInfo()); err != nil {
		t.Fatal(err)
	}
	dead := killConnectedPeer(t, a)
	if !slices.Contains(a.s.lookupPeers(), dead.ID()) {
		t.Fatal("a peer dropped moments ago is not asked")
	}

	answers := a.s.LAN().FindProviders(t.Context(), c)
	var got []peer.ID
	watchdog := time.After(time.Minute)
	for done := false; !done; {
		select {
		case pr, ok := <-answers:
			if !ok {
				done = true
				break
			}
			got = append(got, pr.ID)
		case <-watchdog:
			t.Fatal("the lookup is still out: it waits for the dead peer's dial")
		}
	}
	if !slices.Equal(got, []peer.ID{live.id()}) {
		t.Errorf("lookup answers %v, want the live peer %s", got, live.id())
	}
	if slices.Contains(a.s.lookupPeers(), dead.ID()) {
		t.Error("the dead peer is still asked after its redial failed")
	}
}

// killConnectedPeer connects a to a peer, then kills it as kill -9 over
// QUIC does: its connection drops (a puts it on the recent list, as the
// disconnect notification does) and its address then takes a dial and
// never answers (newSilentListener).
func killConnectedPeer(t *testing.T, a *testNode) host.Host {
	t.Helper()
	dead := newRawHost(t)
	if err := a.s.h.Connect(t.Context(), peer.AddrInfo{ID: dead.ID(), Addrs: dead.Addrs()}); err != nil {
		t.Fatal(err)
	}
	waitConnected(t, a.s.h, dead.ID())
	if err := a.s.h.Network().ClosePeer(dead.ID()); err != nil {
		t.Fatal(err)
	}
	_ = dead.Close()
	a.s.recent.mark(dead.ID(), time.Now())
	a.s.h.Peerstore().ClearAddrs(dead.ID())
	a.s.h.Peerstore().AddAddr(dead.ID(), newSilentListener(t), time.Hour)
	return dead
}

// newSilentListener accepts TCP connections and never sends a byte nor
// closes one until the test ends: a dial to it gets no answer, as a dial
// to a killed machine's QUIC address. It returns its libp2p address.
func newSilentListener(t *testing.T) ma.Multiaddr {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	a, err := manet.FromNetAddr(ln.Addr())
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestRecentPeers: the list of dropped peers a lookup asks again.
func TestRecentPeers(t *testing.T) {
	t.Parallel()
	const p = peer.ID("p")
	now := time.Now()
	cases := []struct {
		name  string
		steps func(r *recentPeers)
		want  bool // p is asked
	}{
		{"dropped moments ago", func(r *recentPeers) { r.mark(p, now) }, true},
		{"dropped long ago", func(r *recentPeers) { r.mark(p, now.Add(-recentWindow-time.Second)) }, false},
		{"redial failed", func(r *recentPeers) { r.mark(p, now); r.forget(p) }, false},
		{"judged gone, then its connections closed", func(r *recentPeers) { r.judgedGone(p); r.mark(p, now) }, false},
		{"judged gone after the drop", func(r *recentPeers) { r.mark(p, now); r.judgedGone(p) }, false},
		{"judged gone, connected again, dropped", func(r *recentPeers) {
			r.judgedGone(p)
			r.mark(p, now)
			r.connected(p)
			r.mark(p, now)
		}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRecentPeers()
			tc.steps(r)
			if got := slices.Contains(r.list(now), p); got != tc.want {
				t.Errorf("asked = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestDHTWalkSkipsDeadLANPeer: a peer of this site that died stays in the
// DHT walk's members (the last region round's view). The first lookup
// after its drop redials it within lanRedialTimeout, as the LAN router
// does; once that failed, the walk leaves it out (it waited
// recordAskTimeout for the dial on every lookup: the kill -9 bench's
// survivors asked the mirror in spans until the run ended).
func TestDHTWalkSkipsDeadLANPeer(t *testing.T) {
	t.Parallel()
	c := cidOf(t, storetest.RandomBytes(4, 1<<10))
	a := startNode(t, newMemStore(t), func(cfg *Config) {
		cfg.swarmOpts = []swarm.Option{swarm.WithDialTimeout(time.Hour), swarm.WithDialTimeoutLocal(time.Hour)}
	})
	dead := killConnectedPeer(t, a)
	a.s.dht.mu.Lock()
	a.s.dht.view = append(a.s.dht.view, dead.ID()) // as a region round found it
	a.s.dht.mu.Unlock()

	lookup := func() {
		t.Helper()
		answers := a.s.Router().FindProviders(t.Context(), c)
		watchdog := time.After(time.Minute)
		for {
			select {
			case _, ok := <-answers:
				if !ok {
					return
				}
			case <-watchdog:
				t.Fatal("the lookup is still out: it waits for the dead peer's dial")
			}
		}
	}
	asks := a.s.dht.asks.Load()
	lookup() // redials it, in vain
	if n := a.s.dht.asks.Load() - asks; n != 1 {
		t.Fatalf("the first walk sent %d record queries, want 1 (to the peer dropped moments ago)", n)
	}
	asks = a.s.dht.asks.Load()
	lookup()
	if n := a.s.dht.asks.Load() - asks; n != 0 {
		t.Errorf("the walk sent %d record queries after the dead peer's redial failed, want 0", n)
	}
}
