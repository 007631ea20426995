package routing_test

import (
	"crypto/rand"
	"testing"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/flocon/flocon/node/routing"
	"github.com/flocon/flocon/node/routing/routingtest"
)

type memNode struct {
	id peer.ID
	r  *routing.MemoryRouter
}

func (m memNode) ID() peer.ID              { return m.id }
func (m memNode) Router() routing.Router   { return m.r }
func (m memNode) Hold(*testing.T, cid.Cid) {}
func (m memNode) Drop(*testing.T, cid.Cid) {}
func newID(t *testing.T) peer.ID {
	t.Helper()
	_, pub, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestMemoryConformance(t *testing.T) {
	t.Parallel()
	routingtest.Conformance(t, func(t *testing.T, n int) []routingtest.Node {
		m := routing.NewMemory()
		out := make([]routingtest.Node, n)
		for i := range out {
			id := newID(t)
			out[i] = memNode{id: id, r: m.Router(id, routing.SameLAN)}
		}
		return out
	})
}

// TestComposeMergesOnce: a peer both routers know is sent once.
func TestComposeMergesOnce(t *testing.T) {
	t.Parallel()
	a, b := routing.NewMemory(), routing.NewMemory()
	self, other := newID(t), newID(t)
	c := routingtest.CID(t, "x")
	for _, m := range []*routing.Memory{a, b} {
		if err := m.Router(other, routing.Remote).Announce(t.Context(), c); err != nil {
			t.Fatal(err)
		}
	}
	r := routing.Compose(a.Router(self, routing.SameLAN), nil, b.Router(self, routing.SameLAN))
	var got []peer.ID
	for p := range r.FindProviders(t.Context(), c) {
		got = append(got, p.ID)
	}
	if len(got) != 1 || got[0] != other {
		t.Fatalf("Compose found %v, want [%s] once", got, other)
	}
	if ps := r.Peers(); len(ps) != 1 || ps[0].ID != other {
		t.Fatalf("Compose Peers = %v, want the other peer once", ps)
	}
}
