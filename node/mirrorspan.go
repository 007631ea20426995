package node

import (
	"context"
	"io"

	"github.com/ipfs/go-cid"
)

// Mirror span policy: how much of a file a mirror is asked for at once.
//
// A download goes to the mirrors when no peer has answered its lookup by
// the soft deadline (sourcechoice.go, softDeadline). The lookup keeps
// listening, and a peer that answers late takes the download over
// (hedge.go, offer). On a loaded LAN that answer comes tens of ms after the
// deadline, and by then a mirror asked for the whole file has written
// hundreds of KB, or MBs, into its socket: bytes that leave the mirror for
// nothing, and mostly cross its link (bench-sources: 1.4 MB of a 12 MB
// package fetched twice inside site B, the answer 19 ms late; 100 KB of a
// small package with starts 1 s apart, 41 ms late). So while the lookup is
// out, a mirror is asked for spans: firstSpan bytes, then twice as many
// each time, one request each on the same kept-alive connection; a late
// answer that takes over wastes at most the span in flight. Once the
// lookup is over, the rest comes in one request. A download whose lookup
// ended in time (every download on a quiet LAN) asks once, as before; one
// that waits on the spans pays a round trip to the mirror per span, and
// only while some peer has yet to answer. Only a lookup that asked a peer
// of this site spans: a remote peer's late answer takes a download off the
// mirrors only when measured faster than them, and a lookup of remote
// peers alone (a DHT walk over the WAN, up to 2 s) would cost a node
// without LAN peers a round trip per span on every cold package.

// Span sizes: the first small enough that a late answer wastes less than a
// small package's tenth, doubling so a long lookup (a DHT walk) costs a few
// round trips, not one per 16 KiB.
const (
	firstSpan = 16 << 10
	maxSpan   = 64 << 20
)

// spanFetcher is a source that can be asked for part of a file (a mirror).
type spanFetcher interface {
	// FetchSpan writes at most n bytes of the file from offset off to w (n
	// < 0: to the end), returns how many it wrote and reports whether they
	// reached the end of the file; nil only when the span was delivered.
	FetchSpan(ctx context.Context, off, n int64, w io.Writer) (k int64, last bool, err error)
}

// spannedMirror is a mirror asked for growing spans until over closes (the
// download's lookup has ended), then for the rest at once.
type spannedMirror struct {
	source
	spans spanFetcher
	over  <-chan struct{}
}

// spanned returns s asked for spans until over closes, when s is a mirror
// and the lookup is still out (over not nil); s itself otherwise.
func spanned(s source, over <-chan struct{}) source {
	if sf, ok := s.(spanFetcher); ok && over != nil {
		return &spannedMirror{source: s, spans: sf, over: over}
	}
	return s
}

func (m *spannedMirror) Fetch(ctx context.Context, c cid.Cid, off int64, w io.Writer) (int64, error) {
	var got int64
	for span := int64(firstSpan); ; span = min(2*span, maxSpan) {
		select {
		case <-m.over:
			k, err := m.source.Fetch(ctx, c, off+got, w)
			return got + k, err
		default:
		}
		k, last, err := m.spans.FetchSpan(ctx, off+got, span, w)
		got += k
		if err != nil || last {
			return got, err
		}
	}
}
