package p2p

import (
	"context"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/discovery/mdns"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// mdnsService is flocon's own mDNS service name, so IPFS nodes on the same
// LAN are not dialed.
const mdnsService = "_flocon._udp"

// runDiscovery runs mDNS until ctx ends (when Config.MDNS).
func (s *Host) runDiscovery(ctx context.Context) error {
	if !s.cfg.MDNS {
		return nil
	}
	svc := mdns.NewMdnsService(s.h, mdnsService, mdnsNotifee{s: s})
	if err := svc.Start(); err != nil {
		// A host without a multicast interface still works with bootstrap peers.
		s.log.Warn("mdns discovery unavailable", "err", err)
		return nil
	}
	<-ctx.Done()
	return svc.Close()
}

// mdnsNotifee connects to every flocon peer mDNS finds.
type mdnsNotifee struct{ s *Host }

// HandlePeerFound is called by mdns in a goroutine per entry.
func (m mdnsNotifee) HandlePeerFound(ai peer.AddrInfo) {
	s := m.s
	if ai.ID == s.h.ID() || s.bans.banned(ai.ID) {
		return
	}
	s.sites.markLAN(ai.ID)
	ai.Addrs = s.usableAddrs(ai.Addrs)
	if len(ai.Addrs) == 0 {
		return
	}
	ctx, cancel := s.streamContext() // ends with the p2p side
	defer cancel()
	_ = s.connect(ctx, ai)
}

// usableAddrs drops a remote peer's loopback addresses (they would reach this
// host itself), unless this node listens on loopback only (tests).
func (s *Host) usableAddrs(addrs []ma.Multiaddr) []ma.Multiaddr {
	if s.loopback {
		return addrs
	}
	out := make([]ma.Multiaddr, 0, len(addrs))
	for _, a := range addrs {
		if !manet.IsIPLoopback(a) {
			out = append(out, a)
		}
	}
	return out
}

// runPing measures every connected peer's latency now and then; ping
// records it in the peerstore's EWMA, which ranks sources.
func (s *Host) runPing(ctx context.Context) {
	t := time.NewTicker(pingInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
		for _, p := range s.connectedPeers() {
			pctx, cancel := context.WithTimeout(ctx, p2pDialTimeout)
			res := <-ping.Ping(pctx, s.h, p)
			cancel()
			if res.Error != nil {
				s.log.Debug("ping failed", "peer", p.String(), "err", res.Error)
			}
		}
	}
}
