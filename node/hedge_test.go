package node

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/flocon/flocon/verify"
)

// pacedSource is a source whose timing is scripted on the (fake) clock:
// nothing for firstDelay, then chunk bytes every interval; from stallAt on
// it goes silent until its context ends.
type pacedSource struct {
	name       string
	id         peer.ID // "" : a mirror
	data       []byte
	firstDelay time.Duration
	chunk      int
	interval   time.Duration
	stallAt    int64 // 0: never
}

func (s *pacedSource) String() string { return s.name }
func (s *pacedSource) Peer() peer.ID  { return s.id }

func (s *pacedSource) Fetch(ctx context.Context, _ cid.Cid, off int64, w io.Writer) (int64, error) {
	var sent int64
	wait := func(d time.Duration) error {
		select {
		case <-time.After(d):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := wait(s.firstDelay); err != nil {
		return 0, err
	}
	for pos := off; pos < int64(len(s.data)); {
		if s.stallAt > 0 && pos >= s.stallAt {
			<-ctx.Done()
			return sent, ctx.Err()
		}
		end := min(pos+int64(s.chunk), int64(len(s.data)))
		if s.stallAt > 0 {
			end = min(end, s.stallAt)
		}
		k, err := w.Write(s.data[pos:end])
		sent += int64(k)
		pos += int64(k)
		if err != nil {
			return sent, err
		}
		if err := wait(s.interval); err != nil {
			return sent, err
		}
	}
	return sent, nil
}

// gapWriter records the longest time without a byte, as a client
// following the download would see it.
type gapWriter struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	last    time.Time
	longest time.Duration
}

func (g *gapWriter) Write(b []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := time.Now()
	g.longest = max(g.longest, now.Sub(g.last))
	g.last = now
	return g.buf.Write(b)
}

// hedgeNode is a node with the default health policy and no store: the
// transfer is all it runs.
func hedgeNode() *Node {
	return &Node{
		cfg: Config{MirrorTimeout: DefaultMirrorTimeout, MinSpeed: DefaultMinSpeed, StallWindow: DefaultStallWindow,
			HedgeAfter: DefaultHedgeAfter, HedgeSpeed: DefaultHedgeSpeed},
		log:    slog.New(slog.DiscardHandler),
		health: newHealthBook(),
	}
}

func TestHedgeSlowSources(t *testing.T) {
	t.Parallel()
	const size = 2 << 20
	pkg := newTestPkg(t, "hedge-1.0-1-x86_64.pkg.tar.zst", size, testKeyring(t).packager)
	honest := func(d []byte) *pacedSource {
		return &pacedSource{name: "honest", data: d, chunk: 64 << 10, interval: 10 * time.Millisecond}
	}
	tests := []struct {
		name  string
		first func(d []byte) *pacedSource
	}{
		{"mirror stalls before its headers", func(d []byte) *pacedSource {
			return &pacedSource{name: "silent", data: d, firstDelay: time.Hour}
		}},
		{"mirror stalls mid-body", func(d []byte) *pacedSource {
			return &pacedSource{name: "stall", data: d, chunk: 64 << 10, interval: 10 * time.Millisecond, stallAt: size / 2}
		}},
		{"peer trickles 1 byte every 4 s", func(d []byte) *pacedSource {
			return &pacedSource{name: "trickle", id: "peerT", data: d, chunk: 1, interval: 4 * time.Second}
		}},
		{"peer sends 3 KB/s", func(d []byte) *pacedSource {
			return &pacedSource{name: "3KB/s", id: "peerS", data: d, chunk: 300, interval: 100 * time.Millisecond}
		}},
		{"peer says have, then stalls", func(d []byte) *pacedSource {
			return &pacedSource{name: "have-then-stall", id: "peerH", data: d, chunk: 64 << 10, stallAt: 1}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				n := hedgeNode()
				slow, good := tt.first(pkg.data), honest(pkg.data)
				v := digestVerifier(t, pkg)
				out := &gapWriter{last: time.Now()}
				w := &sink{p: out, v: v, size: size}
				tr := newTransfer(n, pkg.cid, pkg.name, v, w, []source{slow, good})
				if _, err := tr.run(t.Context()); err != nil {
					t.Fatalf("transfer: %v", err)
				}
				if !bytes.Equal(out.buf.Bytes(), pkg.data) {
					t.Fatal("the download is not the signed bytes")
				}
				if tr.got[1] == 0 {
					t.Errorf("the honest source delivered nothing (got %v)", tr.got)
				}
				// pacman gives up after 10 s below 1 B/s: the client must
				// see bytes again long before.
				if out.longest > n.cfg.HedgeAfter+hedgeTick {
					t.Errorf("client went %v without a byte; the hedge should start within %v", out.longest, n.cfg.HedgeAfter+hedgeTick)
				}
				if !n.health.get(sourceKey(slow)).demoted(time.Now()) {
					t.Errorf("%s is not demoted after losing to a faster source", slow.name)
				}
				if n.health.get(sourceKey(good)).Strikes != 0 {
					t.Error("the honest source got a strike")
				}
			})
		})
	}
}

// A hedge must not restart from zero: it resumes at the offset the download
// reached, and the bytes it repeats are not written twice.
func TestHedgeResumesAtOffset(t *testing.T) {
	t.Parallel()
	const size, stall = 1 << 20, 300 << 10
	pkg := newTestPkg(t, "resume-1.0-1-x86_64.pkg.tar.zst", size, testKeyring(t).packager)
	synctest.Test(t, func(t *testing.T) {
		n := hedgeNode()
		first := &pacedSource{name: "first", data: pkg.data, chunk: 32 << 10, interval: time.Millisecond, stallAt: stall}
		second := &recordingSource{pacedSource: pacedSource{name: "second", data: pkg.data, chunk: 32 << 10, interval: time.Millisecond}}
		v := digestVerifier(t, pkg)
		out := &gapWriter{last: time.Now()}
		tr := newTransfer(n, pkg.cid, pkg.name, v, &sink{p: out, v: v, size: size}, []source{first, second})
		if _, err := tr.run(t.Context()); err != nil {
			t.Fatalf("transfer: %v", err)
		}
		if !bytes.Equal(out.buf.Bytes(), pkg.data) {
			t.Fatal("the download is not the signed bytes")
		}
		if len(second.offsets) != 1 || second.offsets[0] != stall {
			t.Errorf("second source asked from %v, want [%d]", second.offsets, stall)
		}
		if tr.got[0] != stall || tr.got[1] != size-stall {
			t.Errorf("contributions %v, want [%d %d]", tr.got, stall, size-stall)
		}
	})
}

// A healthy source is never hedged: the mirror after it is not asked.
func TestHedgeLeavesHealthySourceAlone(t *testing.T) {
	t.Parallel()
	const size = 4 << 20
	pkg := newTestPkg(t, "steady-1.0-1-x86_64.pkg.tar.zst", size, testKeyring(t).packager)
	synctest.Test(t, func(t *testing.T) {
		n := hedgeNode()
		// 128 KiB/s: slow, but above the hedge speed, for 32 s.
		steady := &pacedSource{name: "steady", data: pkg.data, chunk: 16 << 10, interval: 125 * time.Millisecond}
		spare := &recordingSource{pacedSource: pacedSource{name: "spare", data: pkg.data, chunk: 64 << 10}}
		v := digestVerifier(t, pkg)
		out := &gapWriter{last: time.Now()}
		tr := newTransfer(n, pkg.cid, pkg.name, v, &sink{p: out, v: v, size: size}, []source{steady, spare})
		if _, err := tr.run(t.Context()); err != nil {
			t.Fatalf("transfer: %v", err)
		}
		if len(spare.offsets) != 0 {
			t.Errorf("spare source asked at %v; a source above the hedge speed must be left alone", spare.offsets)
		}
	})
}

// recordingSource is a pacedSource that records the offsets it is asked for.
type recordingSource struct {
	pacedSource
	mu      sync.Mutex
	offsets []int64
}

func (s *recordingSource) Fetch(ctx context.Context, c cid.Cid, off int64, w io.Writer) (int64, error) {
	s.mu.Lock()
	s.offsets = append(s.offsets, off)
	s.mu.Unlock()
	return s.pacedSource.Fetch(ctx, c, off, w)
}

// A peer that answers the lookup after the download went to the mirror
// takes over from the offset reached: the mirror sends only the start.
func TestHedgeLatePeerTakesOver(t *testing.T) {
	t.Parallel()
	const size = 4 << 20
	pkg := newTestPkg(t, "late-1.0-1-x86_64.pkg.tar.zst", size, testKeyring(t).packager)
	synctest.Test(t, func(t *testing.T) {
		n := hedgeNode()
		// 256 KiB/s: healthy, so only the late answer can make it switch.
		mirror := &pacedSource{name: "mirror", data: pkg.data, chunk: 32 << 10, interval: 125 * time.Millisecond}
		lanPeer := &recordingSource{pacedSource: pacedSource{name: "peer", id: "peerL", data: pkg.data, chunk: 256 << 10, interval: time.Millisecond}}
		v := digestVerifier(t, pkg)
		late := make(chan source)
		go func() {
			time.Sleep(time.Second)
			late <- lanPeer
			close(late)
		}()
		out := &gapWriter{last: time.Now()}
		tr := newTransfer(n, pkg.cid, pkg.name, v, &sink{p: out, v: v, size: size}, []source{mirror})
		tr.late = late
		if _, err := tr.run(t.Context()); err != nil {
			t.Fatalf("transfer: %v", err)
		}
		if !bytes.Equal(out.buf.Bytes(), pkg.data) {
			t.Fatal("the download is not the signed bytes")
		}
		if len(lanPeer.offsets) != 1 || lanPeer.offsets[0] == 0 {
			t.Errorf("late peer asked from %v, want once from the offset reached", lanPeer.offsets)
		}
		if tr.got[0] > size/4 || tr.got[1] < size*3/4 {
			t.Errorf("contributions mirror %d, peer %d: the peer should take over", tr.got[0], tr.got[1])
		}
		if n.health.get(sourceKey(mirror)).Strikes != 0 {
			t.Error("the mirror was demoted for giving way to a peer")
		}
	})
}

// refusingSource fails at once, like a mirror whose port is closed.
type refusingSource struct{ name string }

func (s *refusingSource) String() string { return s.name }
func (s *refusingSource) Peer() peer.ID  { return "" }
func (s *refusingSource) Fetch(context.Context, cid.Cid, int64, io.Writer) (int64, error) {
	return 0, errors.New("connect: connection refused")
}

// When every source known so far fails while the lookup is still out (a
// loaded machine answers after the soft deadline), the download waits for
// the late answers instead of failing, and one that comes completes it.
func TestHedgeWaitsForLateAnswerWhenAllFail(t *testing.T) {
	t.Parallel()
	const size = 1 << 20
	pkg := newTestPkg(t, "waitlate-1.0-1-x86_64.pkg.tar.zst", size, testKeyring(t).packager)
	cases := []struct {
		name string
		srcs func() []source
	}{
		{"the mirror refuses", func() []source { return []source{&refusingSource{name: "dead mirror"}} }},
		{"no source at all", func() []source { return nil }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				n := hedgeNode()
				lanPeer := &pacedSource{name: "peer", id: "peerL", data: pkg.data, chunk: 256 << 10, interval: time.Millisecond}
				v := digestVerifier(t, pkg)
				late := make(chan source)
				go func() {
					time.Sleep(2 * time.Second)
					late <- lanPeer
					close(late)
				}()
				out := &gapWriter{last: time.Now()}
				tr := newTransfer(n, pkg.cid, pkg.name, v, &sink{p: out, v: v, size: size}, tc.srcs())
				tr.late = late
				if _, err := tr.run(t.Context()); err != nil {
					t.Fatalf("transfer: %v", err)
				}
				if !bytes.Equal(out.buf.Bytes(), pkg.data) {
					t.Fatal("the download is not the signed bytes")
				}
			})
		})
	}
	// And when the lookup ends with nobody, the download fails (no hang).
	synctest.Test(t, func(t *testing.T) {
		n := hedgeNode()
		v := digestVerifier(t, pkg)
		late := make(chan source)
		go func() {
			time.Sleep(2 * time.Second)
			close(late)
		}()
		tr := newTransfer(n, pkg.cid, pkg.name, v, &sink{p: &gapWriter{last: time.Now()}, v: v, size: size}, []source{&refusingSource{name: "dead mirror"}})
		tr.late = late
		if _, err := tr.run(t.Context()); err == nil {
			t.Fatal("a transfer with no working source succeeded")
		}
	})
}

// digestVerifier checks pkg's digest and identity, not its signature: the
// fake clock of a synctest bubble starts in 2000, before the test keys.
func digestVerifier(t *testing.T, pkg testPkg) *verify.Verifier {
	t.Helper()
	v, err := verify.NewVerifier(testKeyring(t).keyring, pkg.expect(verify.SigNever, false))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}
