// Package node is flocon's fetch side: it gets package blobs from the best
// peer (found through a routing.Router, fetched through the blob transfer of
// node/p2p) or, failing that, from the upstream mirrors, and verifies every
// byte with package verify before it reaches the store. It announces what it
// has and bans peers that send bad data; node/p2p serves peers.
//
//	n, err := node.New(node.Config{Store: s, Keyring: kr, Mirrors: m})
//	go n.Run(ctx)
//	p, err := n.Fetch(ctx, "core", "x86_64", exp) // *store.Pending
//
// The gateway never imports node: it declares the interface it consumes
// (gateway.Fetcher) and cmd/flocon passes a *node.Node in.
package node
