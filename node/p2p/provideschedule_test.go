package p2p

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// TestProvideSchedule: nothing is sent while the node has no peers; the
// first round runs as soon as it has; another once the swarm it knows has
// grown by half (not sooner than a minute after); rounds then come every
// 22 h ± 10 %; announcements go out as one batch a second after the first
// of them.
func TestProvideSchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		var (
			mu       sync.Mutex
			known    int
			roundLog []time.Duration
			flushLog []time.Duration
		)
		kick := make(chan struct{}, 16)
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		j := 0.0
		sched := provideSchedule{
			known:  func() int { mu.Lock(); defer mu.Unlock(); return known },
			round:  func(context.Context) { mu.Lock(); roundLog = append(roundLog, time.Since(start)); mu.Unlock() },
			flush:  func(context.Context) { mu.Lock(); flushLog = append(flushLog, time.Since(start)); mu.Unlock() },
			kick:   kick,
			jitter: func() float64 { j = 0.999 - j; return j }, // alternately late and early
		}
		go sched.run(ctx)
		// Rounds and flushes so far, read after synctest.Wait.
		seen := func() (r, f []time.Duration) {
			mu.Lock()
			defer mu.Unlock()
			return append([]time.Duration(nil), roundLog...), append([]time.Duration(nil), flushLog...)
		}
		var rounds, flushes []time.Duration

		time.Sleep(time.Minute)
		synctest.Wait()
		rounds, flushes = seen()
		if len(rounds) != 0 {
			t.Fatalf("a round ran with no peers: %v", rounds)
		}
		setKnown := func(n int) { mu.Lock(); known = n; mu.Unlock() }
		setKnown(2)
		time.Sleep(readyCheck)
		synctest.Wait()
		rounds, flushes = seen()
		if len(rounds) != 1 || rounds[0] > time.Minute+readyCheck {
			t.Fatalf("rounds %v: want the first within %v of having peers", rounds, readyCheck)
		}
		setKnown(3) // grown by half: a round, but not within the minute
		time.Sleep(minRoundGap - 2*readyCheck)
		synctest.Wait()
		rounds, flushes = seen()
		if len(rounds) != 1 {
			t.Fatalf("rounds %v: the swarm grew, but a round came within %v of the last", rounds, minRoundGap)
		}
		time.Sleep(3 * readyCheck)
		synctest.Wait()
		rounds, flushes = seen()
		if len(rounds) != 2 {
			t.Fatalf("rounds %v: the swarm grew by half, want a second round after %v", rounds, minRoundGap)
		}
		setKnown(4) // not by half since the last round: no round before 22 h

		// Three announcements within half a second: one flush, 1 s after the first.
		for range 3 {
			kick <- struct{}{}
			time.Sleep(200 * time.Millisecond)
		}
		kickedAt := time.Since(start) - 600*time.Millisecond
		time.Sleep(5 * time.Second)
		synctest.Wait()
		rounds, flushes = seen()
		if len(flushes) != 1 || flushes[0] != kickedAt+provideBatchDelay {
			t.Fatalf("flushes at %v, want one at %v", flushes, kickedAt+provideBatchDelay)
		}

		time.Sleep(100 * time.Hour)
		synctest.Wait()
		rounds, flushes = seen()
		if len(rounds) < 2+4 || len(rounds) > 2+5 {
			t.Fatalf("%d rounds in 100 h: %v", len(rounds), rounds)
		}
		for i := 2; i < len(rounds); i++ {
			gap := rounds[i] - rounds[i-1]
			lo := time.Duration(float64(reprovideInterval) * (1 - reprovideJitter))
			hi := time.Duration(float64(reprovideInterval)*(1+reprovideJitter)) + readyCheck
			if gap < lo || gap > hi {
				t.Errorf("round %d came %v after the previous, want %v..%v", i, gap, lo, hi)
			}
			if gap > reprovideInterval+readyCheck || gap < reprovideInterval-readyCheck {
				continue // jittered, as wanted
			}
			t.Errorf("round %d came %v after the previous: not jittered", i, gap)
		}
	})
}
