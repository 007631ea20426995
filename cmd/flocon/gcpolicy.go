package main

import (
	"os"
	"runtime/debug"
)

// daemonGCPercent is the daemon's garbage-collector target when GOGC is not
// set. The daemon is a small cache that should stay out of the way of the
// machine it runs on: at 30 the heap grows to 1.3x the live data instead of
// 2x. Measured (scripts/bench.sh's workload, 200 small packages cold then
// warm, a 200 MiB one): anonymous memory 15.8 MiB at 50 against 22.1 MiB
// at the default, with no more CPU; then 50 → 30 took the whole bench's
// peak RSS from 24.6–34.6 MiB to 23.4–25.3 (a burst of small cold packages
// allocates each one's body, 50 KiB here, so the heap goal over a live
// heap of 6–9 MB set the peak), again with no more CPU in rows 1 and 5
// (ARCHITECTURE.md, Memory). 25 cost more CPU in two runs (row 5a
// 0.66–0.77 s against 0.46–0.50 s at 50).
const daemonGCPercent = 30

// applyGCPolicy sets the daemon's GC target unless the operator chose one
// with GOGC.
func applyGCPolicy() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(daemonGCPercent)
	}
}
