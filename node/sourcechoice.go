package node

import (
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/flocon/flocon/node/routing"
)

// Source choice policy: which source a download tries first, and next.
//
// Every place the bytes of a blob can come from is a source (node.go): a
// peer on this LAN, a peer at another site, a peer that is itself still
// downloading the blob (in flight), or a mirror. Each is described by its
// traits (what it is) and its health (what this node measured of it:
// first-byte time, bandwidth, strikes and demotion, health.go).
//
// The order, best first:
//  1. LAN peers: complete copies, then downloads in flight (a relay goes no
//     faster than its own source), the relays furthest ahead first, then
//     each by score (latency, inflated by failed transfers and a recent
//     failure);
//  2. remote peers that beat the mirrors for this node: measured bandwidth
//     above the best measured mirror's (the WAN is used only when it is the
//     faster way in);
//  3. the mirrors, in their configured order;
//  4. the other remote peers;
//
// with every demoted source moved, in its order, behind the healthy ones
// of its group, and a peer demoted repeatedly (repeatStrikes) behind
// everything (a stalled mirror, a peer that trickles, are tried after the
// others until their demotion ends). A download re-decides as it runs: a
// lookup answer that comes late joins it (hedge.go, offer), and the transfer starts the next
// source in this order when the current one turns slow.

// sourceKind is what a source is.
type sourceKind int

const (
	sourceMirror sourceKind = iota
	sourceLANPeer
	sourceRemotePeer
)

func (k sourceKind) String() string {
	switch k {
	case sourceLANPeer:
		return "lan"
	case sourceRemotePeer:
		return "remote"
	}
	return "mirror"
}

// sourceTraits is what a source is, as far as choosing among sources goes.
type sourceTraits struct {
	kind     sourceKind
	inFlight bool  // a peer relaying its own download still under way
	have     int64 // bytes an in-flight peer held when it answered
}

// traitsOf returns s's traits: those it declares, else a mirror's for a
// source behind no peer and a LAN peer's for the others.
func traitsOf(s source) sourceTraits {
	if t, ok := s.(interface{ traits() sourceTraits }); ok {
		return t.traits()
	}
	if s.Peer() == "" {
		return sourceTraits{kind: sourceMirror}
	}
	return sourceTraits{kind: sourceLANPeer}
}

// sourceKey names a source in the health book: a peer by its ID (whatever
// blob it serves), a mirror by its base URL.
func sourceKey(s source) string {
	if p := s.Peer(); p != "" {
		return peerKey(p)
	}
	return s.String()
}

func peerKey(p peer.ID) string { return "peer " + p.String() }

// order returns the sources of one download best first (see the policy
// above): peers as rank left them, mirrors in their configured order.
func (n *Node) order(peers, mirrors []source, now time.Time) []source {
	out := make([]source, 0, len(peers)+len(mirrors))
	var slowRemote []source
	best := n.bestMirrorBandwidth(mirrors)
	for _, s := range peers {
		if traitsOf(s).kind == sourceRemotePeer && !n.beats(s, best) {
			slowRemote = append(slowRemote, s)
			continue
		}
		out = append(out, s)
	}
	// Demoted sources go behind the healthy ones of their group; a peer
	// demoted again and again (a trickler, a staller) behind the mirrors
	// too. One strike alone can be bad luck in a herd (a relay that lost
	// its own source): it must not send the download to the Internet.
	out = append(append(n.health.demotedLast(out, now), n.health.demotedLast(mirrors, now)...), n.health.demotedLast(slowRemote, now)...)
	return n.health.repeatOffendersLast(out, now)
}

// repeatOffendersLast moves the sources demoted repeatedly (repeatStrikes
// in a row) behind all others, keeping the order of both.
func (b *healthBook) repeatOffendersLast(srcs []source, now time.Time) []source {
	out := make([]source, 0, len(srcs))
	var repeat []source
	for _, s := range srcs {
		if h := b.get(sourceKey(s)); h.demoted(now) && h.Strikes >= repeatStrikes {
			repeat = append(repeat, s)
			continue
		}
		out = append(out, s)
	}
	return append(out, repeat...)
}

// repeatStrikes is how many strikes in a row send a peer behind the mirrors.
const repeatStrikes = 2

// bestMirrorBandwidth is the best bandwidth measured among mirrors (0:
// none measured).
func (n *Node) bestMirrorBandwidth(srcs []source) float64 {
	var best float64
	for _, s := range srcs {
		if traitsOf(s).kind == sourceMirror {
			best = max(best, n.health.get(sourceKey(s)).Bandwidth)
		}
	}
	return best
}

// beats reports whether a remote peer's measured bandwidth is above the
// mirrors' best; unmeasured on either side, the mirror keeps its place.
func (n *Node) beats(s source, mirrorBandwidth float64) bool {
	bw := n.health.get(sourceKey(s)).Bandwidth
	return mirrorBandwidth > 0 && bw > mirrorBandwidth
}

// takesOver reports whether a peer found late (a lookup answer after the
// soft deadline) takes the download off the mirrors, the download being at
// offset off and getting rate bytes/s from them.
//
// A complete copy does; a remote peer only when it beats the mirrors for
// this node. A relay (a peer downloading the blob itself) does when it is
// ahead, and also when it is behind by less than relayLag of this
// download's progress: the router offers only a relay that started first,
// it fetches over the same link, and its answer is old by the time it
// arrives, so it reaches the offset long before the hedge would call it
// silent. Staying on the mirror then would fetch the blob twice (measured
// in the herd: a relay that had just started, have 0, and a download that
// had its first bytes). A relay further behind would only make the
// download wait (and, measured in a herd, the mirrors restarted after it).
func (n *Node) takesOver(s source, off int64, rate, mirrorBandwidth float64) bool {
	tr := traitsOf(s)
	if tr.kind == sourceRemotePeer && !n.beats(s, mirrorBandwidth) {
		return false // the WAN only when it is the faster way in
	}
	if !tr.inFlight {
		return true
	}
	lag := int64(rate * relayLag(n.cfg.HedgeAfter).Seconds())
	return tr.have+lag >= off
}

// relayLag is how far behind a late relay may be, in time at the
// download's rate: half the hedge delay, so a relay that really is that far
// behind still sends its first byte past the offset before the hedge would
// start the mirror again.
func relayLag(hedgeAfter time.Duration) time.Duration { return hedgeAfter / 2 }

// softDeadline is how long a lookup waits for answers before the download
// starts on what it has: HaveTimeout, stretched to 5/4 of the slowest of
// the recent LAN answers (answerDelays), at most maxSoftDeadline. A LAN
// answers in a millisecond, so the stretch only shows on a loaded one:
// there (5 machines at once on 2 busy cores, bench-sources) have answers
// came 160-843 ms after the question, the downloads that went to the
// mirror at 150 ms asked it for the whole file, and a small file the
// mirror has written to its socket is counted, and mostly crosses the
// link, even when the late answer cancels the request (1.01-1.26x upstream
// bytes). Waiting for an answer that will come costs less than fetching
// the file twice. (A round-trip average per peer, tried first, stayed
// under 85 ms there: most answers are quick, the late ones are the tail.)
// A peer that never answers (gone) adds nothing; old delays age out.
func (n *Node) softDeadline() time.Duration {
	d := max(n.cfg.HaveTimeout, n.answered.slowest()*5/4)
	return min(d, max(n.cfg.HaveTimeout, maxSoftDeadline))
}

// maxSoftDeadline bounds the stretched soft deadline, well inside pacman's
// 10 s connect limit: past it the download starts and a late answer still
// joins it (hedge.go, offer).
const maxSoftDeadline = time.Second

// noteAnswer records when a LAN peer's answer came, counted from the
// question (remote answers say nothing about this LAN).
func (n *Node) noteAnswer(pr routing.Provider, after time.Duration) {
	if pr.Site == routing.SameLAN {
		n.answered.add(after)
	}
}

// answerDelays keeps the delays of the last answerWindow LAN answers; the
// zero value is empty.
type answerDelays struct {
	mu   sync.Mutex
	ring [answerWindow]time.Duration
	next int
}

// answerWindow is how many recent answers set the soft deadline: a few
// lookups' worth, so a burst of load stretches it and it shrinks back soon
// after.
const answerWindow = 32

func (a *answerDelays) add(d time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ring[a.next%answerWindow] = d
	a.next++
}

// slowest is the longest recent delay (0: none).
func (a *answerDelays) slowest() time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Max(a.ring[:])
}

// demotedLast returns srcs with the demoted sources moved, in their order,
// behind the healthy ones.
func (b *healthBook) demotedLast(srcs []source, now time.Time) []source {
	out := slices.Clone(srcs)
	slices.SortStableFunc(out, func(x, y source) int {
		dx, dy := b.get(sourceKey(x)).demoted(now), b.get(sourceKey(y)).demoted(now)
		switch {
		case dx == dy:
			return 0
		case dy:
			return -1
		}
		return 1
	})
	return out
}

// unknownLatency ranks a peer never measured behind every measured LAN peer.
const unknownLatency = 50 * time.Millisecond

// rank orders providers best first: LAN before remote, complete copies
// before downloads in flight, relays furthest ahead (then first started)
// first, then by score.
//
// A relay sends no byte it has not received itself, so the one holding the
// most is the one closest to the first downloader. Ranked by latency, the
// herd of 5 machines formed chains (0 -> 4 -> 1 -> 3, bench-sources): each
// follower of a follower waited on every delay upstream of it, and the
// last machine got a 12 MB package 5 s after the machine that fetched it
// from the mirror had it whole. Ranked by bytes held, followers follow the
// first downloader, one hop from the mirror.
func (n *Node) rank(found []routing.Provider, now time.Time) []routing.Provider {
	score := make(map[peer.ID]float64, len(found))
	for _, pr := range found {
		score[pr.ID] = n.ranks.score(pr.ID, pr.Latency, now)
	}
	sort.SliceStable(found, func(i, j int) bool {
		li, lj := found[i].Site == routing.SameLAN, found[j].Site == routing.SameLAN
		if li != lj {
			return li
		}
		ci, cj := !found[i].InFlight, !found[j].InFlight
		if ci != cj {
			return ci
		}
		if found[i].InFlight {
			if found[i].Have != found[j].Have {
				return found[i].Have > found[j].Have
			}
			// A herd starts together, every relay holding nothing yet:
			// the first to start is the root of the tree.
			if si, sj := found[i].Started, found[j].Started; !si.Equal(sj) && !si.IsZero() && !sj.IsZero() {
				return si.Before(sj)
			}
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

// score is the ranking score of p (lower is better): the latency, inflated
// by the share of failed transfers, and by a recent failure so a flaky peer
// is tried after the steady ones.
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
