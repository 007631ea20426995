package p2p

import (
	"context"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// peerStats is what this node has seen of one peer since it started.
type peerStats struct {
	BytesSent   int64
	BytesRecv   int64
	BlobsServed int64
	// ShortAndGone counts streams that ended short just before the peer
	// disconnected (a shutdown, or a liar covering its tracks).
	ShortAndGone int64
}

// peerTable keeps the transfer counts shown by `flocon peers`.
type peerTable struct {
	mu sync.Mutex
	m  map[peer.ID]*peerStats
}

func newPeerTable() *peerTable { return &peerTable{m: make(map[peer.ID]*peerStats)} }

// update applies fn to p's row under the lock.
func (t *peerTable) update(p peer.ID, fn func(*peerStats)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ps, ok := t.m[p]
	if !ok {
		ps = &peerStats{}
		t.m[p] = ps
	}
	fn(ps)
}

func (t *peerTable) get(p peer.ID) peerStats {
	t.mu.Lock()
	defer t.mu.Unlock()
	if ps, ok := t.m[p]; ok {
		return *ps
	}
	return peerStats{}
}

// peerSlots bounds the blob streams served to each peer at once, so one
// peer cannot take every upload slot.
type peerSlots struct {
	mu    sync.Mutex
	max   int
	inUse map[peer.ID]int
}

func newPeerSlots(max int) *peerSlots {
	return &peerSlots{max: max, inUse: make(map[peer.ID]int)}
}

func (s *peerSlots) acquire(p peer.ID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inUse[p] >= s.max {
		return false
	}
	s.inUse[p]++
	return true
}

func (s *peerSlots) release(p peer.ID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inUse[p]--; s.inUse[p] <= 0 {
		delete(s.inUse, p)
	}
}

// peerRates is an optional per-peer upload rate (token bucket, bytes/s); a
// zero rate is unlimited.
type peerRates struct {
	rate int64
	mu   sync.Mutex
	m    map[peer.ID]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newPeerRates(rate int64) *peerRates {
	return &peerRates{rate: rate, m: make(map[peer.ID]*bucket)}
}

// wait blocks until p may send n more bytes, or ctx ends.
func (r *peerRates) wait(ctx context.Context, p peer.ID, n int) error {
	if r.rate <= 0 {
		return nil
	}
	r.mu.Lock()
	b, ok := r.m[p]
	now := time.Now()
	if !ok {
		b = &bucket{tokens: float64(r.rate), last: now}
		r.m[p] = b
	}
	b.tokens = min(float64(r.rate), b.tokens+now.Sub(b.last).Seconds()*float64(r.rate))
	b.last = now
	b.tokens -= float64(n)
	deficit := -b.tokens
	r.mu.Unlock()
	if deficit <= 0 {
		return nil
	}
	t := time.NewTimer(time.Duration(deficit / float64(r.rate) * float64(time.Second)))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// cidSet is the set of CIDs this node offers to peers.
type cidSet struct {
	mu sync.RWMutex
	m  map[cid.Cid]struct{}
}

func newCIDSet() *cidSet { return &cidSet{m: make(map[cid.Cid]struct{})} }

func (s *cidSet) add(c cid.Cid) {
	s.mu.Lock()
	s.m[c] = struct{}{}
	s.mu.Unlock()
}

func (s *cidSet) remove(c cid.Cid) {
	s.mu.Lock()
	delete(s.m, c)
	s.mu.Unlock()
}

func (s *cidSet) has(c cid.Cid) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok := s.m[c]
	return ok
}

func (s *cidSet) list() []cid.Cid {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]cid.Cid, 0, len(s.m))
	for c := range s.m {
		out = append(out, c)
	}
	return out
}

func (s *cidSet) len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.m)
}

// startTimes records when this node's in-flight downloads started, so that
// concurrent downloaders agree on who follows whom.
type startTimes struct {
	mu sync.Mutex
	m  map[cid.Cid]time.Time
}

func newStartTimes() *startTimes { return &startTimes{m: make(map[cid.Cid]time.Time)} }

// start records t unless c already has a start, and returns the start.
// The first value a node records is the one it tells peers and orders
// itself by, so every node sees the same order even when a peer asks
// before the download announced itself.
func (st *startTimes) start(c cid.Cid, t time.Time) time.Time {
	st.mu.Lock()
	defer st.mu.Unlock()
	if old, ok := st.m[c]; ok {
		return old
	}
	st.m[c] = t
	return t
}

func (st *startTimes) done(c cid.Cid) {
	st.mu.Lock()
	defer st.mu.Unlock()
	delete(st.m, c)
}

// Recently dropped peers. A lookup asks the connected peers and those
// whose connection dropped within recentWindow (a Wi-Fi hiccup, a
// restart): asking one redials it. A dead machine answers no dial: its TCP
// port refuses at once, but libp2p goes on with its QUIC address, which
// gets no answer until the swarm's dial timeout (5 s on a private
// network), and every lookup out meanwhile waited for that dial, past its
// soft deadline, while the download asked the mirror in spans (the kill -9
// bench: 66-114 span requests per run instead of one GET per file). So:
//
//   - a redial of a peer of this site is bounded by lanRedialTimeout
//     (lan.go, redial): the peer is a LAN round trip away, and a live one
//     (the hiccup) connects within a few ms; a remote one is dialled within
//     the lookup's bound, as a fresh one;
//   - a peer whose redial failed is forgotten: it is asked again once it
//     connects (mDNS, its own redial of this node, a bootstrap round);
//   - a peer this node closed because liveness judged it gone (ErrPeerGone)
//     is not put on the list at all, until it connects again: it is dead,
//     and if it merely restarted it connects again as above;
//   - the DHT walk follows the same list (dht.go, members): a peer of this
//     site without a connection stays in the routing table, and each walk
//     asked it for records and waited recordAskTimeout (1 s) for the dial.
const (
	recentWindow     = time.Minute            // how long a dropped peer is still asked in lookups
	lanRedialTimeout = 250 * time.Millisecond // bound of a lookup's redial of a dropped peer of this site
)

// recentPeers remembers peers whose last connection dropped, and when,
// and those judged gone since they last connected.
type recentPeers struct {
	mu   sync.Mutex
	m    map[peer.ID]time.Time
	gone map[peer.ID]bool
}

func newRecentPeers() *recentPeers {
	return &recentPeers{m: make(map[peer.ID]time.Time), gone: make(map[peer.ID]bool)}
}

// mark records that p's last connection dropped at at, unless p was judged
// gone.
func (r *recentPeers) mark(p peer.ID, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.gone[p] {
		r.m[p] = at
	}
}

// forget drops p from the list (its redial failed).
func (r *recentPeers) forget(p peer.ID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.m, p)
}

// judgedGone drops p and keeps it off the list until it connects again:
// its connection is being closed because it went silent.
func (r *recentPeers) judgedGone(p peer.ID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.m, p)
	r.gone[p] = true
}

// connected records that p has a connection again: a later drop puts it on
// the list as any other.
func (r *recentPeers) connected(p peer.ID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.gone, p)
}

// has reports whether p dropped within recentWindow of now and is still
// asked.
func (r *recentPeers) has(p peer.ID, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	at, ok := r.m[p]
	return ok && now.Sub(at) <= recentWindow
}

// list returns the peers dropped within recentWindow of now, and forgets
// the older ones.
func (r *recentPeers) list(now time.Time) []peer.ID {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]peer.ID, 0, len(r.m))
	for p, at := range r.m {
		if now.Sub(at) > recentWindow {
			delete(r.m, p)
			continue
		}
		out = append(out, p)
	}
	return out
}

// PeerStat is one connected peer as `flocon peers` shows it.
type PeerStat struct {
	ID          peer.ID
	Addrs       []string // those of the open connections first, then the others known; each once
	Latency     time.Duration
	BytesSent   int64
	BytesRecv   int64
	BlobsServed int64
	Relayed     bool // every open connection goes through a relay (limited)
}

// Connected lists the connected peers with what this node has seen of them.
func (s *Host) Connected() []PeerStat {
	peers := s.h.Network().Peers()
	out := make([]PeerStat, 0, len(peers))
	for _, p := range peers {
		st := s.peers.get(p)
		ps := PeerStat{
			ID: p, Latency: s.h.Peerstore().LatencyEWMA(p),
			BytesSent: st.BytesSent, BytesRecv: st.BytesRecv, BlobsServed: st.BlobsServed,
		}
		ps.Addrs = s.peerAddrs(p)
		ps.Relayed = s.h.Network().Connectedness(p) == network.Limited
		out = append(out, ps)
	}
	return out
}

// peerAddrs lists p's addresses once each: those of the open connections
// (two connections over one QUIC address are one address), then the other
// addresses p told (its TCP one when the connections are QUIC).
func (s *Host) peerAddrs(p peer.ID) []string {
	seen := make(map[string]bool)
	var out []string
	add := func(a string) {
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	for _, c := range s.h.Network().ConnsToPeer(p) {
		add(c.RemoteMultiaddr().String())
	}
	for _, a := range s.usableAddrs(s.h.Peerstore().Addrs(p)) {
		add(a.String())
	}
	return out
}
