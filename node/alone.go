package node

import (
	"context"

	"github.com/flocon/flocon/verify"
)

// A transfer with one source and no lookup still out (one mirror and no
// peer: most cold packages) runs that source on the download's own
// goroutine. There is nothing to hedge to and no late source to offer, so
// the lane goroutine, its end's hand-off through the events channel and
// the hedge ticker bought nothing; the source's watchdog (health.go) still
// guards it. When it fails and the sources are re-made (churn.go, a peer
// that died), the transfer goes on as usual with whatever was found.

// alone reports whether the transfer runs its source on its own goroutine.
func (t *transfer) alone() bool { return len(t.srcs) == 1 && t.late == nil }

// runAlone runs the only source on this goroutine; over as for ended.
func (t *transfer) runAlone(ctx context.Context) (res verify.Result, err error, over bool) {
	l, lctx := t.nextLane(ctx)
	k, err := t.n.fromSource(lctx, l.src, t.c, l.pos, l)
	l.cancel(nil)
	delete(t.lanes, l)
	return t.ended(ctx, laneEnd{l: l, k: k, err: err})
}
