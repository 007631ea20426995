package p2p

import (
	"context"
	"time"
)

// Re-provide policy. Records live providerTTL (48 h) and every offered blob
// is re-provided once per reprovideInterval (22 h, ± reprovideJitter so a
// site restarted at once does not re-provide in step): a record outlives
// one missed round. A newly announced blob waits provideBatchDelay so the
// blobs of one pacman transaction go out as one batch per peer.
const (
	providerTTL       = 48 * time.Hour
	reprovideInterval = 22 * time.Hour
	reprovideJitter   = 0.1
	provideBatchDelay = time.Second
	readyCheck        = 2 * time.Second // how often a node with no peers looks again
	recordsGC         = 10 * time.Minute
)

// provideSchedule decides when to re-provide everything and when to send
// the blobs announced since; the work itself is in round and flush.
type provideSchedule struct {
	ready  func() bool               // someone to tell: the routing table has peers
	round  func(ctx context.Context) // re-provide every offered blob
	flush  func(ctx context.Context) // provide the blobs announced since
	kick   <-chan struct{}           // a blob was announced
	jitter func() float64            // in [0,1)
}

// run waits for peers, runs a first round at once, then one every
// reprovideInterval with jitter, and flushes announcements
// provideBatchDelay after the first of each batch, until ctx ends.
func (p provideSchedule) run(ctx context.Context) {
	poll := time.NewTicker(readyCheck)
	defer poll.Stop()
	var next time.Time // zero: the first round, as soon as ready
	var batch <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.kick:
			if batch == nil {
				batch = time.After(provideBatchDelay)
			}
			continue
		case <-batch:
			batch = nil
			if !next.IsZero() && p.ready() { // before the first round, it covers them
				p.flush(ctx)
			}
			continue
		case <-poll.C:
		}
		if now := time.Now(); now.Before(next) || !p.ready() {
			continue
		}
		p.round(ctx)
		next = time.Now().Add(jittered(reprovideInterval, reprovideJitter, p.jitter()))
	}
}

// jittered is d ± share·d, j in [0,1) picking where.
func jittered(d time.Duration, share, j float64) time.Duration {
	return time.Duration(float64(d) * (1 + share*(2*j-1)))
}
