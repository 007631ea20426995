package p2p

import (
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Follow policy: which in-flight peer a node that is itself downloading a
// blob may stream it from, so that the nodes of a LAN downloading the same
// blob form one tree whose root alone goes to the mirror.
//
// Nodes that start the same download at once would otherwise stream from
// each other and stall. A node follows only a peer that comes before it in
// one order every node computes alike: more bytes held first, then the
// earlier start (as the peer announced it), then the lower peer ID. At the
// start of a herd every node holds nothing and the start decides: the tree
// is rooted at the first downloader. When the node a tree streams from
// dies, its followers look again (node/hedge.go): the one that holds the
// most bytes resumes from the mirror at its offset, and every other one
// follows a peer holding at least as many bytes as it does, so nothing
// the dead node had fetched is fetched again and a follower gets bytes at
// once. A follower holds no more than its source, so it never comes
// before it; a node also never follows a peer that streams the blob from
// it right now (equal bytes after catching up). Clock skew between hosts
// can only cost an extra mirror download, never a cycle of two.

// mayFollow reports whether this node may take c from the peer of answer a.
func (s *Host) mayFollow(c cid.Cid, a haveAnswer) bool {
	g := s.st.growing(c)
	if a.header.code != haveInflight || g == nil {
		return true
	}
	if s.followers.has(c, a.p) {
		return false
	}
	peerKey := followKey{have: a.header.available, start: a.header.started, id: a.p}
	mine := followKey{have: g.Written(), start: s.inflight.start(c, time.Now()), id: s.h.ID()}
	return peerKey.before(mine)
}

// followKey is a node's place in the follow order of one blob.
type followKey struct {
	have  int64 // bytes held
	start time.Time
	id    peer.ID
}

// before reports whether a comes before b: b may follow a.
func (a followKey) before(b followKey) bool {
	if a.have != b.have {
		return a.have > b.have
	}
	return comesFirst(a.start, a.id, b.start, b.id)
}

// comesFirst is the start order: earlier start, then lower peer ID.
func comesFirst(aStart time.Time, a peer.ID, bStart time.Time, b peer.ID) bool {
	as, bs := aStart.UnixMicro(), bStart.UnixMicro()
	return as < bs || (as == bs && a < b)
}

// followerSet is which peers stream which in-flight blob from this node.
type followerSet struct {
	mu sync.Mutex
	m  map[cid.Cid]map[peer.ID]int // streams open per peer
}

func newFollowerSet() *followerSet { return &followerSet{m: make(map[cid.Cid]map[peer.ID]int)} }

// add records one stream of c to p; the returned func removes it.
func (f *followerSet) add(c cid.Cid, p peer.ID) (remove func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m[c] == nil {
		f.m[c] = make(map[peer.ID]int)
	}
	f.m[c][p]++
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.m[c][p]--; f.m[c][p] == 0 {
			delete(f.m[c], p)
		}
		if len(f.m[c]) == 0 {
			delete(f.m, c)
		}
	}
}

func (f *followerSet) has(c cid.Cid, p peer.ID) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.m[c][p] > 0
}
