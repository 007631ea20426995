package node

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/flocon/flocon/store"
	"github.com/flocon/flocon/verify"
)

// stopBound is how long a node's Run may take to return once its context
// ends: a daemon's shutdown (systemctl stop, the e2e harness) waits 15 s.
// Generous: the machine running the tests is shared and loaded.
const stopBound = 10 * time.Second

// startNode runs a node over a real store; stop cancels its Run and fails
// the test when Run has not returned within stopBound.
func startNode(t *testing.T, mirrors []string, opts ...func(*Config)) (n *Node, stop func(who string)) {
	t.Helper()
	st, err := store.Open(store.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	cfg := Config{Store: st, Keyring: testKeyring(t).keyring, Mirrors: Mirrors{Default: mirrors}}
	fastTimeouts(&cfg)
	for _, o := range opts {
		o(&cfg)
	}
	n, err = New(cfg)
	if err != nil {
		t.Fatalf("new node: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	stopped := false
	stop = func(who string) {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("%s: run: %v", who, err)
			}
		case <-time.After(stopBound):
			t.Errorf("%s: Run did not return within %s of its context ending (shutdown blocked)", who, stopBound)
		}
		if err := st.Close(); err != nil && !errors.Is(err, store.ErrClosed) {
			t.Errorf("%s: store close: %v", who, err)
		}
	}
	t.Cleanup(func() { stop("cleanup") })
	return n, stop
}

// TestStopWhileFollowing: B streams a package from A while A's own mirror
// stalls (B hears keepalives and waits). Stopping B, then A, returns at
// once from each: the follow, the serving side and the downloads all end
// with the node, none waits for the stalled mirror.
func TestStopWhileFollowing(t *testing.T) {
	t.Parallel()
	for _, first := range []string{"follower", "source"} {
		t.Run(first+" first", func(t *testing.T) {
			t.Parallel()
			keys := testKeyring(t)
			pkg := newTestPkg(t, "stall-1.0-1-x86_64.pkg.tar.zst", 1<<20, keys.packager)
			mirror := newFakeMirror(t, mirrorMode{stallAfter: 64 << 10}, map[string][]byte{pkg.name: pkg.data})
			noHedge := func(c *Config) { c.HedgeAfter = time.Hour } // B keeps waiting on A
			a, stopA := startNode(t, []string{mirror.template()}, withP2P(t), noTimeouts, noHedge)
			sa := waitP2P(t, a)
			b, stopB := startNode(t, []string{mirror.template()}, withP2P(t, a), noTimeouts, noHedge)
			sb := waitP2P(t, b)
			waitConnected(t, sb, sa.ID())
			pa, err := a.Fetch(t.Context(), "core", "x86_64", pkg.expect(verify.SigRequired, true))
			if err != nil || pa == nil {
				t.Fatalf("A fetch: %v", err)
			}
			waitFor(t, "A's first bytes", func() bool { return pa.Written() > 0 })
			pb, err := b.Fetch(t.Context(), "core", "x86_64", pkg.expect(verify.SigRequired, true))
			if err != nil || pb == nil {
				t.Fatalf("B fetch: %v", err)
			}
			waitFor(t, "B's bytes from A", func() bool { return pb.Written() > 0 })
			if n := len(mirror.requests(pkg.name)); n != 1 {
				t.Fatalf("mirror got %d requests for the package, want 1 (B follows A)", n)
			}
			if first == "follower" {
				stopB("B (follower)")
				stopA("A (source)")
			} else {
				stopA("A (source)")
				stopB("B (follower)")
			}
			for who, p := range map[string]*store.Pending{"A": pa, "B": pb} {
				select {
				case <-p.Done():
				default:
					t.Errorf("%s's download still in flight after its node stopped", who)
				}
			}
		})
	}
}
