package node

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ipfs/go-cid"
)

// dyingSource sends the blob up to diesAt, then fails the way a dead
// peer's stream does once its liveness deadline passes.
type dyingSource struct {
	pacedSource
	diesAt int64
}

var errTestPeerGone = errors.New("peer went silent (no keepalive)")

func (s *dyingSource) Fetch(ctx context.Context, c cid.Cid, off int64, w io.Writer) (int64, error) {
	p := s.pacedSource
	p.data = p.data[:s.diesAt]
	k, err := p.Fetch(ctx, c, off, w)
	if err != nil {
		return k, err
	}
	time.Sleep(500 * time.Millisecond) // the liveness deadline
	return k, errTestPeerGone
}

// inFlightSource is a LAN peer still downloading the blob itself.
type inFlightSource struct {
	recordingSource
	have int64
}

func (s *inFlightSource) traits() sourceTraits {
	return sourceTraits{kind: sourceLANPeer, inFlight: true, have: s.have}
}

// When the peer a download streams from dies, the sources not tried yet
// are re-made from a fresh lookup: the download follows the peer that now
// holds more bytes (from the offset reached), neither the stale in-flight
// peer of the first list (it would make it wait) nor the mirror.
func TestChurnRelistsAfterDeadPeer(t *testing.T) {
	t.Parallel()
	const size, died = 2 << 20, 768 << 10
	pkg := newTestPkg(t, "churn-1.0-1-x86_64.pkg.tar.zst", size, testKeyring(t).packager)
	synctest.Test(t, func(t *testing.T) {
		n := hedgeNode()
		root := &dyingSource{pacedSource{name: "root", id: "peerR", data: pkg.data, chunk: 64 << 10, interval: 10 * time.Millisecond}, died}
		stale := &inFlightSource{recordingSource{pacedSource: pacedSource{name: "stale", id: "peerS", data: pkg.data, chunk: 64 << 10, interval: 10 * time.Millisecond}}, 64 << 10}
		ahead := &inFlightSource{recordingSource{pacedSource: pacedSource{name: "ahead", id: "peerA", data: pkg.data, chunk: 64 << 10, interval: 10 * time.Millisecond}}, 1 << 20}
		mirror := &recordingSource{pacedSource: pacedSource{name: "mirror", data: pkg.data, chunk: 64 << 10, interval: 10 * time.Millisecond}}
		var lookups atomic.Int32
		n.peers = func(context.Context, cid.Cid) ([]source, <-chan source) {
			lookups.Add(1)
			return []source{ahead}, nil // the root is dead and does not answer
		}
		v := digestVerifier(t, pkg)
		out := &gapWriter{last: time.Now()}
		tr := newTransfer(n, pkg.cid, pkg.name, v, &sink{p: out, v: v, size: size}, []source{root, stale, mirror})
		if _, err := tr.run(t.Context()); err != nil {
			t.Fatalf("transfer: %v", err)
		}
		if !bytes.Equal(out.buf.Bytes(), pkg.data) {
			t.Fatal("the download is not the signed bytes")
		}
		if lookups.Load() != 1 {
			t.Errorf("%d fresh lookups, want 1 (on the switch)", lookups.Load())
		}
		if len(ahead.offsets) != 1 || ahead.offsets[0] != died {
			t.Errorf("the peer ahead was asked from %v, want [%d]", ahead.offsets, died)
		}
		if len(stale.offsets) != 0 || len(mirror.offsets) != 0 {
			t.Errorf("stale peer asked from %v, mirror from %v; want neither", stale.offsets, mirror.offsets)
		}
	})
}

// With nobody to follow after the death (this node holds the most bytes),
// the download resumes from the mirror at its offset: the bytes the dead
// peer had brought are not fetched again.
func TestChurnResumesFromMirrorWhenFirst(t *testing.T) {
	t.Parallel()
	const size, died = 2 << 20, 768 << 10
	pkg := newTestPkg(t, "churnfirst-1.0-1-x86_64.pkg.tar.zst", size, testKeyring(t).packager)
	synctest.Test(t, func(t *testing.T) {
		n := hedgeNode()
		root := &dyingSource{pacedSource{name: "root", id: "peerR", data: pkg.data, chunk: 64 << 10, interval: 10 * time.Millisecond}, died}
		mirror := &recordingSource{pacedSource: pacedSource{name: "mirror", data: pkg.data, chunk: 64 << 10, interval: 10 * time.Millisecond}}
		n.peers = func(context.Context, cid.Cid) ([]source, <-chan source) { return nil, nil }
		v := digestVerifier(t, pkg)
		out := &gapWriter{last: time.Now()}
		tr := newTransfer(n, pkg.cid, pkg.name, v, &sink{p: out, v: v, size: size}, []source{root, mirror})
		if _, err := tr.run(t.Context()); err != nil {
			t.Fatalf("transfer: %v", err)
		}
		if !bytes.Equal(out.buf.Bytes(), pkg.data) {
			t.Fatal("the download is not the signed bytes")
		}
		if len(mirror.offsets) != 1 || mirror.offsets[0] != died {
			t.Errorf("mirror asked from %v, want [%d]", mirror.offsets, died)
		}
	})
}
