package node

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/flocon/flocon/node/p2p"
	"github.com/flocon/flocon/store"
	"github.com/flocon/flocon/store/storetest"
	"github.com/flocon/flocon/verify"
)

// These tests run the whole node (store, fetch loop, verifier) with the p2p
// side on 127.0.0.1.

// withP2P turns the p2p side on, loopback only, bootstrapping from boot.
func withP2P(t *testing.T, boot ...*Node) func(*Config) {
	return func(c *Config) {
		c.P2P, c.MDNS, c.DataDir = true, false, t.TempDir()
		c.ListenAddrs = []string{"/ip4/127.0.0.1/tcp/0"}
		c.HaveTimeout = 2 * time.Second
		c.SingleSite = true // loopback peers found by bootstrap: one LAN
		// These tests are about peers, not stalls: a 200 ms stall window
		// fails them on a loaded 2-core machine (race detector).
		c.StallWindow = max(c.StallWindow, 2*time.Second)
		for _, b := range boot {
			h := b.side().host
			for _, a := range h.Addrs() {
				c.Bootstrap = append(c.Bootstrap, fmt.Sprintf("%s/p2p/%s", a, h.ID()))
			}
		}
	}
}

// waitP2P waits until n's host is up.
func waitP2P(t *testing.T, n *Node) *p2p.Host {
	t.Helper()
	waitFor(t, "the p2p host", func() bool { return n.side() != nil })
	return n.side().host
}

// waitConnected waits until a has a connection to b.
func waitConnected(t *testing.T, a *p2p.Host, b peer.ID) {
	t.Helper()
	waitFor(t, "a connection", func() bool { return a.IsConnected(b) })
}

// hostileHost is a raw libp2p peer that claims to have every CID (have
// answer "complete", written by hand in the wire format of
// node/p2p/protocol.go) and answers every blob request with a valid header
// and then body.
func hostileHost(t *testing.T, body []byte) host.Host {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay(), libp2p.DisableMetrics())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	size := uint64(len(body))
	header := binary.AppendUvarint(binary.AppendUvarint([]byte{0}, size+1), size) // status OK, size+1, available
	h.SetStreamHandler("/flocon/have/1.0.0", func(s network.Stream) {
		_, _ = io.Copy(io.Discard, s)
		ans := binary.AppendUvarint(binary.AppendUvarint([]byte{1}, size+1), size) // complete
		_, _ = s.Write(binary.AppendUvarint(ans, 0))
		_ = s.Close()
	})
	h.SetStreamHandler("/flocon/blob/1.0.0", func(s network.Stream) {
		_, _ = io.Copy(io.Discard, s)
		_, _ = s.Write(header)
		_, _ = s.Write(body)
		_ = s.Close()
	})
	return h
}

// assertCannotConnect: the banned peer's connections are gone and the node
// does not dial it.
func assertCannotConnect(t *testing.T, h *p2p.Host, hostile host.Host) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	_ = hostile.Connect(ctx, peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()})
	if s, err := hostile.NewStream(network.WithNoDial(ctx, "test"), h.ID(), "/flocon/have/1.0.0"); err == nil {
		_ = s.CloseWrite()
		if b, _ := io.ReadAll(s); len(b) > 0 {
			t.Fatal("banned peer still gets answers")
		}
		_ = s.Reset()
	}
	if h.IsConnected(hostile.ID()) {
		t.Fatal("banned peer still connected")
	}
}

// TestFetchFromPeer: A downloads from the mirror; the mirror dies; B gets
// the same package from A through its own fetch loop, byte-identical and
// verified into its store.
func TestFetchFromPeer(t *testing.T) {
	t.Parallel()
	keys := testKeyring(t)
	pkg := newTestPkg(t, "hello-1.0-1-x86_64.pkg.tar.zst", 3<<20, keys.packager)
	mirror := newFakeMirror(t, mirrorMode{}, map[string][]byte{pkg.name: pkg.data})
	a, _ := newTestNode(t, []string{mirror.template()}, withP2P(t))
	sa := waitP2P(t, a)
	if got, err := fetchAndRead(t, a, pkg.expect(verify.SigRequired, true)); err != nil || !bytes.Equal(got, pkg.data) {
		t.Fatalf("A from the mirror: %v", err)
	}
	b, stB := newTestNode(t, []string{deadMirror(t)}, withP2P(t, a))
	sb := waitP2P(t, b)
	waitConnected(t, sb, sa.ID())
	got, err := fetchAndRead(t, b, pkg.expect(verify.SigRequired, true))
	if err != nil || !bytes.Equal(got, pkg.data) {
		t.Fatalf("B from A: %v", err)
	}
	assertStored(t, stB, pkg, pkg.sig)
	if n := len(mirror.requests(pkg.name)); n != 1 {
		t.Fatalf("mirror served the package %d times, want 1", n)
	}
}

// TestLANSingleFlight: while A is still downloading from the mirror, B
// streams from A instead of going to the mirror: one upstream download.
func TestLANSingleFlight(t *testing.T) {
	t.Parallel()
	keys := testKeyring(t)
	pkg := newTestPkg(t, "big-1.0-1-x86_64.pkg.tar.zst", 4<<20, keys.packager)
	mirror := newFakeMirror(t, mirrorMode{}, map[string][]byte{pkg.name: pkg.data})
	mirror.gate = make(chan struct{})
	a, _ := newTestNode(t, []string{mirror.template()}, withP2P(t), noTimeouts)
	sa := waitP2P(t, a)
	b, stB := newTestNode(t, []string{mirror.template()}, withP2P(t, a), noTimeouts)
	sb := waitP2P(t, b)
	waitConnected(t, sb, sa.ID())

	pa, err := a.Fetch(t.Context(), "core", "x86_64", pkg.expect(verify.SigRequired, true))
	if err != nil || pa == nil {
		t.Fatalf("A fetch: %v", err)
	}
	pb, err := b.Fetch(t.Context(), "core", "x86_64", pkg.expect(verify.SigRequired, true))
	if err != nil || pb == nil {
		t.Fatalf("B fetch: %v", err)
	}
	waitFor(t, "A's request to the mirror", func() bool { return len(mirror.requests(pkg.name)) > 0 })
	close(mirror.gate)
	for _, p := range []*store.Pending{pa, pb} {
		if got, err := readPending(t, p); err != nil || !bytes.Equal(got, pkg.data) {
			t.Fatalf("download: %v", err)
		}
	}
	assertStored(t, stB, pkg, pkg.sig)
	if n := len(mirror.requests(pkg.name)); n != 1 {
		t.Fatalf("mirror served the package %d times, want 1 (B must stream from A)", n)
	}
}

// TestFetchBansBadPeer: a peer that sends bytes that do not match the CID
// (garbage, or another validly signed package) is banned with the two
// hashes as evidence; the fetch still completes from the mirror; the ban is
// in the store and a new node on the same store enforces it.
func TestFetchBansBadPeer(t *testing.T) {
	t.Parallel()
	keys := testKeyring(t)
	const size = 1 << 20
	pkg := newTestPkg(t, "good-1.0-1-x86_64.pkg.tar.zst", size, keys.packager)
	for _, tt := range []struct {
		name string
		bad  []byte
	}{
		{"wrong bytes", storetest.RandomBytes(11, size)},
		{"validly signed other package", newTestPkg(t, "good-0.1-1-x86_64.pkg.tar.zst", size, keys.packager).data},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			mirror := newFakeMirror(t, mirrorMode{}, map[string][]byte{pkg.name: pkg.data})
			hostile := hostileHost(t, tt.bad)
			dir := t.TempDir()
			st, err := store.Open(store.Config{Dir: dir})
			if err != nil {
				t.Fatal(err)
			}
			cfg := Config{Store: st, Keyring: keys.keyring, Mirrors: Mirrors{Default: []string{mirror.template()}}}
			fastTimeouts(&cfg)
			withP2P(t)(&cfg)
			n, stop := runNode(t, cfg)
			s := waitP2P(t, n)
			if err := hostile.Connect(t.Context(), peerInfoOf(s)); err != nil {
				t.Fatal(err)
			}
			waitConnected(t, s, hostile.ID())
			// Clients reading during the bad attempt are cut (store rule);
			// the download itself ends verified, from the mirror.
			p, err := n.Fetch(t.Context(), "core", "x86_64", pkg.expect(verify.SigRequired, true))
			if err != nil || p == nil {
				t.Fatalf("fetch: %v", err)
			}
			<-p.Done()
			if err := p.Err(); err != nil {
				t.Fatalf("fetch after a bad peer: %v", err)
			}
			assertStored(t, st, pkg, pkg.sig)
			bans, _ := n.Bans()
			badSum := sha256.Sum256(tt.bad)
			wantSum := sha256.Sum256(pkg.data)
			if len(bans) != 1 || bans[0].Peer != hostile.ID().String() || bans[0].Evidence.CID != pkg.cid.String() ||
				bans[0].Evidence.GotSHA256 != hex.EncodeToString(badSum[:]) ||
				bans[0].Evidence.WantSHA256 != hex.EncodeToString(wantSum[:]) {
				t.Fatalf("Bans() = %+v, want the hostile peer with both hashes", bans)
			}
			assertCannotConnect(t, s, hostile)

			// Restart on the same store: the ban holds.
			stop()
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}
			st2, err := store.Open(store.Config{Dir: dir})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = st2.Close() })
			cfg.Store = st2
			n2, _ := runNode(t, cfg)
			s2 := waitP2P(t, n2)
			if !s2.Banned(hostile.ID()) {
				t.Fatal("ban lost across a restart")
			}
			assertCannotConnect(t, s2, hostile)
		})
	}
}

// runNode runs a node until stop (idempotent) or the end of the test.
func runNode(t *testing.T, cfg Config) (*Node, func()) {
	t.Helper()
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	var stopped bool
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("run: %v", err)
		}
	}
	t.Cleanup(stop)
	return n, stop
}

func peerInfoOf(s *p2p.Host) peer.AddrInfo {
	return peer.AddrInfo{ID: s.ID(), Addrs: s.Addrs()}
}

// TestLANSingleFlightConcurrent: three nodes asked for the same cold package
// at the same instant agree on one of them going to the mirror; the others
// stream from it (directly or through each other).
func TestLANSingleFlightConcurrent(t *testing.T) {
	t.Parallel()
	keys := testKeyring(t)
	pkg := newTestPkg(t, "herd-1.0-1-x86_64.pkg.tar.zst", 2<<20, keys.packager)
	mirror := newFakeMirror(t, mirrorMode{}, map[string][]byte{pkg.name: pkg.data})
	mirror.gate = make(chan struct{})
	var nodes []*Node
	for range 3 {
		n, _ := newTestNode(t, []string{mirror.template()}, withP2P(t, nodes...), noTimeouts)
		waitP2P(t, n)
		nodes = append(nodes, n)
	}
	for i, a := range nodes {
		for _, b := range nodes[i+1:] {
			waitConnected(t, a.side().host, b.side().host.ID())
		}
	}
	pendings := make([]*store.Pending, len(nodes))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() {
			<-start
			p, err := n.Fetch(t.Context(), "core", "x86_64", pkg.expect(verify.SigRequired, true))
			if err != nil || p == nil {
				t.Errorf("node %d fetch: %v", i, err)
			}
			pendings[i] = p
		})
	}
	close(start)
	wg.Wait()
	waitFor(t, "a request to the mirror", func() bool { return len(mirror.requests(pkg.name)) > 0 })
	time.Sleep(200 * time.Millisecond) // a second request, if any, shows up
	close(mirror.gate)
	for i, p := range pendings {
		if p == nil {
			continue
		}
		if got, err := readPending(t, p); err != nil || !bytes.Equal(got, pkg.data) {
			t.Fatalf("node %d: %v", i, err)
		}
	}
	n := len(mirror.requests(pkg.name))
	// scripts/bench-p2p.sh prints this line as its row (4).
	t.Logf("herd: %d nodes, %d upstream GETs of the %d-byte package: %.1fx its size upstream",
		len(nodes), n, len(pkg.data), float64(n))
	if n != 1 {
		t.Fatalf("mirror served the package %d times, want 1", n)
	}
}
