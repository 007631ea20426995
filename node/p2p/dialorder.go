package p2p

import (
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// Dial order. libp2p dials QUIC first and TCP 30 ms later, so two nodes on
// one LAN end up on QUIC, and every blob stream between them with it. On a
// LAN the link is rarely the limit, the CPU is: quic-go moved a 200 MiB blob
// with about 3x the CPU of TCP+TLS+yamux (1.86 s against 0.65 s per 200 MiB
// on loopback, BenchmarkP2PThroughput), one AEAD call and one syscall per
// 1.4 KB packet against one per 16 KiB record. So for private addresses
// (the LAN, loopback) TCP goes first and QUIC is the fallback a moment
// later; public and relay addresses keep libp2p's order, where QUIC's
// hole punching and loss recovery matter more than its CPU.
const (
	// lanDialStep is the delay between the first LAN TCP dial and the
	// others (libp2p's private-address step).
	lanDialStep = swarm.PrivateTCPDelay
	// lanQUICDelay is when LAN QUIC is tried, should TCP not connect
	// (a firewall that lets only UDP through). Generous: a TCP handshake
	// still upgrading when QUIC starts loses the race to it, and a loaded
	// machine (or the race detector) can take a few hundred ms for TLS.
	lanQUICDelay = time.Second
)

// lanTCPFirst is the dial ranker: private TCP addresses at once (the
// first one; the others a step later), private QUIC after lanQUICDelay,
// everything else as libp2p ranks it.
func lanTCPFirst(addrs []ma.Multiaddr) []network.AddrDelay {
	var tcp, quic, rest []ma.Multiaddr
	for _, a := range addrs {
		switch {
		case !manet.IsPrivateAddr(a) || isCircuit(a):
			rest = append(rest, a)
		case hasProtocol(a, ma.P_TCP):
			tcp = append(tcp, a)
		case hasProtocol(a, ma.P_QUIC_V1):
			quic = append(quic, a)
		default:
			rest = append(rest, a)
		}
	}
	out := swarm.DefaultDialRanker(rest)
	for i, a := range tcp {
		out = append(out, network.AddrDelay{Addr: a, Delay: time.Duration(min(i, 1)) * lanDialStep})
	}
	for _, a := range quic {
		out = append(out, network.AddrDelay{Addr: a, Delay: lanQUICDelay})
	}
	return out
}

func hasProtocol(a ma.Multiaddr, code int) bool {
	_, err := a.ValueForProtocol(code)
	return err == nil
}

func isCircuit(a ma.Multiaddr) bool { return hasProtocol(a, ma.P_CIRCUIT) }
