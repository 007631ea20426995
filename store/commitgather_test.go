package store

import (
	"testing"
	"testing/synctest"
	"time"
)

// TestGatherWindow: a batch that starts with a body held in memory waits
// commitGather from that commit's arrival, less when the queue fills
// (gatherMax) meanwhile, and not at all for a commit written to a temp
// file. Run on the committer alone, on synctest's clock.
func TestGatherWindow(t *testing.T) {
	t.Parallel()
	queue := func(c *committer, inMem bool, size int64) {
		c.mu.Lock()
		defer c.mu.Unlock()
		req := &commitReq{p: &Pending{inMem: inMem, size: size}, at: time.Now()}
		c.queue = append(c.queue, req)
		c.queuedLocked(req)
	}
	gather := func(c *committer) time.Duration {
		start := time.Now()
		c.mu.Lock()
		c.gatherLocked()
		c.mu.Unlock()
		return time.Since(start)
	}
	for _, tt := range []struct {
		name   string
		inMem  bool
		fillAt time.Duration // a second commit fills the batch then (0: none)
		want   time.Duration
	}{
		{"alone in memory", true, 0, commitGather},
		{"filled meanwhile", true, 5 * time.Millisecond, 5 * time.Millisecond},
		{"temp file", false, 0, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c := &committer{gatherWait: commitGather, gatherMax: gatherBytes}
				queue(c, tt.inMem, 50<<10)
				if tt.fillAt > 0 {
					go func() {
						time.Sleep(tt.fillAt)
						queue(c, true, gatherBytes)
					}()
				}
				if got := gather(c); got != tt.want {
					t.Errorf("gathered for %s, want %s", got, tt.want)
				}
			})
		})
	}
}
