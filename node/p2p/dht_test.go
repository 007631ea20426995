package p2p

import (
	"fmt"
	"testing"

	kb "github.com/libp2p/go-libp2p-kbucket"
	"github.com/libp2p/go-libp2p/core/peer"
)

// at is a member whose key-space position is d (XOR distance d from a
// zero target).
func at(d byte) member {
	pos := make(kb.ID, 32)
	pos[0] = d
	return member{id: peer.ID(fmt.Sprintf("peer %d", d)), pos: pos}
}

func nextIDs(w *walkState, n int) []peer.ID {
	var out []peer.ID
	for range n {
		m, ok := w.next()
		if !ok {
			break
		}
		out = append(out, m.id)
	}
	return out
}

// TestWalkState: a lookup asks the closest candidates first; a closer peer
// named in an answer is asked while the others are still out; a candidate
// no closer than the replication closest asked is not; a query that fails
// lets the next closest in; and a lookup asks at most maxLookupAsks peers.
func TestWalkState(t *testing.T) {
	t.Parallel()
	target := make(kb.ID, 32)
	w := newWalkState(target, []member{at(50), at(10), at(40), at(20), at(30)}, "self")
	if got, want := fmt.Sprint(nextIDs(w, 5)), fmt.Sprint([]peer.ID{at(10).id, at(20).id, at(30).id}); got != want {
		t.Fatalf("first asks %s, want the 3 closest %s", got, want)
	}
	w.add(at(5))
	w.add(at(45))
	if got := nextIDs(w, 5); len(got) != 1 || got[0] != at(5).id {
		t.Fatalf("after a closer peer was named, asks %v; want only it", got)
	}
	if w.knows(at(5).id) != true || !w.knows("self") {
		t.Fatal("a named peer, or this node, is not known")
	}
	w.answered(at(10), true)
	if got := nextIDs(w, 5); len(got) != 0 {
		t.Fatalf("nobody closer left, yet asks %v", got)
	}
	w.answered(at(20), false)
	if got := nextIDs(w, 5); len(got) != 1 || got[0] != at(40).id {
		t.Fatalf("after a failed query, asks %v; want the next closest unasked (40)", got)
	}

	many := make([]member, 0, 100)
	for d := range 100 {
		many = append(many, at(byte(d+1)))
	}
	w = newWalkState(target, many, "self")
	asked := 0
	for {
		m, ok := w.next()
		if !ok {
			break
		}
		asked++
		w.answered(m, false) // every query fails
	}
	if asked != maxLookupAsks {
		t.Fatalf("every query failing, %d asked; want the bound %d", asked, maxLookupAsks)
	}
}
