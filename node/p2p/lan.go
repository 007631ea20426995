package p2p

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/flocon/flocon/node/routing"
)

// LAN is the router that asks, rather than publishes: a lookup opens a
// /flocon/have stream to every connected peer of this site (and to those
// that dropped moments ago) in parallel, bounded by the have timeout. The
// answer comes from the peer's live store, so no record outlives a dead
// machine or a dropped blob. Peers at other sites are found through their
// provider records (DHT): asking each of them on every miss does not scale
// to many sites. With the DHT off the LAN router is the only one and asks
// every connected peer.
type LAN struct{ s *Host }

var _ routing.Router = (*LAN)(nil)

// LAN is this host's LAN router.
func (s *Host) LAN() *LAN { return &LAN{s: s} }

// haveAnswer is one peer's answer to a have query.
type haveAnswer struct {
	p      peer.ID
	header header
	rtt    time.Duration
}

// lanVia names the LAN router in routing.Provider.Via.
const lanVia = "lan"

// FindProviders asks every connected peer of this site whether it has c and sends those
// that do as they answer (an in-flight one only when this node may follow
// it, see mayFollow). The channel closes once every peer has answered or
// the have timeout has passed.
func (l *LAN) FindProviders(ctx context.Context, c cid.Cid) <-chan routing.Provider {
	s := l.s
	out := make(chan routing.Provider)
	peers := s.lookupPeers()
	if s.dht != nil {
		peers = slices.DeleteFunc(peers, func(p peer.ID) bool { return s.sites.site(p) != routing.SameLAN })
	}
	if len(peers) == 0 { // nobody to ask: no goroutine (as the DHT without members)
		close(out)
		return out
	}
	go func() {
		defer close(out)
		qctx, cancel := context.WithTimeout(ctx, s.haveTimeout)
		defer cancel()
		var wg sync.WaitGroup
		for _, p := range peers {
			wg.Go(func() {
				a, err := s.queryHave(qctx, p, c)
				if err != nil {
					s.recent.forget(p)
					return
				}
				if a.header.code == haveNone || !s.mayFollow(c, a) {
					return
				}
				select { // the caller's ctx: a late reader still gets it
				case out <- s.provider(a, lanVia):
				case <-ctx.Done():
				}
			})
		}
		wg.Wait()
	}()
	return out
}

// provider turns a have answer into a routing.Provider found by router via.
func (s *Host) provider(a haveAnswer, via string) routing.Provider {
	pr := routing.Provider{Via: via,
		ID: a.p, Site: s.sites.site(a.p), InFlight: a.header.code == haveInflight,
		Size: max(a.header.size, 0), Have: a.header.available, Started: a.header.started,
		Latency: s.h.Peerstore().LatencyEWMA(a.p),
	}
	if !pr.InFlight && pr.Size > 0 {
		pr.Have = pr.Size
	}
	return pr
}

// Announce offers c: complete when the store has it, else in flight from
// now (the first start recorded is the one peers are told).
func (l *LAN) Announce(_ context.Context, c cid.Cid) error {
	s := l.s
	s.announced.add(c)
	if s.st.Has(c) {
		s.inflight.done(c)
	} else {
		s.inflight.start(c, time.Now())
	}
	return nil
}

// Withdraw stops offering c unless the store or a shared directory still
// holds it, or a new download of it is already in flight.
func (l *LAN) Withdraw(_ context.Context, c cid.Cid) error {
	s := l.s
	if s.st.growing(c) != nil {
		return nil
	}
	s.inflight.done(c)
	if _, shared := s.shared.get(c); !shared && !s.st.Has(c) {
		s.announced.remove(c)
	}
	return nil
}

// Peers lists the connected peers that are not banned.
func (l *LAN) Peers() []routing.PeerInfo {
	s := l.s
	peers := s.connectedPeers()
	out := make([]routing.PeerInfo, 0, len(peers))
	for _, p := range peers {
		pi := routing.PeerInfo{ID: p, Site: s.sites.site(p), Latency: s.h.Peerstore().LatencyEWMA(p)}
		for _, c := range s.h.Network().ConnsToPeer(p) {
			pi.Addrs = append(pi.Addrs, c.RemoteMultiaddr())
		}
		out = append(out, pi)
	}
	return out
}

func (s *Host) connectedPeers() []peer.ID {
	all := s.h.Network().Peers()
	out := all[:0]
	for _, p := range all {
		if !s.bans.banned(p) {
			out = append(out, p)
		}
	}
	return out
}

// AsksLAN reports whether a lookup now asks a peer of this site: only
// such answers come late and still take a download off a mirror (a remote
// peer does only when measured faster than the mirrors), so only then is a
// mirror asked for spans while the lookup is out (node/mirrorspan.go).
func (s *Host) AsksLAN() bool {
	for _, p := range s.lookupPeers() {
		if s.sites.site(p) == routing.SameLAN {
			return true
		}
	}
	return false
}

// lookupPeers are the connected peers plus those whose connection dropped
// moments ago (a Wi-Fi hiccup, a restart): asking them redials, bounded by
// redialTimeout, and one that does not answer is forgotten (peers.go,
// recentPeers).
func (s *Host) lookupPeers() []peer.ID {
	peers := s.connectedPeers()
	for _, p := range s.recent.list(time.Now()) {
		if s.h.Network().Connectedness(p) != network.Connected && !s.bans.banned(p) {
			peers = append(peers, p)
		}
	}
	return peers
}

// queryHave asks p about c on a /flocon/have stream bounded by ctx.
func (s *Host) queryHave(ctx context.Context, p peer.ID, c cid.Cid) (haveAnswer, error) {
	start := time.Now()
	if err := s.redial(ctx, p); err != nil {
		return haveAnswer{}, err
	}
	str, err := s.h.NewStream(ctx, p, haveProtoHead, haveProto) // 1.1.0 when p speaks it
	if err != nil {
		return haveAnswer{}, err
	}
	defer str.Close()
	defer boundTo(ctx, str)()
	req := writeCID(nil, c)
	withHead := str.Protocol() == haveProtoHead
	want := headWant(s.sites.site(p))
	if withHead {
		req = binary.AppendUvarint(req, uint64(want))
	}
	if _, err := str.Write(req); err != nil {
		_ = str.Reset()
		return haveAnswer{}, err
	}
	_ = str.CloseWrite()
	r := bufio.NewReader(str)
	h, err := readHave(r)
	if err == nil && withHead {
		var head []byte
		head, err = readHead(r, h, want)
		s.heads.put(p, c, head, time.Now())
	}
	if err != nil {
		_ = str.Reset()
		return haveAnswer{}, err
	}
	rtt := time.Since(start)
	s.h.Peerstore().RecordLatency(p, rtt)
	return haveAnswer{p: p, header: h, rtt: rtt}, nil
}

// redial connects p again, bounded by lanRedialTimeout, when it is a peer
// of this site without a connection: a dead peer's dial must not hold the
// lookup, and one that fails forgets the peer (peers.go, recentPeers).
// Other peers are dialled by NewStream within the lookup's bound, as before.
func (s *Host) redial(ctx context.Context, p peer.ID) error {
	if s.h.Network().Connectedness(p) != network.NotConnected || s.sites.site(p) != routing.SameLAN {
		return nil
	}
	dctx, cancel := context.WithTimeout(ctx, lanRedialTimeout)
	defer cancel()
	if err := s.h.Connect(dctx, peer.AddrInfo{ID: p}); err != nil {
		s.recent.forget(p)
		return fmt.Errorf("redial %s: %w", p, err)
	}
	return nil
}

// lanGone reports whether p is a peer of this site without a connection
// that lookups no longer ask: dropped over recentWindow ago, its redial
// failed, or judged gone (peers.go, recentPeers).
func (s *Host) lanGone(p peer.ID) bool {
	return s.sites.site(p) == routing.SameLAN && s.h.Network().Connectedness(p) == network.NotConnected &&
		!s.recent.has(p, time.Now())
}

// siteSet remembers the peers found on this node's own link (mDNS).
type siteSet struct {
	mu  sync.RWMutex
	lan map[peer.ID]bool
	all bool // Config.SingleSite
}

func newSiteSet() *siteSet { return &siteSet{lan: make(map[peer.ID]bool)} }

func (x *siteSet) markLAN(p peer.ID) {
	x.mu.Lock()
	x.lan[p] = true
	x.mu.Unlock()
}

func (x *siteSet) site(p peer.ID) routing.Locality {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if x.all || x.lan[p] {
		return routing.SameLAN
	}
	return routing.Remote
}
