package p2p

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/proto"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	ma "github.com/multiformats/go-multiaddr"
)

// NAT policy. Machines behind a NAT reach other sites directly: each one
// reserves a slot on its bootstrap peers that run the relay service
// (--p2p-relay, a machine every site can reach), peers learn of it from
// those bootstrap peers (peerexchange.go) and dial it through the relay,
// and DCUtR uses that relayed connection only to coordinate a hole punch.
// Relayed connections stay "limited" (circuit v2: relayLimit): libp2p opens
// no stream on them unless asked to, and flocon never asks, so have
// queries, the DHT and blob bytes go over the direct connection or not at
// all, and the mirror serves a peer that cannot be reached directly.
//
// The slot is reserved as soon as the bootstrap peer is connected, not
// when AutoNAT has found the node unreachable (15 s after start at the
// earliest): until then nobody at another site could reach it. A node
// with a public address holds a slot it does not need, which costs the
// relay a few bytes of state.
const (
	reserveCheck        = time.Second     // how often bootstrap relays are checked for a slot
	reserveRenew        = 5 * time.Minute // renew a slot this long before it expires
	reserveRetry        = 5 * time.Second // after a failed reservation, doubling
	reserveBackoffSteps = 6               // up to reserveRetry << 6 (5 min 20 s)
	reserveTimeout      = 10 * time.Second
)

// Hole punch retry. DCUtR punches once per relayed connection, right after
// it opens (three attempts), and never again; a punch that fails (packets
// lost, a SYN timed badly on loaded machines) left the peer reached only
// through the relay until the relay cut the connection at relayLimit's
// Duration: e2e TestNATSites failed so, 2 of 6 runs under load. Our own
// redials made it worse: a direct dial of a remote peer while its punch
// was running took the punch's dial over in libp2p's per-peer dial worker,
// sent its SYN out of step, and spoiled the punch. So a remote peer that is
// only relayed is not dialled while its punch may be running; once the
// relayed connections are holePunchGiveUp old the punch has failed, they
// are closed and the peer dialled again (through the relay if need be),
// which starts a new punch on the relayed connection.
const holePunchGiveUp = 20 * time.Second // above DCUtR's 10 s direct dial and its three attempts

// errHolePunching: a remote peer reached only through a relay is left to
// the hole punch of its relayed connection.
var errHolePunching = errors.New("reached through a relay only; hole punch in progress")

// holePunchFailed reports whether every relayed connection to p is at
// least holePunchGiveUp old, and then closes them for a new punch.
func (s *Host) holePunchFailed(p peer.ID) bool {
	conns := s.h.Network().ConnsToPeer(p)
	if len(conns) == 0 {
		return true // gone meanwhile: a plain dial
	}
	for _, c := range conns {
		if !c.Stat().Limited || time.Since(c.Stat().Opened) < holePunchGiveUp {
			return false
		}
	}
	level := slog.LevelDebug
	if s.punchRetried.add(p) == 1 {
		level = slog.LevelInfo
	}
	s.log.Log(context.Background(), level, "hole punch failed: the relayed connection is closed and the peer dialled again",
		"peer", p.String(), "relayedFor", time.Since(conns[0].Stat().Opened).Round(time.Second).String())
	for _, c := range conns {
		_ = c.Close()
	}
	return true
}

// punchRetries counts the failed hole punches per peer: the first is
// logged at info, the next ones (a NAT that never lets a punch through, a
// new try every exchange round) at debug.
type punchRetries struct {
	mu sync.Mutex
	n  map[peer.ID]int
}

func (r *punchRetries) add(p peer.ID) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n == nil {
		r.n = make(map[peer.ID]int)
	}
	r.n[p]++
	return r.n[p]
}

// relayLimit bounds every relayed connection: enough for identify, the
// DCUtR exchange and a few pings, far too little to carry a package.
var relayLimit = relayv2.RelayLimit{Duration: 2 * time.Minute, Data: 128 << 10}

// relayResources are the relay service's limits. A site's machines share
// one public address behind their NAT, so the per-address cap is well
// above libp2p's default of 8.
func relayResources() relayv2.Resources {
	rc := relayv2.DefaultResources()
	rc.Limit = &relayLimit
	rc.MaxReservations = 1024
	rc.MaxCircuits = 16 // per peer at once
	rc.MaxReservationsPerIP = 128
	rc.MaxReservationsPerASN = 256
	return rc
}

// startRelay runs the relay service when Config.Relay, whatever AutoNAT
// says: the operator knows the machine is reachable from every site.
func (s *Host) startRelay() error {
	if !s.cfg.Relay {
		return nil
	}
	r, err := relayv2.New(s.h, relayv2.WithResources(relayResources()))
	if err != nil {
		return err
	}
	s.relay = r
	s.log.Info("relay service on", "limitDuration", relayLimit.Duration, "limitBytes", relayLimit.Data)
	return nil
}

// staticRelays are the bootstrap peers whose ID and addresses are known
// up front (a /dnsaddr/ name without an ID is not a relay candidate).
func staticRelays(bootstrap []string) []peer.AddrInfo {
	boot, err := parseBootstrap(bootstrap)
	if err != nil {
		return nil // newHost reports the bad entry
	}
	var out []peer.AddrInfo
	for _, b := range boot {
		if b.dnsaddr == nil && len(b.info.Addrs) > 0 {
			out = append(out, b.info)
		}
	}
	return out
}

// bootPeers are the peers the bootstrap entries led to (a /dnsaddr/ name
// is known by ID only once resolved).
type bootPeers struct {
	mu  sync.Mutex
	ids map[peer.ID]bool
}

func (b *bootPeers) add(p peer.ID) {
	b.mu.Lock()
	if b.ids == nil {
		b.ids = make(map[peer.ID]bool)
	}
	b.ids[p] = true
	b.mu.Unlock()
}

func (b *bootPeers) list() []peer.ID {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]peer.ID, 0, len(b.ids))
	for p := range b.ids {
		out = append(out, p)
	}
	return out
}

// isRelay reports whether p offers the relay service (as identify told).
func (s *Host) isRelay(p peer.ID) bool {
	protos, err := s.h.Peerstore().SupportsProtocols(p, proto.ProtoIDv2Hop)
	return err == nil && len(protos) > 0
}

// circuitAddr is the address of any peer holding a slot on relay r, through
// the connection this node has to r (nil when not connected).
func (s *Host) circuitAddr(r peer.ID) ma.Multiaddr {
	for _, c := range s.h.Network().ConnsToPeer(r) {
		if c.Stat().Limited {
			continue
		}
		a, err := ma.NewMultiaddr(c.RemoteMultiaddr().String() + "/p2p/" + r.String() + "/p2p-circuit")
		if err == nil {
			return a
		}
	}
	return nil
}

// runRelayReservations keeps a slot on every connected bootstrap peer that
// runs the relay service, renewed before it expires and taken again when
// the connection to the relay comes back (a relay that restarted has
// forgotten it), until ctx ends. A relay that refuses is asked again after
// a doubling delay.
func (s *Host) runRelayReservations(ctx context.Context) {
	if s.cfg.Relay || len(s.bootstrap) == 0 {
		return
	}
	next := make(map[peer.ID]time.Time) // when to (re)reserve on each relay
	failed := make(map[peer.ID]int)     // refusals in a row
	held := make(map[peer.ID]bool)      // a slot was reserved once: renewals are not logged
	t := time.NewTicker(reserveCheck)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
		now := time.Now()
		for _, r := range s.boot.list() {
			if s.h.Network().Connectedness(r) != network.Connected {
				delete(next, r) // reserve again once back
				continue
			}
			if now.Before(next[r]) || !s.isRelay(r) {
				continue
			}
			rctx, cancel := context.WithTimeout(ctx, reserveTimeout)
			res, err := client.Reserve(rctx, s.h, peer.AddrInfo{ID: r})
			cancel()
			if err != nil {
				level := slog.LevelDebug
				if failed[r] == 0 {
					level = slog.LevelInfo
				}
				s.log.Log(ctx, level, "relay reservation failed", "relay", r.String(), "err", err)
				next[r] = now.Add(reserveRetry << min(failed[r], reserveBackoffSteps))
				failed[r]++
				continue
			}
			delete(failed, r)
			if !held[r] {
				held[r] = true
				s.log.Info("relay slot reserved: peers behind NAT at other sites can reach this node through it",
					"relay", r.String(), "expires", res.Expiration.Format(time.RFC3339))
			}
			next[r] = res.Expiration.Add(-reserveRenew)
		}
	}
}
