package p2p

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/flocon/flocon/node/routing"
)

// TCP after a QUIC fallback. LAN peers dial TCP first (dialorder.go), but a
// TCP dial that fails makes libp2p dial the next address at once, whatever
// its delay: with no dial left in flight, QUIC goes right away. Two
// machines of a LAN that dial each other at the same moment (both find
// the other by mDNS as they start) get one TCP connection by simultaneous
// open whose handshake fails on both sides (dialretry.go), and end up on
// QUIC: measured in the kill -9 bench, one pair in three runs, every blob
// stream between them at about 3x the CPU of TCP, the relay falling 1.1
// MB behind on 0.40 cores, and a dead peer found by liveness (0.7 s)
// instead of its kernel's reset. So a connect that leaves a LAN peer on
// QUIC alone, while both sides speak TCP, closes the QUIC connection and
// dials again, once, in the order of the handshake retries: the lower
// peer ID first, the higher one later and only if still on QUIC, so the
// two redials do not cross; and a QUIC connection beside a TCP one (the
// crossing dials can leave both) is closed, so every stream of the pair
// goes over TCP. Every new connection to a private address starts it
// (whichever side dialled), so it happens as a pair meets, before any
// download needs the connection; where TCP really is blocked, the redial
// ends on QUIC again and that connection stays.

// onQUICOnly reports whether p is connected over QUIC only, to a private
// address, while both this host and p have a private TCP address.
func (s *Host) onQUICOnly(p peer.ID) bool {
	conns := s.h.Network().ConnsToPeer(p)
	if len(conns) == 0 {
		return false
	}
	for _, c := range conns {
		if a := c.RemoteMultiaddr(); !hasProtocol(a, ma.P_QUIC_V1) || !manet.IsPrivateAddr(a) {
			return false
		}
	}
	return hasLANTCP(s.h.Addrs()) && hasLANTCP(s.h.Peerstore().Addrs(p))
}

// hasLANTCP reports whether addrs has a TCP address the dial order puts
// first (private, not relayed).
func hasLANTCP(addrs []ma.Multiaddr) bool {
	for _, a := range addrs {
		if manet.IsPrivateAddr(a) && !isCircuit(a) && hasProtocol(a, ma.P_TCP) {
			return true
		}
	}
	return false
}

// tcpRetryEvery bounds the moves of one peer to TCP: where TCP is blocked
// the redial ends on QUIC again, and that connection stays.
const tcpRetryEvery = 10 * time.Minute

// quicMoves remembers when each peer was last considered for a move.
type quicMoves struct {
	mu   sync.Mutex
	last map[peer.ID]time.Time
}

// first reports whether p was not considered within tcpRetryEvery, and
// records now.
func (m *quicMoves) first(p peer.ID, now time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.last == nil {
		m.last = make(map[peer.ID]time.Time)
	}
	if t, ok := m.last[p]; ok && now.Sub(t) < tcpRetryEvery {
		return false
	}
	m.last[p] = now
	return true
}

// connectedOver is called for every new connection. A connection to a
// private address starts a look at its peer after the pair's retry delay:
// QUIC connections beside a TCP one are closed (dropQUIC), and a peer on
// QUIC alone is redialled (toTCP), at most once per tcpRetryEvery.
func (s *Host) connectedOver(c network.Conn) {
	a, p := c.RemoteMultiaddr(), c.RemotePeer()
	if !manet.IsPrivateAddr(a) || isCircuit(a) {
		return
	}
	switch {
	case hasProtocol(a, ma.P_QUIC_V1) && s.quic.first(p, time.Now()):
		go s.afterRetryDelay(p, s.toTCP)
	case hasProtocol(a, ma.P_QUIC_V1), hasProtocol(a, ma.P_TCP):
		go s.afterRetryDelay(p, func(context.Context, peer.ID) { s.dropQUIC(p) })
	}
}

// afterRetryDelay runs f after the pair's handshake-retry delay (the
// lower peer ID first), unless the p2p side stops first.
func (s *Host) afterRetryDelay(p peer.ID, f func(context.Context, peer.ID)) {
	ctx, cancel := s.streamContext() // ends with the p2p side
	defer cancel()
	select {
	case <-time.After(handshakeRetryDelay(s.h.ID(), p, rand.Float64())):
		f(ctx, p)
	case <-ctx.Done():
	}
}

// toTCP moves p, a peer of this site, to TCP (see above) when it is on
// QUIC alone and no transfer or lookup question runs over it (closing
// the connection would cut them).
func (s *Host) toTCP(ctx context.Context, p peer.ID) {
	if s.sites.site(p) != routing.SameLAN {
		return // a peer of another site keeps its QUIC (a hole punch, a WAN)
	}
	if !s.onQUICOnly(p) {
		s.dropQUIC(p)
		return
	}
	conns := s.h.Network().ConnsToPeer(p)
	for _, c := range conns {
		if busy(c) {
			return
		}
	}
	for _, c := range conns {
		_ = c.Close()
	}
	err := s.dialOnce(ctx, peer.AddrInfo{ID: p}, true) // past the backoff a failed handshake set
	s.dropQUIC(p)
	s.log.Info("lan peer on quic, redialled", "peer", p.String(), "tcp", err == nil && !s.onQUICOnly(p), "err", err)
}

// dropQUIC closes the QUIC connections to a private address of p, a peer of
// this site, when a TCP one is up, but those that carry a transfer or a
// have question (busy).
func (s *Host) dropQUIC(p peer.ID) {
	if s.sites.site(p) != routing.SameLAN {
		return
	}
	conns := s.h.Network().ConnsToPeer(p)
	tcp := false
	for _, c := range conns {
		tcp = tcp || hasProtocol(c.RemoteMultiaddr(), ma.P_TCP)
	}
	if !tcp {
		return
	}
	for _, c := range conns {
		if a := c.RemoteMultiaddr(); hasProtocol(a, ma.P_QUIC_V1) && manet.IsPrivateAddr(a) && !busy(c) {
			_ = c.Close()
			s.log.Info("lan peer's quic connection closed, tcp is up", "peer", p.String())
		}
	}
}

// busy reports whether a blob stream or a have question is open on c.
func busy(c network.Conn) bool {
	for _, str := range c.GetStreams() {
		switch str.Protocol() {
		case blobProto, blobProtoLive, haveProto, haveProtoHead:
			return true
		}
	}
	return false
}
