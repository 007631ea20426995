package routing_test

import (
	"context"
	"slices"
	"testing"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/flocon/flocon/node/routing"
)

// answered is a router whose answers are all there before FindProviders
// returns (nil: it has nobody to ask, its stream is closed at once).
type answered []peer.ID

func (a answered) FindProviders(context.Context, cid.Cid) <-chan routing.Provider {
	out := make(chan routing.Provider, len(a))
	for _, id := range a {
		out <- routing.Provider{ID: id}
	}
	close(out)
	return out
}
func (a answered) Announce(context.Context, cid.Cid) error { return nil }
func (a answered) Withdraw(context.Context, cid.Cid) error { return nil }
func (a answered) Peers() []routing.PeerInfo               { return nil }

// TestComposeStreamsClosedAtOnce: routers with nobody to ask close their
// streams at once, and so does the merge when every one does; answers
// already there (the first taken without waiting) still come, once each.
func TestComposeStreamsClosedAtOnce(t *testing.T) {
	t.Parallel()
	x, y := newID(t), newID(t)
	c := cid.Undef
	tests := []struct {
		name    string
		routers []routing.Router
		want    []peer.ID
	}{
		{name: "nobody anywhere", routers: []routing.Router{answered(nil), answered(nil)}},
		{name: "no router", routers: nil},
		{name: "one router answers", routers: []routing.Router{answered(nil), answered{x, y}}, want: []peer.ID{x, y}},
		{name: "both know one peer", routers: []routing.Router{answered{x, y}, answered{y}}, want: []peer.ID{x, y}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			out := routing.Compose(tt.routers...).FindProviders(t.Context(), c)
			if tt.want == nil {
				select {
				case p, ok := <-out:
					if ok {
						t.Fatalf("got %s from nobody", p.ID)
					}
				default:
					t.Fatal("the merged stream of routers with nobody to ask is not closed at once")
				}
				return
			}
			var got []peer.ID
			for p := range out {
				got = append(got, p.ID)
			}
			slices.Sort(got)
			want := slices.Clone(tt.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("got %v, want %v", got, want)
			}
		})
	}
}
