package p2p

import (
	"context"
	"time"
)

// Re-provide policy. Records live providerTTL (48 h) and every offered blob
// is re-provided once per reprovideInterval (22 h, ± reprovideJitter so a
// site restarted at once does not re-provide in step): a record outlives
// one missed round. A newly announced blob waits provideBatchDelay so the
// blobs of one pacman transaction go out as one batch per peer. While the
// swarm a node knows keeps growing (start-up, a site joining), the peers
// closest to its keys change: a round also comes when the routing table
// has grown by half since the last one, at most once per minRoundGap.
const (
	providerTTL       = 48 * time.Hour
	reprovideInterval = 22 * time.Hour
	reprovideJitter   = 0.1
	provideBatchDelay = time.Second
	readyCheck        = 2 * time.Second // how often the routing table is looked at
	swarmGrowth       = 1.5
	minRoundGap       = time.Minute
	recordsGC         = 10 * time.Minute
)

// provideSchedule decides when to re-provide everything and when to send
// the blobs announced since; the work itself is in round and flush.
type provideSchedule struct {
	known  func() int                // peers in the routing table
	round  func(ctx context.Context) // re-provide every offered blob
	flush  func(ctx context.Context) // provide the blobs announced since
	kick   <-chan struct{}           // a blob was announced
	jitter func() float64            // in [0,1)
}

// run waits for peers, runs a first round at once, then one every
// reprovideInterval with jitter (or sooner when the swarm grew), and
// flushes announcements provideBatchDelay after the first of each batch,
// until ctx ends.
func (p provideSchedule) run(ctx context.Context) {
	poll := time.NewTicker(readyCheck)
	defer poll.Stop()
	var (
		next, last time.Time // zero: the first round, as soon as ready
		lastKnown  int
		batch      <-chan time.Time
	)
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
			if !next.IsZero() && p.known() > 0 { // before the first round, it covers them
				p.flush(ctx)
			}
			continue
		case <-poll.C:
		}
		now, known := time.Now(), p.known()
		grown := float64(known) >= swarmGrowth*float64(lastKnown) && now.Sub(last) >= minRoundGap
		if known == 0 || (now.Before(next) && !grown) {
			continue
		}
		p.round(ctx)
		last, lastKnown = time.Now(), known
		next = last.Add(jittered(reprovideInterval, reprovideJitter, p.jitter()))
	}
}

// jittered is d ± share·d, j in [0,1) picking where.
func jittered(d time.Duration, share, j float64) time.Duration {
	return time.Duration(float64(d) * (1 + share*(2*j-1)))
}
