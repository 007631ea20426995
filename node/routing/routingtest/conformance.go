package routingtest

import (
	"context"
	"crypto/sha256"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"

	"github.com/flocon/flocon/node/routing"
)

// Node is one member of a swarm under test.
type Node interface {
	ID() peer.ID
	Router() routing.Router
	// Hold makes the node hold a complete blob c (its store has it); the
	// suite then calls Announce.
	Hold(t *testing.T, c cid.Cid)
	// Drop makes the node lose c; the suite then calls Withdraw.
	Drop(t *testing.T, c cid.Cid)
}

// NewSwarm starts n nodes that can reach each other (connected, or
// bootstrapped) and stops them when the test ends.
type NewSwarm func(t *testing.T, n int) []Node

// eventually bounds how long an answer may take to spread (a DHT provide).
const eventually = 20 * time.Second

// Conformance runs the Router contract against the swarms newSwarm builds.
func Conformance(t *testing.T, newSwarm NewSwarm) {
	t.Run("UnknownCIDFindsNobody", func(t *testing.T) { testUnknown(t, newSwarm(t, 2)) })
	t.Run("AnnouncedIsFoundOnceByOthers", func(t *testing.T) { testFound(t, newSwarm(t, 3)) })
	t.Run("WithdrawnIsNotFound", func(t *testing.T) { testWithdraw(t, newSwarm(t, 2)) })
	t.Run("CancelledLookupCloses", func(t *testing.T) { testCancelled(t, newSwarm(t, 2)) })
	t.Run("PeersListsTheOthers", func(t *testing.T) { testPeers(t, newSwarm(t, 3)) })
}

// CID returns a raw sha2-256 CID of a test name, as flocon addresses blobs.
func CID(t testing.TB, name string) cid.Cid {
	t.Helper()
	sum := sha256.Sum256([]byte(name))
	h, err := mh.Encode(sum[:], mh.SHA2_256)
	if err != nil {
		t.Fatal(err)
	}
	return cid.NewCidV1(cid.Raw, h)
}

// find drains one lookup and returns the providers, in arrival order.
func find(t *testing.T, r routing.Router, c cid.Cid) []routing.Provider {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), eventually)
	defer cancel()
	var out []routing.Provider
	for p := range r.FindProviders(ctx, c) {
		out = append(out, p)
	}
	if ctx.Err() != nil {
		t.Fatal("FindProviders did not close its channel before the context ended")
	}
	return out
}

func ids(ps []routing.Provider) []peer.ID {
	out := make([]peer.ID, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.ID)
	}
	return out
}

// waitFind repeats lookups from r until want(providers) or eventually.
func waitFind(t *testing.T, r routing.Router, c cid.Cid, what string, want func([]routing.Provider) bool) []routing.Provider {
	t.Helper()
	deadline := time.Now().Add(eventually)
	for {
		got := find(t, r, c)
		if want(got) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: last lookup found %v", what, ids(got))
		}
		time.Sleep(100 * time.Millisecond) // polling a distributed state, not a timer under test
	}
}

func testUnknown(t *testing.T, nodes []Node) {
	if got := find(t, nodes[1].Router(), CID(t, "nobody has this")); len(got) != 0 {
		t.Fatalf("FindProviders(unknown) = %v, want none", ids(got))
	}
}

func testFound(t *testing.T, nodes []Node) {
	c := CID(t, "announced")
	nodes[0].Hold(t, c)
	if err := nodes[0].Router().Announce(t.Context(), c); err != nil {
		t.Fatalf("Announce: %v", err)
	}
	for i, n := range nodes[1:] {
		got := waitFind(t, n.Router(), c, fmt.Sprintf("node %d finds node 0", i+1), func(ps []routing.Provider) bool {
			return slices.Contains(ids(ps), nodes[0].ID())
		})
		if len(got) != 1 || got[0].InFlight {
			t.Fatalf("node %d found %+v, want node 0 once, complete", i+1, got)
		}
	}
	if got := find(t, nodes[0].Router(), c); slices.Contains(ids(got), nodes[0].ID()) {
		t.Fatal("a node finds itself as a provider")
	}
}

func testWithdraw(t *testing.T, nodes []Node) {
	c := CID(t, "withdrawn")
	nodes[0].Hold(t, c)
	if err := nodes[0].Router().Announce(t.Context(), c); err != nil {
		t.Fatalf("Announce: %v", err)
	}
	waitFind(t, nodes[1].Router(), c, "found before the withdraw", func(ps []routing.Provider) bool { return len(ps) == 1 })
	nodes[0].Drop(t, c)
	if err := nodes[0].Router().Withdraw(t.Context(), c); err != nil {
		t.Fatalf("Withdraw: %v", err)
	}
	if got := find(t, nodes[1].Router(), c); len(got) != 0 {
		t.Fatalf("after Withdraw: found %v, want none", ids(got))
	}
	if err := nodes[1].Router().Withdraw(t.Context(), CID(t, "never announced")); err != nil {
		t.Fatalf("Withdraw of a CID never announced: %v", err)
	}
}

func testCancelled(t *testing.T, nodes []Node) {
	c := CID(t, "cancelled")
	nodes[0].Hold(t, c)
	_ = nodes[0].Router().Announce(t.Context(), c)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	done := make(chan struct{})
	go func() {
		for range nodes[1].Router().FindProviders(ctx, c) { //nolint:revive // drain
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(eventually):
		t.Fatal("FindProviders with a cancelled context never closed")
	}
}

func testPeers(t *testing.T, nodes []Node) {
	deadline := time.Now().Add(eventually)
	for i, n := range nodes {
		for {
			var got []peer.ID
			for _, p := range n.Router().Peers() {
				got = append(got, p.ID)
			}
			missing := 0
			for j, o := range nodes {
				if j != i && !slices.Contains(got, o.ID()) {
					missing++
				}
			}
			if slices.Contains(got, n.ID()) {
				t.Fatalf("node %d lists itself in Peers", i)
			}
			if missing == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %d: Peers() = %v, %d of the others missing", i, got, missing)
			}
			time.Sleep(100 * time.Millisecond) // polling a distributed state
		}
	}
}
