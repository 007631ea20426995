package p2p

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	madns "github.com/multiformats/go-multiaddr-dns"
)

// Bootstrap and swarm policy. A node needs one bootstrap address: it dials
// it at once and, while not connected, again after a backoff that doubles
// from redialMin to redialMax, with jitter so that machines restarted
// together do not redial in step (a dial that crossed the other side's is
// retried at once, see dialretry.go). Once connected, the DHT routing
// table tells it the rest of the swarm, and peer exchange connects to it.
const (
	redialMin      = time.Second
	redialMax      = 30 * time.Second
	redialJitter   = 0.3 // ± this share of the backoff
	exchangeFast   = 2 * time.Second
	exchangeSlow   = 30 * time.Second
	exchangeWarmup = time.Minute // fast rounds after start
	maxSwarmPeers  = 64          // peer exchange stops connecting past this
	dhtBucketSize  = 20          // kad-dht's k: a routing table this full knows enough
)

// bootstrapPeer is one --bootstrap entry: a peer with its addresses
// (/ip4/…/p2p/ID, /dns4/…/p2p/ID), or a /dnsaddr/ name resolved at each
// dial to whatever peers its TXT records list.
type bootstrapPeer struct {
	info    peer.AddrInfo // ID empty for a name to resolve
	dnsaddr ma.Multiaddr
}

func (b bootstrapPeer) String() string {
	if b.dnsaddr != nil {
		return b.dnsaddr.String()
	}
	return b.info.ID.String()
}

// parseBootstrap reads the --bootstrap entries: multiaddrs with /p2p/ID
// (IP or DNS name: /ip4, /ip6, /dns, /dns4, /dns6), grouped by peer, or
// /dnsaddr/NAME with or without /p2p/ID.
func parseBootstrap(in []string) ([]bootstrapPeer, error) {
	var withID []ma.Multiaddr
	var out []bootstrapPeer
	for _, s := range in {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return nil, fmt.Errorf("bootstrap %q: %w", s, err)
		}
		_, errID := a.ValueForProtocol(ma.P_P2P)
		_, errDNS := a.ValueForProtocol(ma.P_DNSADDR)
		switch {
		case errDNS == nil && errID != nil:
			out = append(out, bootstrapPeer{dnsaddr: a})
		case errID != nil:
			return nil, fmt.Errorf("bootstrap %q: needs /p2p/PEERID (or a /dnsaddr/ name)", s)
		default:
			withID = append(withID, a)
		}
	}
	infos, err := peer.AddrInfosFromP2pAddrs(withID...)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	for _, ai := range infos {
		out = append(out, bootstrapPeer{info: ai})
	}
	return out, nil
}

// resolve returns the peers behind b (a /dnsaddr/ name is looked up now).
func (b bootstrapPeer) resolve(ctx context.Context) ([]peer.AddrInfo, error) {
	if b.dnsaddr == nil {
		return []peer.AddrInfo{b.info}, nil
	}
	addrs, err := madns.Resolve(ctx, b.dnsaddr)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", b.dnsaddr, err)
	}
	var withID []ma.Multiaddr
	for _, a := range addrs {
		if _, err := a.ValueForProtocol(ma.P_P2P); err == nil {
			withID = append(withID, a)
		}
	}
	return peer.AddrInfosFromP2pAddrs(withID...)
}

// backoff is one bootstrap entry's redial state.
type backoff struct {
	next  time.Time
	delay time.Duration
}

// failed pushes the next attempt out by the doubled delay, with jitter.
func (b *backoff) failed(now time.Time, jitter float64) {
	b.delay = min(max(2*b.delay, redialMin), redialMax)
	b.next = now.Add(time.Duration(float64(b.delay) * (1 + redialJitter*(2*jitter-1))))
}

// runBootstrap keeps this node connected to each bootstrap entry: dialled
// at once, redialled with backoff while not connected (checked every
// second, so a bootstrap peer that restarts is back within redialMin).
func (s *Host) runBootstrap(ctx context.Context) {
	if len(s.bootstrap) == 0 {
		return
	}
	state := make([]backoff, len(s.bootstrap))
	t := time.NewTicker(redialMin)
	defer t.Stop()
	for {
		now := time.Now()
		for i, b := range s.bootstrap {
			if now.Before(state[i].next) {
				continue
			}
			switch s.dialBootstrap(ctx, b) {
			case nil:
				state[i] = backoff{}
			default:
				state[i].failed(now, rand.Float64())
			}
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

// dialBootstrap connects to every peer behind b that is not connected yet
// (or not banned, or not this node); nil when all of them are connected.
func (s *Host) dialBootstrap(ctx context.Context, b bootstrapPeer) error {
	infos, err := b.resolve(ctx)
	if err != nil {
		s.log.Debug("bootstrap resolve failed", "bootstrap", b.String(), "err", err)
		return err
	}
	var failed error
	for _, ai := range infos {
		if ai.ID != s.h.ID() {
			s.boot.add(ai.ID)
		}
		if ai.ID == s.h.ID() || s.bans.banned(ai.ID) || s.h.Network().Connectedness(ai.ID) == network.Connected {
			continue
		}
		if err := s.connect(ctx, ai); err != nil {
			failed = err
			continue
		}
		s.refreshDHT()
	}
	return failed
}

// refreshDHT asks the DHT to refresh its routing table now (a new peer
// knows more of the swarm), without waiting for it.
func (s *Host) refreshDHT() {
	if s.dht != nil {
		_ = s.dht.d.RefreshRoutingTable()
	}
}

// runPeerExchange asks the bootstrap peers for their peers (peerexchange.go)
// and connects to the peers the DHT routing table knows, in both cases
// those this node is not connected to (up to maxSwarmPeers connections):
// often at start, then every exchangeSlow.
func (s *Host) runPeerExchange(ctx context.Context) {
	if s.dht == nil && len(s.bootstrap) == 0 {
		return
	}
	start := time.Now()
	for {
		wait := exchangeSlow
		if time.Since(start) < exchangeWarmup {
			wait = exchangeFast
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return
		}
		s.exchangeWithBootstrap(ctx)
		if s.dht == nil {
			continue
		}
		if wait == exchangeFast && s.dht.d.RoutingTable().Size() < dhtBucketSize {
			s.refreshDHT() // still learning the swarm: ask again
		}
		for _, p := range s.dht.d.RoutingTable().ListPeers() {
			if len(s.h.Network().Peers()) >= maxSwarmPeers {
				break
			}
			if p == s.h.ID() || s.bans.banned(p) || s.h.Network().Connectedness(p) == network.Connected {
				continue
			}
			_ = s.connect(ctx, peer.AddrInfo{ID: p})
		}
	}
}
