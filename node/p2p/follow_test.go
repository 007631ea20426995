package p2p

import (
	"context"
	"testing"
	"time"

	"github.com/flocon/flocon/store/storetest"
)

// TestNoFollowingOwnFollower: B streams an in-flight blob from A and has
// caught up (equal bytes, and B says it started first). A, looking again
// for a source (its own died), must not pick B: B waits on A. Once B's
// stream ends, B is a source for A again.
func TestNoFollowingOwnFollower(t *testing.T) {
	t.Parallel()
	data := storetest.RandomBytes(6, 1<<20)
	c := cidOf(t, data)
	stA, stB := newMemStore(t), newMemStore(t)
	gA := stA.begin(c, int64(len(data)))
	gA.write(data[:4096])
	gB := stB.begin(c, int64(len(data)))
	a := startNode(t, stA)
	b := startNode(t, stB, withBootstrap(a))
	waitConnected(t, b.s.h, a.id())
	a.s.inflight.start(c, time.Now())
	b.s.inflight.start(c, time.Now().Add(-time.Hour)) // B comes first by start

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	w := &notifyWriter{wrote: make(chan struct{}, 1)}
	done := make(chan error, 1)
	go func() {
		_, err := (&peerSource{s: b.s, p: a.id()}).Fetch(ctx, c, 0, growWriter{gB, w})
		done <- err
	}()
	for w.len() < 4096 {
		<-w.wrote
	}
	if srcs := a.peerSources(t.Context(), c); len(srcs) != 0 {
		t.Fatalf("A's sources while B follows A: %v, want none", srcs)
	}
	cancel()
	<-done
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) { // A sees the stream end
		if srcs := a.peerSources(t.Context(), c); len(srcs) == 1 && srcs[0].p == b.id() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("B, no longer following A, never became A's source")
		}
	}
}

// growWriter writes what a fetch brings into a node's own in-flight copy.
type growWriter struct {
	g *memGrowing
	w *notifyWriter
}

func (gw growWriter) Write(p []byte) (int, error) {
	gw.g.write(p)
	return gw.w.Write(p)
}
