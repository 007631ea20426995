package node

import (
	"context"
	"errors"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/flocon/flocon/node/routing"
)

// slowRouter answers a lookup on a script: each provider after its delay,
// then closes the channel after end (0: after the last answer). It stands
// in for peers answering late on a loaded LAN.
type slowRouter struct {
	answers []slowAnswer
	end     time.Duration
}

type slowAnswer struct {
	after time.Duration
	pr    routing.Provider
}

func (r *slowRouter) FindProviders(ctx context.Context, _ cid.Cid) <-chan routing.Provider {
	out := make(chan routing.Provider)
	go func() {
		defer close(out)
		start := time.Now()
		for _, a := range r.answers {
			select {
			case <-time.After(a.after - time.Since(start)):
			case <-ctx.Done():
				return
			}
			select {
			case out <- a.pr:
			case <-ctx.Done():
				return
			}
		}
		select {
		case <-time.After(r.end - time.Since(start)):
		case <-ctx.Done():
		}
	}()
	return out
}

func (r *slowRouter) Announce(context.Context, cid.Cid) error { return nil }
func (r *slowRouter) Withdraw(context.Context, cid.Cid) error { return nil }
func (r *slowRouter) Peers() []routing.PeerInfo               { return nil }

// A complete copy on the LAN starts the download at once; anything less
// (a relay, a remote copy) waits for the other answers up to the soft
// deadline; every answer that comes after the sources were handed out
// still arrives on the late channel.
func TestLookupStartsOnCompleteLANCopy(t *testing.T) {
	t.Parallel()
	const deadline = 150 * time.Millisecond
	complete := routing.Provider{ID: "complete", Site: routing.SameLAN}
	relay := routing.Provider{ID: "relay", Site: routing.SameLAN, InFlight: true}
	remote := routing.Provider{ID: "remote", Site: routing.Remote}
	slow := routing.Provider{ID: "slow", Site: routing.SameLAN, InFlight: true}
	tests := []struct {
		name      string
		answers   []slowAnswer
		wantAfter time.Duration // when the first sources are handed out
		wantFirst []string
		wantLate  []string
	}{
		{"complete LAN copy: at once", []slowAnswer{{5 * time.Millisecond, complete}, {400 * time.Millisecond, slow}},
			5 * time.Millisecond, []string{"complete"}, []string{"slow"}},
		{"relay: waits for the others", []slowAnswer{{5 * time.Millisecond, relay}, {400 * time.Millisecond, slow}},
			deadline, []string{"relay"}, []string{"slow"}},
		{"remote copy: waits for the others", []slowAnswer{{5 * time.Millisecond, remote}, {100 * time.Millisecond, complete}},
			100 * time.Millisecond, []string{"complete", "remote"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				n := hedgeNode()
				n.cfg.HaveTimeout = deadline
				n.ranks = newRankHistory()
				n.net.Store(&peerNet{router: &slowRouter{answers: tt.answers, end: time.Second}})
				start := time.Now()
				srcs, late := n.peerSources(t.Context(), cid.Cid{})
				if took := time.Since(start); took != tt.wantAfter {
					t.Errorf("sources handed out after %v, want %v", took, tt.wantAfter)
				}
				var first, after []string
				for _, s := range srcs {
					first = append(first, string(s.Peer()))
				}
				for s := range late {
					after = append(after, string(s.Peer()))
				}
				if !slices.Equal(first, tt.wantFirst) || !slices.Equal(after, tt.wantLate) {
					t.Errorf("sources %v then late %v, want %v then %v", first, after, tt.wantFirst, tt.wantLate)
				}
			})
		})
	}
}

// On a loaded LAN (recent answers slow) the lookup waits for the answer
// that will come rather than send the download to the mirror at the
// 150 ms deadline; a quick LAN keeps the 150 ms.
func TestLookupWaitsLongerOnLoadedLAN(t *testing.T) {
	t.Parallel()
	relay := routing.Provider{ID: "relay", Site: routing.SameLAN, InFlight: true}
	for _, tt := range []struct {
		name     string
		recent   time.Duration // the slowest recent LAN answer
		wantLate bool
	}{
		{"quick LAN: the 150 ms deadline", time.Millisecond, true},
		{"loaded LAN: the answer at 400 ms is in time", 350 * time.Millisecond, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				n := hedgeNode()
				n.cfg.HaveTimeout = 150 * time.Millisecond
				n.ranks = newRankHistory()
				n.answered.add(tt.recent)
				n.net.Store(&peerNet{router: &slowRouter{answers: []slowAnswer{{400 * time.Millisecond, relay}}}})
				srcs, late := n.peerSources(t.Context(), cid.Cid{})
				var after int
				if late != nil { // nil: the lookup ended in time
					for range late {
						after++
					}
				}
				if gotLate := len(srcs) == 0 && after == 1; gotLate != tt.wantLate {
					t.Errorf("%d sources in time, %d late; want the relay late: %v", len(srcs), after, tt.wantLate)
				}
			})
		})
	}
}

// The soft deadline follows the slowest recent LAN answer, within bounds,
// and forgets it once newer answers have filled the window.
func TestSoftDeadline(t *testing.T) {
	t.Parallel()
	n := hedgeNode()
	n.cfg.HaveTimeout = 150 * time.Millisecond
	check := func(what string, want time.Duration) {
		t.Helper()
		if got := n.softDeadline(); got != want {
			t.Errorf("%s: soft deadline %v, want %v", what, got, want)
		}
	}
	check("no answer yet", 150*time.Millisecond)
	n.noteAnswer(routing.Provider{Site: routing.SameLAN}, 2*time.Millisecond)
	check("quick LAN", 150*time.Millisecond)
	n.noteAnswer(routing.Provider{Site: routing.Remote}, 800*time.Millisecond)
	check("a slow remote answer says nothing of the LAN", 150*time.Millisecond)
	n.noteAnswer(routing.Provider{Site: routing.SameLAN}, 320*time.Millisecond)
	check("one slow LAN answer", 400*time.Millisecond)
	n.noteAnswer(routing.Provider{Site: routing.SameLAN}, 5*time.Second)
	check("bounded", maxSoftDeadline)
	for range answerWindow {
		n.noteAnswer(routing.Provider{Site: routing.SameLAN}, time.Millisecond)
	}
	check("quick again", 150*time.Millisecond)
}

// A signature asked of the peers when the lookup ended before its soft
// deadline (no late answers to wait for) fails at once: it hung forever
// on the nil channel of late answers (e2e TestLAN: a download and the
// daemon's shutdown waited on it).
func TestPeerSignatureLookupEndedInTime(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		n := hedgeNode()
		n.cfg.HaveTimeout = 150 * time.Millisecond
		n.ranks = newRankHistory()
		n.net.Store(&peerNet{router: &slowRouter{}}) // no answer, the lookup ends at once
		if _, _, err := n.peerSignature(t.Context(), cid.Cid{}); !errors.Is(err, ErrPeerNotFound) {
			t.Errorf("peerSignature: %v, want ErrPeerNotFound", err)
		}
	})
}
