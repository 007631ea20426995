package p2p

import (
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/peer"
)

// NAT policy. Machines behind a NAT reach other sites directly: AutoNAT
// tells each node whether it is reachable (and answers that question for
// its peers), a node that is not reserves a slot on a relay (its bootstrap
// peers, which run the relay service when they are publicly reachable),
// and DCUtR uses that relayed connection only to coordinate a hole punch.
// Relayed connections stay "limited" (circuit v2: 2 minutes, 128 KiB):
// libp2p opens no stream on them unless asked to, and flocon never asks,
// so have queries, the DHT and blob bytes go over the direct connection or
// not at all, and the mirror serves a peer that cannot be reached directly.
func natOptions(cfg Config) []libp2p.Option {
	opts := []libp2p.Option{
		libp2p.EnableNATService(),
		libp2p.EnableHolePunching(),
		libp2p.EnableRelay(),
		libp2p.EnableRelayService(), // runs only while this node is publicly reachable
	}
	if relays := staticRelays(cfg.Bootstrap); len(relays) > 0 {
		opts = append(opts, libp2p.EnableAutoRelayWithStaticRelays(relays))
	}
	return opts
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
