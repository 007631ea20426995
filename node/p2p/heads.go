package p2p

import (
	"io"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/flocon/flocon/node/routing"
)

// The first bytes with the have answer. A blob from a peer took two round
// trips before its first byte: the have query, then the blob stream's
// request and header. On /flocon/have/1.1.0 the asker says how many first
// bytes it wants, and a peer holding the blob complete sends them with
// its answer (at most maxHead, and never the whole blob: those bytes are
// not hashed by the sender). FetchBlob from offset 0 then writes them at
// once and asks the blob stream for the rest, so the first byte comes one
// round trip sooner and the second round trip runs while the caller
// consumes the head. Like every byte from a peer, the head is verified by
// the download with the rest, and bad bytes in it ban the peer that sent
// them.
const (
	maxHead = 16 << 10
	// headTTL bounds how long a head waits for its FetchBlob: a lookup's
	// answers are used at once or not at all (lookupBound in node is 5 s).
	headTTL = 5 * time.Second
	// maxHeads bounds the heads held: the answers of the lookups of the
	// last headTTL, the oldest dropped first.
	maxHeads = 64
)

// headWant is how many first bytes to ask of a peer with its have answer:
// a head for every have query is worth its bytes on a LAN, where the
// first byte of a package comes one round trip sooner; over a WAN, each
// package's query to each remote peer would send 16 KiB across the link
// whichever source wins (3.9 MB of 52.5 MB in the two-site bench, where
// site B took every package from its faster mirror), so remote peers are
// asked for none.
func headWant(site routing.Locality) int {
	if site == routing.SameLAN {
		return maxHead
	}
	return 0
}

type headKey struct {
	p peer.ID
	c cid.Cid
}

type heldHead struct {
	b  []byte
	at time.Time
}

// headCache holds the heads of recent have answers until their FetchBlob
// takes them.
type headCache struct {
	mu sync.Mutex
	m  map[headKey]heldHead
}

func newHeadCache() *headCache { return &headCache{m: make(map[headKey]heldHead)} }

func (hc *headCache) put(p peer.ID, c cid.Cid, b []byte, now time.Time) {
	if len(b) == 0 {
		return
	}
	hc.mu.Lock()
	defer hc.mu.Unlock()
	for k, h := range hc.m {
		if now.Sub(h.at) >= headTTL {
			delete(hc.m, k)
		}
	}
	if len(hc.m) >= maxHeads {
		var oldest headKey
		var at time.Time
		for k, h := range hc.m {
			if at.IsZero() || h.at.Before(at) {
				oldest, at = k, h.at
			}
		}
		delete(hc.m, oldest)
	}
	hc.m[headKey{p, c}] = heldHead{b: b, at: now}
}

// take returns and forgets p's head of c, if it is recent.
func (hc *headCache) take(p peer.ID, c cid.Cid, now time.Time) []byte {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	k := headKey{p, c}
	h, ok := hc.m[k]
	delete(hc.m, k)
	if !ok || now.Sub(h.at) >= headTTL || now.Before(h.at) {
		return nil
	}
	return h.b
}

// readHead reads the first bytes of a complete blob for a have answer: at
// most want and maxHead, and fewer than size.
func (s *Host) readHead(c cid.Cid, want int) (size int64, head []byte) {
	f, size, _, ok := s.openComplete(c)
	if !ok {
		return -1, nil
	}
	defer f.Close()
	k := min(int64(want), maxHead, size-1)
	if k <= 0 {
		return size, nil
	}
	head = make([]byte, k)
	if _, err := io.ReadFull(f, head); err != nil {
		return size, nil // the blob stream will find out what is wrong
	}
	return size, head
}
