// Package routingtest is the conformance suite every routing.Router passes:
// the in-memory fake, node/p2p's LAN router and its DHT router.
//
//	func TestConformance(t *testing.T) {
//		routingtest.Conformance(t, func(t *testing.T, n int) []routingtest.Node { ... })
//	}
package routingtest
