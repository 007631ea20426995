// Package p2p is flocon's peer-to-peer side: the libp2p host and identity,
// discovery (mDNS, bootstrap, peer exchange over /flocon/peers), NAT
// traversal (relay slots, the --p2p-relay service, hole punching), the
// /flocon/have and /flocon/blob protocols (serving and fetching), bans
// enforced by the connection gater, per-peer limits, shared caches, and
// the LAN and DHT routers.
//
//	h, err := p2p.New(p2p.Config{Store: s, Keyring: kr, MDNS: true})
//	go h.Run(ctx)
//	for pr := range h.LAN().FindProviders(ctx, c) {
//		n, err := h.FetchBlob(ctx, pr.ID, c, 0, w)
//	}
//
// Everything a peer sends is checked by the caller (package node) against
// the CID and the signature; FetchBlob bans a peer itself only for lies on
// the wire (garbage frames, a clean stream cut short of its announced size).
package p2p
