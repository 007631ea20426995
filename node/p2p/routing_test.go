package p2p

import (
	"testing"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/flocon/flocon/node/routing"
	"github.com/flocon/flocon/node/routing/routingtest"
)

// conformanceNode is a running host over a memStore, seen through one of
// its routers.
type conformanceNode struct {
	tn     *testNode
	router routing.Router
}

func (c conformanceNode) ID() peer.ID            { return c.tn.id() }
func (c conformanceNode) Router() routing.Router { return c.router }

func (c conformanceNode) Hold(_ *testing.T, id cid.Cid) {
	st := c.tn.st.(*memStore)
	st.mu.Lock()
	st.blobs[id] = 1
	st.mu.Unlock()
}

func (c conformanceNode) Drop(_ *testing.T, id cid.Cid) {
	st := c.tn.st.(*memStore)
	st.mu.Lock()
	delete(st.blobs, id)
	st.mu.Unlock()
}

// TestLANConformance: the LAN router over a full mesh of loopback hosts.
func TestLANConformance(t *testing.T) {
	t.Parallel()
	routingtest.Conformance(t, func(t *testing.T, n int) []routingtest.Node {
		var nodes []*testNode
		out := make([]routingtest.Node, 0, n)
		for range n {
			tn := startNode(t, newMemStore(t), withBootstrap(nodes...), func(c *Config) { c.DisableDHT = true })
			for _, o := range nodes {
				waitConnected(t, tn.s.h, o.id())
			}
			nodes = append(nodes, tn)
			out = append(out, conformanceNode{tn: tn, router: tn.s.LAN()})
		}
		return out
	})
}

// TestDHTConformance: the DHT router alone, every host given only the
// first one as bootstrap: the others are learnt through the DHT.
func TestDHTConformance(t *testing.T) {
	t.Parallel()
	routingtest.Conformance(t, func(t *testing.T, n int) []routingtest.Node {
		first := startNode(t, newMemStore(t))
		out := []routingtest.Node{conformanceNode{tn: first, router: first.s.DHT()}}
		for range n - 1 {
			tn := startNode(t, newMemStore(t), withBootstrap(first))
			out = append(out, conformanceNode{tn: tn, router: tn.s.DHT()})
		}
		return out
	})
}
