package node

import (
	"sort"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/flocon/flocon/node/routing"
)

// Ranking policy of peer sources: complete copies first, then by a score
// (lower is better): the latency (EWMA of pings and have queries),
// inflated by the share of failed transfers, and by a recent failure so a
// flaky peer is tried after the steady ones. Mirrors come after every peer.

// unknownLatency ranks a peer never measured behind every measured LAN peer.
const unknownLatency = 50 * time.Millisecond

// rank orders providers best first.
func (n *Node) rank(found []routing.Provider, now time.Time) []routing.Provider {
	score := make(map[peer.ID]float64, len(found))
	for _, pr := range found {
		score[pr.ID] = n.ranks.score(pr.ID, pr.Latency, now)
	}
	sort.SliceStable(found, func(i, j int) bool {
		ci, cj := !found[i].InFlight, !found[j].InFlight
		if ci != cj {
			return ci
		}
		return score[found[i].ID] < score[found[j].ID]
	})
	return found
}

// transfers is one peer's record as a source.
type transfers struct {
	Successes   int64 // transfers from the peer that reached the end
	Failures    int64 // transfers from the peer that failed or stalled
	LastFailure time.Time
}

// rankHistory is the history of every peer as a source since start.
type rankHistory struct {
	mu sync.Mutex
	m  map[peer.ID]transfers
}

func newRankHistory() *rankHistory { return &rankHistory{m: make(map[peer.ID]transfers)} }

func (t *rankHistory) get(p peer.ID) transfers {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.m[p]
}

func (t *rankHistory) success(p peer.ID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	h := t.m[p]
	h.Successes++
	t.m[p] = h
}

func (t *rankHistory) failure(p peer.ID, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	h := t.m[p]
	h.Failures++
	h.LastFailure = at
	t.m[p] = h
}

// score is the ranking score of p (lower is better).
func (t *rankHistory) score(p peer.ID, latency time.Duration, now time.Time) float64 {
	h := t.get(p)
	if latency <= 0 {
		latency = unknownLatency
	}
	s := float64(latency) * float64(1+2*h.Failures) / float64(1+h.Successes)
	if !h.LastFailure.IsZero() && now.Sub(h.LastFailure) < time.Minute {
		s *= 4
	}
	return s
}
