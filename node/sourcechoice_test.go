package node

import (
	"context"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
)

// kindSource is a source with declared traits; it never fetches.
type kindSource struct {
	name string
	id   peer.ID
	tr   sourceTraits
}

func (k kindSource) String() string       { return k.name }
func (k kindSource) Peer() peer.ID        { return k.id }
func (k kindSource) traits() sourceTraits { return k.tr }
func (k kindSource) Fetch(context.Context, cid.Cid, int64, io.Writer) (int64, error) {
	return 0, io.EOF
}

func TestSourceOrder(t *testing.T) {
	t.Parallel()
	lan := kindSource{name: "lan", id: "L", tr: sourceTraits{kind: sourceLANPeer}}
	lan2 := kindSource{name: "lan2", id: "L2", tr: sourceTraits{kind: sourceLANPeer, inFlight: true}}
	remote := kindSource{name: "remote", id: "R", tr: sourceTraits{kind: sourceRemotePeer}}
	m1 := kindSource{name: "http://m1", tr: sourceTraits{kind: sourceMirror}}
	m2 := kindSource{name: "http://m2", tr: sourceTraits{kind: sourceMirror}}
	now := time.Now()
	tests := []struct {
		name  string
		setup func(b *healthBook)
		want  []string
	}{
		{"unmeasured: LAN, mirrors, then the WAN", func(*healthBook) {}, []string{"lan", "lan2", "http://m1", "http://m2", "remote"}},
		{"WAN measured faster than the mirrors goes first after the LAN", func(b *healthBook) {
			b.delivered(sourceKey(m1), time.Second, 1<<20, 1e6)
			b.delivered(sourceKey(remote), time.Second, 1<<20, 5e6)
		}, []string{"lan", "lan2", "remote", "http://m1", "http://m2"}},
		{"WAN slower than a mirror stays last", func(b *healthBook) {
			b.delivered(sourceKey(m2), time.Second, 1<<20, 9e6)
			b.delivered(sourceKey(remote), time.Second, 1<<20, 2e6)
		}, []string{"lan", "lan2", "http://m1", "http://m2", "remote"}},
		{"one strike: behind the other peers, still before the mirrors", func(b *healthBook) {
			b.strike(sourceKey(lan), now)
		}, []string{"lan2", "lan", "http://m1", "http://m2", "remote"}},
		{"repeated strikes: behind everything", func(b *healthBook) {
			b.strike(sourceKey(lan), now)
			b.strike(sourceKey(lan), now)
		}, []string{"lan2", "http://m1", "http://m2", "remote", "lan"}},
		{"a stalled mirror goes behind the other", func(b *healthBook) {
			b.strike(sourceKey(m1), now)
		}, []string{"lan", "lan2", "http://m2", "http://m1", "remote"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			n := hedgeNode()
			tt.setup(n.health)
			var got []string
			for _, s := range n.order([]source{lan, lan2, remote}, []source{m1, m2}, now) {
				got = append(got, s.String())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("order = %v, want %v", got, tt.want)
			}
		})
	}
}
