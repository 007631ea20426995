// Package routing is how a flocon node finds who holds a blob: the Router
// interface the fetch path consumes, the Provider answers it streams, and
// Compose, which merges several routers (the LAN lookup first, the DHT for
// other sites).
//
//	r := routing.Compose(lan, dht)
//	for p := range r.FindProviders(ctx, c) {
//		// p.ID has c (complete, or in flight when p.InFlight)
//	}
//
// Implementations: the in-memory Memory (tests), node/p2p's LAN router (asks
// every connected peer) and DHT router (kad-dht provider records under the
// /flocon prefix). routingtest.Conformance runs the same contract against
// each of them.
package routing
