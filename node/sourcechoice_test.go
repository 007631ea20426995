package node

import (
	"context"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/flocon/flocon/node/routing"
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

// A late answer takes the download off the mirrors when following it
// costs no more than a moment: a complete copy, a relay ahead, or a relay
// a little behind (it started first and catches up); never a relay far
// behind, nor a remote peer slower than the mirrors.
func TestLateAnswerTakesOver(t *testing.T) {
	t.Parallel()
	const rate = 1 << 20 // bytes/s from the mirror now
	lan := func(inFlight bool, have int64) kindSource {
		return kindSource{name: "lan", id: "L", tr: sourceTraits{kind: sourceLANPeer, inFlight: inFlight, have: have}}
	}
	remote := kindSource{name: "remote", id: "R", tr: sourceTraits{kind: sourceRemotePeer}}
	tests := []struct {
		name   string
		s      kindSource
		off    int64
		rate   float64
		mirror float64 // best mirror bandwidth measured
		want   bool
	}{
		{"complete LAN copy", lan(false, 0), 5 << 20, rate, 0, true},
		{"relay ahead", lan(true, 6<<20), 5 << 20, rate, 0, true},
		{"relay just started, download has its first bytes", lan(true, 0), 64 << 10, rate, 0, true},
		{"relay just started, download has nothing yet", lan(true, 0), 0, 0, 0, true},
		{"relay half a second behind", lan(true, 4<<20+512<<10), 5 << 20, rate, 0, true},
		{"relay 3 s behind", lan(true, 2<<20), 5 << 20, rate, 0, false},
		{"relay behind, download rate unknown", lan(true, 0), 1, 0, 0, false},
		{"remote copy, mirrors unmeasured", remote, 0, rate, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			n := hedgeNode()
			if got := n.takesOver(tt.s, tt.off, tt.rate, tt.mirror); got != tt.want {
				t.Errorf("takesOver = %v, want %v", got, tt.want)
			}
		})
	}
}

// Relays are followed furthest ahead first, then first started, whatever
// their latency: a follower of a follower waits on every delay upstream.
func TestRankRelays(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
	relay := func(id string, have int64, started time.Time, latency time.Duration) routing.Provider {
		return routing.Provider{ID: peer.ID(id), Site: routing.SameLAN, InFlight: true, Have: have, Started: started, Latency: latency}
	}
	tests := []struct {
		name  string
		found []routing.Provider
		want  []string
	}{
		{"furthest ahead first", []routing.Provider{
			relay("near", 1<<20, at.Add(time.Millisecond), time.Millisecond),
			relay("ahead", 5<<20, at, 20*time.Millisecond),
		}, []string{"ahead", "near"}},
		{"nothing held yet: first started first", []routing.Provider{
			relay("second", 0, at.Add(40*time.Millisecond), time.Millisecond),
			relay("first", 0, at, 20*time.Millisecond),
		}, []string{"first", "second"}},
		{"complete copy before any relay", []routing.Provider{
			relay("ahead", 5<<20, at, time.Millisecond),
			{ID: "complete", Site: routing.SameLAN, Latency: 30 * time.Millisecond},
		}, []string{"complete", "ahead"}},
		{"complete copies by latency", []routing.Provider{
			{ID: "far", Site: routing.SameLAN, Latency: 30 * time.Millisecond},
			{ID: "close", Site: routing.SameLAN, Latency: time.Millisecond},
		}, []string{"close", "far"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			n := hedgeNode()
			n.ranks = newRankHistory()
			var got []string
			for _, pr := range n.rank(tt.found, at) {
				got = append(got, string(pr.ID))
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("rank = %v, want %v", got, tt.want)
			}
		})
	}
}
