package node

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/flocon/flocon/node/p2p"
)

// Churn policy: what a download does when a peer it streams from dies or
// fails. The list of sources it was started with is stale by then: the
// peer that failed may have been the one every machine of the LAN was
// following, and the others are now at various offsets of the same blob,
// each about to go back to the mirror. So the sources not tried yet are
// re-made from a fresh lookup before the next one starts: the peers alive
// now, in flight ones with how many bytes they hold, which the follow order
// (node/p2p/follow.go) filters so that the LAN forms one tree again. The
// machine holding the most bytes finds no peer to follow and resumes from
// the mirror at its offset (an HTTP Range); every other one follows a peer
// holding at least as many bytes as it does, which serves what it has at
// once and then what it gets. A follower whose new source is itself still
// waiting (on its own resumption) hears keepalives and waits; the hedge
// (HedgeAfter) bounds the wait. The bytes are verified as always, whatever
// their source: the verifier sees every byte of the sink.

// relist re-makes the sources not tried yet after the peer of failed
// failed and nothing else runs: the peers a fresh lookup finds (but the
// one that failed and those still running), then the complete copies of
// the old list it did not find again (a slow answer is no death), then the
// mirrors not tried yet. In-flight peers of the old list that the lookup
// did not return are dropped: they are gone, or this node may no longer
// follow them (it holds more bytes than they do).
func (t *transfer) relist(ctx context.Context, failed source) {
	if t.n.peers == nil || failed.Peer() == "" {
		return
	}
	found, late := t.n.peers(ctx, t.c)
	skip := map[string]bool{sourceKey(failed): true}
	for l := range t.lanes {
		skip[sourceKey(l.src)] = true
	}
	var peers, mirrors []source
	add := func(s source) {
		if !skip[sourceKey(s)] {
			skip[sourceKey(s)] = true
			peers = append(peers, s)
		}
	}
	for _, s := range found {
		add(s)
	}
	for _, s := range t.srcs[t.next:] {
		switch tr := traitsOf(s); {
		case tr.kind == sourceMirror:
			mirrors = append(mirrors, s)
		case !tr.inFlight:
			add(s)
		}
	}
	fresh := t.n.order(peers, mirrors, time.Now())
	t.mu.Lock()
	t.srcs = append(slices.Clip(t.srcs[:t.next]), fresh...)
	t.got = append(slices.Clip(t.got[:t.next]), make([]int64, len(fresh))...)
	t.mu.Unlock()
	if t.late == nil {
		t.listen(late) // the old lookup is over: listen to this one's late answers
	}
	t.n.log.Info("sources re-made", "cid", t.c.String(), "file", t.file, "after", failed.String(), "sources", sourceNames(fresh))
}

// isGone: the source's peer died (its stream went silent, then its ping).
func isGone(err error) bool { return errors.Is(err, p2p.ErrPeerGone) }

func sourceNames(srcs []source) string {
	names := make([]string, len(srcs))
	for i, s := range srcs {
		names[i] = s.String()
	}
	return strings.Join(names, ", ")
}
