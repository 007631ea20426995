package node

import (
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

// TestWatchdog: the watchdog's timers fail a source that sends nothing by
// the first-byte timeout or too little over a window, never one that keeps
// pace, and never after stop.
func TestWatchdog(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		perSecond int64 // bytes added each second
		stopAt    time.Duration
		wantFired bool
	}{
		{"silent source fails at the first-byte timeout", 0, time.Minute, true},
		{"slow source fails after a window", 100, time.Minute, true},
		{"source at pace never fails", 4096, time.Minute, false},
		{"stopped before the timeout never fails", 0, 5 * time.Second, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				n := &Node{cfg: Config{MirrorTimeout: 10 * time.Second, StallWindow: 10 * time.Second, MinSpeed: 1024}}
				ctx, wd := n.watch(t.Context())
				start := time.Now()
				for time.Since(start) < tt.stopAt && ctx.Err() == nil {
					time.Sleep(time.Second) // fake time: the bubble's clock
					wd.add(tt.perSecond)
				}
				wd.stop()
				synctest.Wait()
				fired := wd.fired.Load() != nil
				if fired != tt.wantFired {
					t.Fatalf("fired = %v after %s, want %v", fired, time.Since(start), tt.wantFired)
				}
				if fired && !errors.Is(wd.cause(errors.New("read")), ErrStalled) {
					t.Errorf("cause = %v, want ErrStalled", wd.cause(errors.New("read")))
				}
				if took := time.Since(start); fired && tt.perSecond == 0 && (took < 10*time.Second || took > 11*time.Second) {
					t.Errorf("a silent source failed after %s, want the 10 s first-byte timeout", took)
				}
				if ctx.Err() == nil {
					t.Error("stop left the context running")
				}
			})
		})
	}
}
