package node

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// Health policy: how this node judges a source while it delivers, and what
// it remembers of it afterwards.
//
// Two levels guard a transfer. The hedge level is soft and fast: a source
// that has sent no byte HedgeAfter after it started, or less than
// HedgeSpeed bytes/s over the last HedgeAfter, gets the next source started
// beside it from the same offset, and the first of the two to deliver new
// bytes keeps the download (hedge.go). Both limits sit well inside pacman's
// own (connect 10 s, abort below 1 B/s for 10 s), so a client waiting on a
// stalled source sees bytes again long before it gives up. The watchdog
// level is hard and slow: no first byte within MirrorTimeout, or less than
// MinSpeed over StallWindow, fails the source outright (it matters when no
// other source is left to hedge with).
//
// A source that failed, stalled or was overtaken is demoted for a while
// (demoteBase, doubling with each strike up to demoteMax): the next
// downloads try it after the others. A success clears its strikes. Lies
// (bad bytes, protocol violations) are not a health matter: they ban.

// Defaults of the hedge level.
const (
	DefaultHedgeAfter = 2 * time.Second
	DefaultHedgeSpeed = 64 << 10 // bytes/s
)

// Demotion of unhealthy sources.
const (
	demoteBase = 30 * time.Second
	demoteMax  = 10 * time.Minute
	// bandwidthMinBytes: shorter transfers say more about latency than
	// bandwidth and do not update the bandwidth estimate.
	bandwidthMinBytes = 256 << 10
	ewmaWeight        = 0.3 // weight of a new sample in the averages
)

// pace follows one source's delivery for the hedge level: it is slow when
// no byte came for the hedge delay (since its start or its latest byte),
// or when fewer than the hedge speed's worth came over the last full window.
type pace struct {
	start   time.Time
	bytes   atomic.Int64
	firstAt atomic.Int64 // unix nanoseconds of the first byte; 0: none yet
	lastAt  atomic.Int64 // unix nanoseconds of the latest byte

	mu        sync.Mutex
	markAt    time.Time // start of the current window
	markBytes int64
	slowLast  bool // verdict of the last full window
}

func newPace(now time.Time) *pace { return &pace{start: now, markAt: now} }

func (p *pace) add(k int64, now time.Time) {
	if k <= 0 {
		return
	}
	p.firstAt.CompareAndSwap(0, now.UnixNano())
	p.lastAt.Store(now.UnixNano())
	p.bytes.Add(k)
}

// lastByte is when the latest byte came (the start before any).
func (p *pace) lastByte() time.Time {
	if at := p.lastAt.Load(); at != 0 {
		return time.Unix(0, at)
	}
	return p.start
}

// firstByte is how long the first byte took (0: none yet).
func (p *pace) firstByte() time.Duration {
	at := p.firstAt.Load()
	if at == 0 {
		return 0
	}
	return time.Unix(0, at).Sub(p.start)
}

// slow judges the source at now against the hedge policy. Sources that
// relay a download still in flight elsewhere (inFlight) go no faster than
// their own source: only silence counts against them, not speed.
func (p *pace) slow(now time.Time, after time.Duration, speed int64, inFlight bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.firstAt.Load() == 0 {
		return now.Sub(p.start) >= after
	}
	if now.Sub(time.Unix(0, p.lastAt.Load())) >= after {
		return true // silent for a whole window, whatever came before
	}
	if el := now.Sub(p.markAt); el >= after {
		got := p.bytes.Load() - p.markBytes
		floor := float64(speed) * el.Seconds()
		if inFlight {
			floor = 1
		}
		p.slowLast = float64(got) < floor
		p.markAt, p.markBytes = now, p.bytes.Load()
	}
	return p.slowLast
}

// rate is the mean delivery since the first byte, in bytes/s (0: unknown).
func (p *pace) rate(now time.Time) float64 {
	fb := p.firstAt.Load()
	if fb == 0 {
		return 0
	}
	el := now.Sub(time.Unix(0, fb)).Seconds()
	if el <= 0 {
		return 0
	}
	return float64(p.bytes.Load()) / el
}

// sourceHealth is what this node measured of one source across downloads.
type sourceHealth struct {
	FirstByte    time.Duration // moving average of the time to first byte
	Bandwidth    float64       // moving average in bytes/s; 0: not measured
	Strikes      int           // failures, stalls and defeats since the last success
	DemotedUntil time.Time
}

// demoted reports whether the source is still serving its demotion at now.
func (h sourceHealth) demoted(now time.Time) bool { return now.Before(h.DemotedUntil) }

// healthBook keeps sourceHealth per source (keyed by sourceKey).
type healthBook struct {
	mu sync.Mutex
	m  map[string]*sourceHealth
}

func newHealthBook() *healthBook { return &healthBook{m: make(map[string]*sourceHealth)} }

func (b *healthBook) get(key string) sourceHealth {
	b.mu.Lock()
	defer b.mu.Unlock()
	if h, ok := b.m[key]; ok {
		return *h
	}
	return sourceHealth{}
}

func (b *healthBook) update(key string, fn func(*sourceHealth)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	h, ok := b.m[key]
	if !ok {
		h = &sourceHealth{}
		b.m[key] = h
	}
	fn(h)
}

// delivered records a transfer that ended well: its first-byte time and,
// when long enough to tell, its bandwidth; the strikes are cleared.
func (b *healthBook) delivered(key string, firstByte time.Duration, bytes int64, bandwidth float64) {
	b.update(key, func(h *sourceHealth) {
		if firstByte > 0 {
			h.FirstByte = ewmaDuration(h.FirstByte, firstByte)
		}
		if bytes >= bandwidthMinBytes && bandwidth > 0 {
			h.Bandwidth = ewma(h.Bandwidth, bandwidth)
		}
		h.Strikes, h.DemotedUntil = 0, time.Time{}
	})
}

// strike demotes a source that failed, stalled or lost a hedge race, for
// demoteBase doubled with each strike since its last success.
func (b *healthBook) strike(key string, now time.Time) {
	b.update(key, func(h *sourceHealth) {
		h.Strikes++
		d := demoteBase << min(h.Strikes-1, 10)
		h.DemotedUntil = now.Add(min(d, demoteMax))
	})
}

func ewma(old, sample float64) float64 {
	if old == 0 {
		return sample
	}
	return old*(1-ewmaWeight) + sample*ewmaWeight
}

func ewmaDuration(old, sample time.Duration) time.Duration {
	return time.Duration(ewma(float64(old), float64(sample)))
}

// meter counts the bytes written through it for a watchdog.
type meter struct {
	w  io.Writer
	wd *watchdog
}

func (m meter) Write(b []byte) (int, error) {
	k, err := m.w.Write(b)
	m.wd.add(int64(k))
	return k, err
}

// watchdog cancels a transfer that gets no byte within the first-byte
// timeout, or fewer than minSpeed bytes/s over a window once started. Its
// checks run on timers (time.AfterFunc), not on a goroutine of its own: a
// small package's transfer is over in a millisecond, and a goroutine
// started and woken to stop per source was two more hand-offs on its path.
type watchdog struct {
	bytes  atomic.Int64
	fired  atomic.Pointer[error] // why it cancelled the transfer
	cancel context.CancelCauseFunc
	ctx    context.Context //nolint:containedctx // the watched transfer's: its end ends the checks

	mu       sync.Mutex // guards what follows; held by each check
	stopped  bool
	first    *time.Timer
	tick     *time.Timer
	firstBy  time.Duration // the first-byte timeout
	window   time.Duration
	minBytes int64
	last     int64 // bytes at the previous window's end once started; -1 before
}

// watch starts a watchdog over a transfer run with the returned context.
func (n *Node) watch(ctx context.Context) (context.Context, *watchdog) {
	ctx, cancel := context.WithCancelCause(ctx)
	window := n.cfg.StallWindow
	wd := &watchdog{cancel: cancel, ctx: ctx, firstBy: n.cfg.MirrorTimeout, window: window, last: -1,
		minBytes: int64(float64(n.cfg.MinSpeed) * window.Seconds())}
	wd.mu.Lock()
	defer wd.mu.Unlock()
	wd.first = time.AfterFunc(wd.firstBy, wd.checkFirst)
	wd.tick = time.AfterFunc(window, wd.checkWindow)
	return ctx, wd
}

// checkFirst fails a transfer that got no byte by the first-byte timeout.
func (wd *watchdog) checkFirst() {
	wd.mu.Lock()
	defer wd.mu.Unlock()
	if wd.stopped || wd.ctx.Err() != nil {
		return
	}
	if wd.bytes.Load() == 0 {
		wd.fireLocked(fmt.Errorf("no data within %s: %w", wd.firstBy, ErrStalled))
	}
}

// checkWindow fails a started transfer that moved fewer than minBytes over
// the last window, and checks again a window later.
func (wd *watchdog) checkWindow() {
	wd.mu.Lock()
	defer wd.mu.Unlock()
	if wd.stopped || wd.ctx.Err() != nil {
		return
	}
	cur := wd.bytes.Load()
	if wd.last >= 0 && cur-wd.last < wd.minBytes {
		wd.fireLocked(fmt.Errorf("%d bytes in %s: %w", cur-wd.last, wd.window, ErrStalled))
		return
	}
	if cur > 0 {
		wd.last = cur
	}
	wd.tick.Reset(wd.window)
}

// fireLocked cancels the transfer with err, once; wd.mu is held.
func (wd *watchdog) fireLocked(err error) {
	wd.stopped = true
	wd.first.Stop()
	wd.tick.Stop()
	wd.fired.Store(&err)
	wd.cancel(err)
}

func (wd *watchdog) add(k int64) { wd.bytes.Add(k) }

// stop ends the watchdog and its context; safe to call more than once.
// No check runs after it returns.
func (wd *watchdog) stop() {
	wd.mu.Lock()
	if !wd.stopped {
		wd.stopped = true
		wd.first.Stop()
		wd.tick.Stop()
	}
	wd.mu.Unlock()
	wd.cancel(nil)
}

// cause replaces err by the watchdog's verdict when it fired.
func (wd *watchdog) cause(err error) error {
	if fired := wd.fired.Load(); fired != nil {
		return fmt.Errorf("%w (%v)", *fired, err)
	}
	return err
}
