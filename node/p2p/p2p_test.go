package p2p

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/flocon/flocon/store/storetest"
)

// TestBlobProtocol: B finds A's blob with a have query and fetches it, whole
// or from an offset; the bytes are identical. The signature comes the same
// way.
func TestBlobProtocol(t *testing.T) {
	t.Parallel()
	data := storetest.RandomBytes(1, 3<<20+12345)
	stA := newMemStore(t)
	c := stA.addBlob(t, data)
	stA.sigs[c] = []byte("detached signature bytes")
	a := startNode(t, stA)
	b := startNode(t, newMemStore(t), withBootstrap(a))
	waitConnected(t, b.s.h, a.id())

	tests := []struct {
		name string
		off  int64
	}{
		{"whole", 0},
		{"from offset", 1<<20 + 7},
		{"last byte", int64(len(data) - 1)},
		{"at end", int64(len(data))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srcs := b.peerSources(t.Context(), c)
			if len(srcs) != 1 || srcs[0].Peer() != a.id() {
				t.Fatalf("peerSources = %v, want [A]", srcs)
			}
			var got bytes.Buffer
			n, err := srcs[0].Fetch(t.Context(), c, tt.off, &got)
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			if n != int64(len(data))-tt.off || !bytes.Equal(got.Bytes(), data[tt.off:]) {
				t.Fatalf("got %d bytes, want the %d from offset %d", n, int64(len(data))-tt.off, tt.off)
			}
		})
	}
	t.Run("signature", func(t *testing.T) {
		t.Parallel()
		sig, from, err := b.peerSignature(t.Context(), c)
		if err != nil || from != a.id() || string(sig) != "detached signature bytes" {
			t.Fatalf("peerSignature = %q from %s, %v", sig, from, err)
		}
	})
	t.Run("unknown cid", func(t *testing.T) {
		t.Parallel()
		other := cidOf(t, []byte("nobody has this"))
		if srcs := b.peerSources(t.Context(), other); len(srcs) != 0 {
			t.Fatalf("peerSources(unknown) = %v, want none", srcs)
		}
		// Asked directly anyway, A says "not found": a plain failure, no ban.
		src := &peerSource{s: b.s, p: a.id()}
		if _, err := src.Fetch(t.Context(), other, 0, io.Discard); !errors.Is(err, ErrPeerNotFound) {
			t.Fatalf("Fetch(unknown) = %v, want ErrPeerNotFound", err)
		}
	})
	t.Cleanup(func() { // after the parallel subtests
		if b.s.bans.banned(a.id()) {
			t.Error("an honest peer was banned")
		}
		if st := b.s.peers.get(a.id()); st.BytesRecv == 0 {
			t.Errorf("peer table of A on B = %+v, want bytes received", st)
		}
		if st := a.s.peers.get(b.id()); st.BytesSent == 0 || st.BlobsServed == 0 {
			t.Errorf("peer table of B on A = %+v, want bytes sent and blobs served", st)
		}
	})
}

// TestResumeOnAnotherPeer: A is cut mid-stream; the fetch resumes at the
// offset reached on C, and the joined bytes are the blob. Being cut is not
// misbehaviour: A is not banned.
func TestResumeOnAnotherPeer(t *testing.T) {
	t.Parallel()
	data := storetest.RandomBytes(2, 8<<20)
	stA, stC := newMemStore(t), newMemStore(t)
	c := stA.addBlob(t, data)
	stC.addBlob(t, data)
	a := startNode(t, stA)
	cNode := startNode(t, stC)
	b := startNode(t, newMemStore(t), withBootstrap(a, cNode))
	waitConnected(t, b.s.h, a.id())
	waitConnected(t, b.s.h, cNode.id())

	srcs := b.peerSources(t.Context(), c)
	if len(srcs) != 2 {
		t.Fatalf("peerSources = %d sources, want 2", len(srcs))
	}
	first := &peerSource{s: b.s, p: a.id()}
	w := &cutWriter{at: 1 << 20, cut: func() { _ = a.s.h.Close() }} // A dies mid-stream
	n, err := first.Fetch(t.Context(), c, 0, w)
	if err == nil || n == 0 || n >= int64(len(data)) {
		t.Fatalf("cut fetch = %d bytes, %v; want a partial transfer and an error", n, err)
	}
	if errors.Is(err, ErrMisbehaviour) || b.s.bans.banned(a.id()) {
		t.Fatalf("a peer that went away was treated as hostile: %v", err)
	}
	second := &peerSource{s: b.s, p: cNode.id()}
	rest, err := second.Fetch(t.Context(), c, n, &w.buf)
	if err != nil {
		t.Fatalf("resume on C: %v", err)
	}
	if n+rest != int64(len(data)) || !bytes.Equal(w.buf.Bytes(), data) {
		t.Fatalf("resumed blob differs: %d+%d bytes", n, rest)
	}
}

// TestInflightStreaming: A is still downloading; B streams what A has, waits
// for more, and gets the rest once A commits ("LAN-wide single flight").
func TestInflightStreaming(t *testing.T) {
	t.Parallel()
	data := storetest.RandomBytes(3, 2<<20)
	stA := newMemStore(t)
	c := cidOf(t, data)
	g := stA.begin(c, int64(len(data)))
	half := len(data) / 2
	g.write(data[:half])
	a := startNode(t, stA)
	b := startNode(t, newMemStore(t), withBootstrap(a))
	waitConnected(t, b.s.h, a.id())

	srcs := b.peerSources(t.Context(), c)
	if len(srcs) != 1 {
		t.Fatalf("peerSources = %v, want A (in flight)", srcs)
	}
	if pr := srcs[0].pr; !pr.InFlight || pr.Have != int64(half) || pr.Size != int64(len(data)) || pr.Started.IsZero() {
		t.Fatalf("provider = %+v, want in flight %d/%d with its start", pr, half, len(data))
	}
	w := &notifyWriter{wrote: make(chan struct{}, 1)}
	done := make(chan error, 1)
	go func() {
		_, err := srcs[0].Fetch(t.Context(), c, 0, w)
		done <- err
	}()
	for w.len() < half {
		select {
		case <-w.wrote:
		case err := <-done:
			t.Fatalf("fetch ended before A finished: %v", err)
		}
	}
	if w.len() != half {
		t.Fatalf("B got %d bytes while A had %d", w.len(), half)
	}
	g.write(data[half:])
	g.finish(nil)
	if err := <-done; err != nil {
		t.Fatalf("in-flight fetch: %v", err)
	}
	if !bytes.Equal(w.bytes(), data) {
		t.Fatal("in-flight bytes differ")
	}
}

// TestAbortedInflightIsPlainFailure: A's download fails; B's stream is reset
// (not closed short), so B moves on without banning A.
func TestAbortedInflightIsPlainFailure(t *testing.T) {
	t.Parallel()
	data := storetest.RandomBytes(4, 1<<20)
	stA := newMemStore(t)
	c := cidOf(t, data)
	g := stA.begin(c, int64(len(data)))
	g.write(data[:1000])
	a := startNode(t, stA)
	b := startNode(t, newMemStore(t), withBootstrap(a))
	waitConnected(t, b.s.h, a.id())
	w := &notifyWriter{wrote: make(chan struct{}, 1)}
	done := make(chan error, 1)
	go func() {
		_, err := (&peerSource{s: b.s, p: a.id()}).Fetch(t.Context(), c, 0, w)
		done <- err
	}()
	<-w.wrote
	g.finish(errors.New("mirror went away"))
	err := <-done
	if err == nil || errors.Is(err, ErrMisbehaviour) || b.s.bans.banned(a.id()) {
		t.Fatalf("aborted in-flight fetch = %v, banned %v; want a plain failure", err, b.s.bans.banned(a.id()))
	}
}

// TestPeerStreamLimit: a peer gets at most BlobStreamsPerPeer concurrent
// blob streams; one more is answered "busy" (not a ban), and a freed slot
// serves again.
func TestPeerStreamLimit(t *testing.T) {
	t.Parallel()
	const limit = 2
	data := storetest.RandomBytes(5, 1<<20)
	stA := newMemStore(t)
	c := cidOf(t, data)
	g := stA.begin(c, int64(len(data)))
	g.write(data[:100]) // never finishes while the slots are held
	a := startNode(t, stA, func(cfg *Config) { cfg.BlobStreamsPerPeer = limit })
	b := startNode(t, newMemStore(t), withBootstrap(a))
	waitConnected(t, b.s.h, a.id())
	src := &peerSource{s: b.s, p: a.id()}

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, limit)
	for range limit {
		w := &notifyWriter{wrote: make(chan struct{}, 1)}
		go func() {
			_, err := src.Fetch(ctx, c, 0, w)
			done <- err
		}()
		<-w.wrote // this stream holds a slot
	}
	if _, err := src.Fetch(t.Context(), c, 0, io.Discard); !errors.Is(err, ErrPeerBusy) {
		t.Fatalf("stream over the limit: %v, want ErrPeerBusy", err)
	}
	cancel()
	for range limit {
		<-done
	}
	if b.s.bans.banned(a.id()) {
		t.Fatal("busy peer was banned")
	}
	// The freed slots serve again (poll: A sees the resets asynchronously).
	g.write(data[100:])
	g.finish(nil)
	deadline := time.Now().Add(10 * time.Second)
	for {
		var got bytes.Buffer
		_, err := src.Fetch(t.Context(), c, 0, &got)
		if err == nil {
			if !bytes.Equal(got.Bytes(), data) {
				t.Fatal("bytes differ after the limit")
			}
			break
		}
		if !errors.Is(err, ErrPeerBusy) || time.Now().After(deadline) {
			t.Fatalf("fetch after freeing slots: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestCorruptSenderResets: A's blob rotted on disk. A hashes while sending,
// resets with codeCorrupt before the last byte, drops the blob and stops
// offering it; B sees a plain failure (no ban) and never the whole file.
func TestCorruptSenderResets(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		off  int64
	}{{"from start", 0}, {"from offset", 1 << 20}} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			data := storetest.RandomBytes(6, 2<<20)
			stA := newMemStore(t)
			c := stA.addBlob(t, data)
			bad := bytes.Clone(data)
			bad[len(bad)/3] ^= 0xff
			if err := writeFileAtomic(stA.path(c), bad, 0o444); err != nil {
				t.Fatal(err)
			}
			a := startNode(t, stA)
			b := startNode(t, newMemStore(t), withBootstrap(a))
			waitConnected(t, b.s.h, a.id())
			var got bytes.Buffer
			n, err := (&peerSource{s: b.s, p: a.id()}).Fetch(t.Context(), c, tt.off, &got)
			if !errors.Is(err, ErrPeerCorrupt) {
				t.Fatalf("Fetch = %v, want ErrPeerCorrupt", err)
			}
			if tt.off+n >= int64(len(data)) {
				t.Fatalf("B got %d bytes: the whole corrupt file", tt.off+n)
			}
			if b.s.bans.banned(a.id()) {
				t.Fatal("an honest peer that caught its own corruption was banned")
			}
			waitFor(t, "A to drop its corrupt blob", func() bool { return !stA.Has(c) })
			if srcs := b.peerSources(t.Context(), c); len(srcs) != 0 {
				t.Fatal("A still offers the corrupt blob")
			}
		})
	}
}

// TestLookupBounded: a peer that never answers the have query does not hold
// the lookup past the have timeout: no source, and the caller moves on.
func TestLookupBounded(t *testing.T) {
	t.Parallel()
	silent := newRawHost(t)
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) }) // before the host closes
	silent.SetStreamHandler(haveProto, func(s network.Stream) {
		<-stop
		_ = s.Reset()
	})
	b := startNode(t, newMemStore(t), func(c *Config) { c.HaveTimeout = 100 * time.Millisecond })
	if err := silent.Connect(t.Context(), b.addrInfo()); err != nil {
		t.Fatal(err)
	}
	waitConnected(t, b.s.h, silent.ID())
	c := cidOf(t, []byte("x"))
	done := make(chan int, 1)
	go func() { done <- len(b.peerSources(t.Context(), c)) }()
	select {
	case n := <-done:
		if n != 0 {
			t.Fatalf("silent peer gave %d sources", n)
		}
	case <-time.After(30 * time.Second): // a hang, not a timing measurement
		t.Fatal("lookup did not return")
	}
}

// TestWireRoundTrip checks the frames parse back and garbage is refused.
func TestWireRoundTrip(t *testing.T) {
	t.Parallel()
	c := cidOf(t, []byte("wire"))
	have := header{code: haveInflight, size: 99, available: 12, started: time.UnixMicro(1700000000123456)}
	var hb bytes.Buffer
	if err := writeHave(&hb, have); err != nil {
		t.Fatal(err)
	}
	if got, err := readHave(bufio.NewReader(&hb)); err != nil || !got.started.Equal(have.started) || got.size != have.size {
		t.Fatalf("have round trip = %+v, %v; want %+v", got, err, have)
	}
	req := blobRequest{kind: kindSig, c: c, off: 12345}
	got, err := readBlobRequest(bufio.NewReader(bytes.NewReader(req.encode())))
	if err != nil || got != req {
		t.Fatalf("request round trip = %+v, %v", got, err)
	}
	tests := []struct {
		name    string
		frame   []byte
		wantErr bool
	}{
		{"ok header", func() []byte {
			var b bytes.Buffer
			_ = writeHeader(&b, header{code: statusOK, size: 10, available: 4})
			return b.Bytes()
		}(), false},
		{"unknown size", []byte{statusOK, 0, 0}, false},
		{"available past size", []byte{statusOK, 5, 9}, true},
		{"empty", nil, true},
		{"cut varint", []byte{statusOK, 0x80}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := readHeader(bufio.NewReader(bytes.NewReader(tt.frame)))
			if (err != nil) != tt.wantErr || (err != nil && !errors.Is(err, errMalformed)) {
				t.Fatalf("readHeader(%x) = %v, wantErr %v (malformed)", tt.frame, err, tt.wantErr)
			}
		})
	}
}

// TestFollowOrder: of two in-flight nodes exactly one follows the other,
// whatever their bytes and start times, so concurrent downloads never form
// a cycle; the one holding more bytes leads (after its source died, it is
// the one that resumes from the mirror), then the earlier start.
func TestFollowOrder(t *testing.T) {
	t.Parallel()
	t0 := time.UnixMicro(1700000000000000)
	a, b := peer.ID("peer-a"), peer.ID("peer-b")
	tests := []struct {
		name           string
		aHave, bHave   int64
		aStart, bStart time.Time
		aFirst         bool
	}{
		{"a earlier", 0, 0, t0, t0.Add(time.Millisecond), true},
		{"b earlier", 0, 0, t0.Add(time.Millisecond), t0, false},
		{"same microsecond, lower id first", 5, 5, t0, t0.Add(400 * time.Nanosecond), true},
		{"b holds more, a earlier", 10 << 20, 12 << 20, t0, t0.Add(time.Second), false},
		{"a holds more, b earlier", 1, 0, t0.Add(time.Second), t0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ka := followKey{have: tt.aHave, start: tt.aStart, id: a}
			kb := followKey{have: tt.bHave, start: tt.bStart, id: b}
			ab, ba := ka.before(kb), kb.before(ka) // b may follow a, a may follow b
			if ab == ba || ab != tt.aFirst {
				t.Fatalf("a before b = %v, b before a = %v, want exactly a first = %v", ab, ba, tt.aFirst)
			}
		})
	}
}
