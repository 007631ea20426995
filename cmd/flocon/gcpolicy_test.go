package main

import (
	"os"
	"runtime/debug"
	"testing"
)

// TestGCPolicy: the daemon sets its GC target only when GOGC is not set.
// Not parallel: it changes the process's environment and GC target.
func TestGCPolicy(t *testing.T) { //nolint:paralleltest // process-wide GC target
	orig := debug.SetGCPercent(100)
	defer debug.SetGCPercent(orig)
	t.Setenv("GOGC", "80") // restored after the test
	applyGCPolicy()
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("with GOGC set, GC percent = %d, want it left at 100", got)
	}
	os.Unsetenv("GOGC")
	applyGCPolicy()
	if got := debug.SetGCPercent(100); got != daemonGCPercent {
		t.Errorf("without GOGC, GC percent = %d, want %d", got, daemonGCPercent)
	}
}
