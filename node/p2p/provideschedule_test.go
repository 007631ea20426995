package p2p

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// TestProvideSchedule: nothing is sent while the node has no peers; the
// first round runs as soon as it has; rounds then come every 22 h ± 10 %;
// announcements go out as one batch a second after the first of them.
func TestProvideSchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		var (
			mu      sync.Mutex
			ready   bool
			rounds  []time.Duration
			flushes []time.Duration
		)
		kick := make(chan struct{}, 16)
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		j := 0.0
		sched := provideSchedule{
			ready:  func() bool { mu.Lock(); defer mu.Unlock(); return ready },
			round:  func(context.Context) { mu.Lock(); rounds = append(rounds, time.Since(start)); mu.Unlock() },
			flush:  func(context.Context) { mu.Lock(); flushes = append(flushes, time.Since(start)); mu.Unlock() },
			kick:   kick,
			jitter: func() float64 { j = 0.999 - j; return j }, // alternately late and early
		}
		go sched.run(ctx)

		time.Sleep(time.Minute)
		synctest.Wait()
		if len(rounds) != 0 {
			t.Fatalf("a round ran with no peers: %v", rounds)
		}
		mu.Lock()
		ready = true
		mu.Unlock()
		time.Sleep(readyCheck)
		synctest.Wait()
		if len(rounds) != 1 || rounds[0] > time.Minute+readyCheck {
			t.Fatalf("rounds %v: want the first within %v of having peers", rounds, readyCheck)
		}

		// Three announcements within half a second: one flush, 1 s after the first.
		for range 3 {
			kick <- struct{}{}
			time.Sleep(200 * time.Millisecond)
		}
		kickedAt := time.Since(start) - 600*time.Millisecond
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if len(flushes) != 1 || flushes[0] != kickedAt+provideBatchDelay {
			t.Fatalf("flushes at %v, want one at %v", flushes, kickedAt+provideBatchDelay)
		}

		time.Sleep(100 * time.Hour)
		synctest.Wait()
		mu.Lock()
		defer mu.Unlock()
		if len(rounds) < 4 || len(rounds) > 6 {
			t.Fatalf("%d rounds in 100 h: %v", len(rounds), rounds)
		}
		for i := 1; i < len(rounds); i++ {
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
