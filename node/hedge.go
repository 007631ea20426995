package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/flocon/flocon/store"
	"github.com/flocon/flocon/verify"
)

// Hedging: one download attempt runs its sources through a transfer. The
// first source starts at the current offset; when it turns slow or silent
// (health.go, pace.slow) the next source starts beside it, at the offset
// the download has reached, and whichever of the two first brings bytes
// past that point keeps the download: the other is cancelled with
// errOvertaken and demoted. A hedge that falls behind a source that
// recovered is cancelled the same way. A source that fails hands over to
// the next at the same offset, as before hedging.

// errOvertaken ends a source whose place a faster source took.
var errOvertaken = errors.New("overtaken by a faster source")

// errFinished ends a source still running when the download is complete.
var errFinished = errors.New("download complete")

// Hedge tuning. A dead peer is not the hedge's business: its blob stream
// fails within a second (node/p2p/liveness.go) and the next source takes
// over at once, long before the hedge delay or the stall timers.
const (
	hedgeTick = 250 * time.Millisecond // how often the running sources are judged
	maxLanes  = 2                      // sources running at once for one download
)

// transfer runs the sources of one download attempt into one sink.
type transfer struct {
	n    *Node
	c    cid.Cid
	file string
	v    *verify.Verifier
	srcs []source

	mu    sync.Mutex // guards w, got, owner, done and every lane's pos
	w     *sink
	got   []int64 // bytes each source put into the sink
	owner *lane   // the lane whose bytes the sink takes
	done  bool    // complete: no lane writes any more

	next int           // index of the next source never started
	late <-chan source // sources found after the start; nil: none
	// lookupOut is closed when late ends; mirrors started while it is
	// open are asked for spans when spanMirrors (mirrorspan.go). nil:
	// none made yet.
	lookupOut   chan struct{}
	spanMirrors bool // the lookup out asked a peer of this site
	lanes       map[*lane]struct{}
	events      chan laneEnd
	tally       failureTally
	wg          sync.WaitGroup
}

// lane is one source running inside a transfer.
type lane struct {
	t         *transfer
	i         int // index in t.srcs
	src       source
	inFlight  bool
	pace      *pace
	cancel    context.CancelCauseFunc
	pos       int64 // offset of the lane's next byte (under t.mu)
	lost      bool  // overtaken (under t.mu)
	preempted bool  // stepped aside for a late peer: no strike (under t.mu)
	wasSlow   bool  // judged slow at the last tick: losing costs it a strike
}

type laneEnd struct {
	l   *lane
	k   int64 // bytes the source delivered, duplicates included
	err error
}

func newTransfer(n *Node, c cid.Cid, file string, v *verify.Verifier, w *sink, srcs []source) *transfer {
	return &transfer{n: n, c: c, file: file, v: v, w: w, srcs: srcs,
		got: make([]int64, len(srcs)), lanes: make(map[*lane]struct{}),
		events: make(chan laneEnd, len(srcs))}
}

// run drives the transfer to a verdict over everything written.
func (t *transfer) run(ctx context.Context) (verify.Result, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer func() {
		cancel(errFinished)
		if len(t.lanes) == 0 { // every lane's end was taken: no goroutine to wait for
			t.wg.Wait()
			return
		}
		// Lanes still running end now; take their ends (sources found
		// late can outnumber the events buffer) until every one is out.
		out := make(chan struct{})
		go func() {
			t.wg.Wait()
			close(out)
		}()
		for {
			select {
			case <-t.events:
			case <-out:
				return
			}
		}
	}()
	switch {
	case t.alone():
		if res, err, over := t.runAlone(ctx); over {
			return res, err
		}
		// It failed and the sources were re-made (churn.go): as usual.
	case !t.startNext(ctx) && t.late == nil:
		// With no source yet, a lookup still out may bring one (late).
		return verify.Result{}, t.tally.err("fetch " + t.file)
	}
	tick := time.NewTicker(hedgeTick)
	defer tick.Stop()
	for {
		select {
		case e := <-t.events:
			delete(t.lanes, e.l)
			if res, err, over := t.ended(ctx, e); over {
				return res, err
			}
		case now := <-tick.C:
			t.judge(ctx, now)
		case s, ok := <-t.late:
			if !ok {
				t.late = nil
				t.lookupOver()
				if len(t.lanes) == 0 && !t.startNext(ctx) {
					return verify.Result{}, t.tally.err("fetch " + t.file)
				}
				continue
			}
			t.offer(ctx, s)
		}
	}
}

// startNext starts the next untried source at the current offset.
func (t *transfer) startNext(ctx context.Context) bool {
	l, lctx := t.nextLane(ctx)
	if l == nil {
		return false
	}
	t.wg.Go(func() {
		k, err := t.n.fromSource(lctx, l.src, t.c, l.pos, l)
		l.cancel(nil)
		t.events <- laneEnd{l: l, k: k, err: err} // buffered: one slot per source
	})
	return true
}

// nextLane makes the lane of the next untried source at the current
// offset, with its context; nil when every source was tried.
func (t *transfer) nextLane(ctx context.Context) (*lane, context.Context) {
	if t.next >= len(t.srcs) {
		return nil, nil
	}
	// The list is re-made on each switch: a source not tried yet that was
	// demoted again meanwhile (by other downloads) goes last. Untried
	// sources have contributed nothing, so got needs no reordering.
	copy(t.srcs[t.next:], t.n.health.repeatOffendersLast(t.srcs[t.next:], time.Now()))
	i := t.next
	t.next++
	lctx, cancel := context.WithCancelCause(ctx)
	l := &lane{t: t, i: i, src: spanned(t.srcs[i], t.lookupOpen()), inFlight: traitsOf(t.srcs[i]).inFlight, pace: newPace(time.Now()), cancel: cancel}
	t.mu.Lock()
	l.pos = t.w.n
	if t.owner == nil {
		t.owner = l
	}
	t.mu.Unlock()
	t.lanes[l] = struct{}{}
	return l, lctx
}

// Write takes a lane's bytes: the owner's go to the sink; another lane's
// bytes up to the sink's offset are duplicates and are dropped, and its
// first byte past it makes it the owner (the old one is cancelled).
func (l *lane) Write(b []byte) (int, error) {
	t := l.t
	l.pace.add(int64(len(b)), time.Now())
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.done:
		return 0, errFinished
	case l.lost:
		return 0, errOvertaken
	case t.owner != l:
		if end := l.pos + int64(len(b)); end <= t.w.n {
			l.pos = end
			return len(b), nil
		}
		if old := t.owner; old != nil {
			old.lost = true
			old.cancel(errOvertaken)
		}
		t.owner = l
	}
	skip := t.w.n - l.pos // > 0 only when the lane has just taken over
	before := t.w.n
	_, err := t.w.Write(b[skip:])
	k := t.w.n - before
	l.pos = t.w.n
	t.got[l.i] += k
	return int(skip + k), err
}

// ended takes the end of one lane; over reports the verdict of the attempt.
func (t *transfer) ended(ctx context.Context, e laneEnd) (res verify.Result, err error, over bool) {
	now := time.Now()
	key := sourceKey(e.l.src)
	t.mu.Lock()
	lost, preempted, complete := e.l.lost, e.l.preempted, t.w.size >= 0 && t.w.n >= t.w.size
	t.mu.Unlock()
	var se *sinkError
	switch {
	case lost:
		if e.l.wasSlow && !preempted {
			t.n.health.strike(key, now)
		}
		t.n.log.Info("source overtaken", "cid", t.c.String(), "file", t.file, "source", e.l.src.String(), "bytes", e.k)
	case e.err == nil || complete || errors.Is(e.err, verify.ErrSizeMismatch):
		// The source says it has sent everything (or too much), or the
		// sink has every byte: the verifier judges the whole.
		if e.err == nil {
			t.n.health.delivered(key, e.l.pace.firstByte(), e.k, e.l.pace.rate(now))
		}
		res, err := t.finish()
		if err != nil {
			return res, fmt.Errorf("fetch %s from %s: %w", t.file, e.l.src, err), true
		}
		t.overran(e)
		return res, nil, true
	case errors.As(e.err, &se):
		return verify.Result{}, fmt.Errorf("fetch %s: %w", t.file, e.err), true
	case ctx.Err() != nil:
		return verify.Result{}, fmt.Errorf("fetch %s: %w", t.file, context.Cause(ctx)), true
	default:
		t.n.log.Info("source failed", "cid", t.c.String(), "file", t.file, "source", e.l.src.String(), "bytes", e.k, "err", e.err)
		t.mu.Lock()
		delivered := t.w.n > 0
		t.mu.Unlock()
		t.tally.add(fmt.Errorf("%s: %w", e.l.src, e.err), delivered)
		// A dead peer answers no lookup: a strike would only punish a
		// live one judged dead on a starved machine.
		if !errors.Is(e.err, store.ErrNotFound) && !isGone(e.err) {
			t.n.health.strike(key, now)
		}
		if len(t.lanes) == 0 {
			t.relist(ctx, e.l.src) // a switch: who is alive and how far now (churn.go)
		}
	}
	if len(t.lanes) == 0 && !t.startNext(ctx) {
		if t.late != nil {
			// Every source tried failed, but the lookup is still out: a
			// peer answering late (a loaded machine) is better than a 404.
			return verify.Result{}, nil, false
		}
		return verify.Result{}, t.tally.err("fetch " + t.file), true
	}
	return verify.Result{}, nil, false
}

// offer takes a source found after the transfer started (a lookup answer
// that came after the soft deadline): it goes before the mirrors not tried
// yet. When only mirrors are running and it is a LAN peer (or a remote one
// faster than the mirrors) with a complete copy or an in-flight one ahead
// of this download, the download switches to it at once: the mirrors step
// aside (without a strike) and queue up right after it.
func (t *transfer) offer(ctx context.Context, s source) {
	tr := traitsOf(s)
	t.mu.Lock()
	off, owner := t.w.n, t.owner
	t.mu.Unlock()
	var rate float64 // of the source the download takes its bytes from now
	if owner != nil {
		rate = owner.pace.rate(time.Now())
	}
	switchTo := t.n.takesOver(s, off, rate, t.n.bestMirrorBandwidth(t.srcs))
	for l := range t.lanes {
		switchTo = switchTo && traitsOf(l.src).kind == sourceMirror
	}
	at := t.next
	switch {
	case switchTo:
	case tr.kind == sourceRemotePeer:
		at = len(t.srcs)
	default:
		for at < len(t.srcs) && traitsOf(t.srcs[at]).kind != sourceMirror {
			at++
		}
	}
	t.insert(at, s)
	t.n.log.Info("late lookup answer", "cid", t.c.String(), "file", t.file, "source", s.String(), "switch", switchTo)
	if len(t.lanes) == 0 {
		t.startNext(ctx) // every source so far failed: this one is all there is
		return
	}
	if !switchTo {
		return
	}
	for l := range t.lanes {
		t.mu.Lock()
		l.lost, l.preempted = true, true
		t.mu.Unlock()
		l.cancel(errOvertaken)
		t.insert(t.next+1, t.srcs[l.i]) // right after the peer, from wherever it is
	}
	t.startNext(ctx)
}

// listen makes late the lookup whose late answers the transfer takes, and
// spans the mirrors while it is out when it asked a peer of this site.
func (t *transfer) listen(late <-chan source) {
	t.late = late
	t.spanMirrors = late != nil && t.n.asksLAN()
}

// lookupOpen is closed when the lookup still out ends; nil when none is,
// or when it asked no peer of this site (no span is worth a round trip).
func (t *transfer) lookupOpen() <-chan struct{} {
	if t.late == nil || !t.spanMirrors {
		return nil
	}
	if t.lookupOut == nil {
		t.lookupOut = make(chan struct{})
	}
	return t.lookupOut
}

// lookupOver tells the mirrors asked for spans that the lookup has ended.
func (t *transfer) lookupOver() {
	if t.lookupOut != nil {
		close(t.lookupOut)
		t.lookupOut = nil
	}
}

// insert puts s at position at of the sources.
func (t *transfer) insert(at int, s source) {
	t.srcs = slices.Insert(t.srcs, at, s)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.got = slices.Insert(t.got, at, 0)
	for l := range t.lanes {
		if l.i >= at {
			l.i++ // lanes index srcs and got
		}
	}
}

// overran bans a peer that sent more than the blob's size: the verified
// bytes are complete without what came after, so the peer announced or
// sent a size it does not have. (A mirror appending junk is only cut off.)
func (t *transfer) overran(e laneEnd) {
	p := e.l.src.Peer()
	if p == "" || !errors.Is(e.err, verify.ErrSizeMismatch) {
		return
	}
	t.n.ban(p, "sent more bytes than the blob has", Evidence{CID: t.c.String(), Detail: e.err.Error()})
	t.n.log.Warn("peer banned", "peer", p.String(), "cid", t.c.String(), "err", e.err)
}

// finish stops every lane from writing and asks the verifier for its
// verdict over the bytes written.
func (t *transfer) finish() (verify.Result, error) {
	t.mu.Lock()
	t.done = true
	t.mu.Unlock()
	start := time.Now()
	defer func() { t.n.stats.verified(time.Since(start)) }()
	return t.w.verdict()
}

// judge hedges when every running source is slow, and cancels a hedge
// that has delivered for a whole window without overtaking a source that
// runs well again.
func (t *transfer) judge(ctx context.Context, now time.Time) {
	after, speed := t.n.cfg.HedgeAfter, t.n.cfg.HedgeSpeed
	slow := make(map[*lane]bool, len(t.lanes))
	for l := range t.lanes {
		slow[l] = l.pace.slow(now, after, speed, l.inFlight)
		l.wasSlow = slow[l]
	}
	t.mu.Lock()
	owner := t.owner
	t.mu.Unlock()
	if _, running := t.lanes[owner]; running && !slow[owner] {
		for l := range t.lanes {
			if fb := l.pace.firstAt.Load(); l != owner && fb != 0 && now.Sub(time.Unix(0, fb)) >= after {
				t.mu.Lock()
				l.lost = true
				t.mu.Unlock()
				l.cancel(errOvertaken)
			}
		}
	}
	for _, s := range slow {
		if !s {
			return
		}
	}
	if len(t.lanes) < maxLanes && t.next < len(t.srcs) {
		t.n.log.Info("source slow, hedging", "cid", t.c.String(), "file", t.file,
			"slow", laneNames(t.lanes), "next", t.srcs[t.next].String())
		t.startNext(ctx)
	}
}

func laneNames(lanes map[*lane]struct{}) string {
	names := make([]string, 0, len(lanes))
	for l := range lanes {
		names = append(names, l.src.String())
	}
	return strings.Join(names, ", ")
}
