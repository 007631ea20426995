package p2p

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/flocon/flocon/store/storetest"
)

// hostileHost is a peer built by the test: it claims to have every CID and
// answers blob requests with serve.
func hostileHost(t *testing.T, size int64, serve func(s network.Stream)) host.Host {
	t.Helper()
	h := newRawHost(t)
	h.SetStreamHandler(haveProto, func(s network.Stream) {
		if _, err := readCID(bufio.NewReader(s)); err != nil {
			_ = s.Reset()
			return
		}
		_ = writeHave(s, header{code: haveComplete, size: size, available: size})
		_ = s.Close()
	})
	h.SetStreamHandler(blobProto, func(s network.Stream) {
		if _, err := readBlobRequest(bufio.NewReader(s)); err != nil {
			_ = s.Reset()
			return
		}
		serve(s)
	})
	return h
}

// TestHostilePeerBanned: a peer that lies on the wire (short stream closed
// cleanly, garbage frames, bytes past the announced size) is banned at once
// with reason and evidence; it can no longer connect either way; the ban is
// persisted, reloaded by a new node on the same store, and Unban lets it
// back.
func TestHostilePeerBanned(t *testing.T) {
	t.Parallel()
	const size = 1 << 20
	data := storetest.RandomBytes(7, size)
	tests := []struct {
		name  string
		serve func(s network.Stream)
	}{
		{"truncated", func(s network.Stream) {
			_ = writeHeader(s, header{code: statusOK, size: size, available: size})
			_, _ = s.Write(data[:size/2])
			_ = s.Close()
		}},
		{"garbage status", func(s network.Stream) {
			_, _ = s.Write([]byte{0x7f, 1, 1})
			_ = s.Close()
		}},
		{"garbage header", func(s network.Stream) {
			_, _ = s.Write([]byte{statusOK, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
			_ = s.Close()
		}},
		{"bytes past the size", func(s network.Stream) {
			_ = writeHeader(s, header{code: statusOK, size: 1000, available: 1000})
			_, _ = s.Write(data[:5000])
			_ = s.Close()
		}},
		{"closed without header", func(s network.Stream) { _ = s.Close() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			hostile := hostileHost(t, size, tt.serve)
			st := newMemStore(t)
			b := startNode(t, st)
			if err := hostile.Connect(t.Context(), b.addrInfo()); err != nil {
				t.Fatal(err)
			}
			waitConnected(t, b.s.h, hostile.ID())
			c := cidOf(t, data)
			srcs := b.peerSources(t.Context(), c)
			if len(srcs) != 1 || srcs[0].Peer() != hostile.ID() {
				t.Fatalf("peerSources = %v, want the hostile peer", srcs)
			}
			_, err := srcs[0].Fetch(t.Context(), c, 0, io.Discard)
			if !errors.Is(err, ErrMisbehaviour) {
				t.Fatalf("Fetch = %v, want ErrMisbehaviour", err)
			}
			assertBanned(t, b, hostile.ID(), c.String())
			assertCannotConnect(t, b, hostile)

			// A new node on the same store (a restart) still bans it.
			b2 := startNode(t, st)
			if !b2.s.bans.banned(hostile.ID()) {
				t.Fatal("ban not reloaded from the store")
			}
			assertCannotConnect(t, b2, hostile)
			if err := b2.s.Unban(hostile.ID()); err != nil {
				t.Fatalf("Unban: %v", err)
			}
			if _, err := st.Meta(banNamespace, hostile.ID().String()); err == nil {
				t.Fatal("unban left the row in the store")
			}
			if err := hostile.Connect(t.Context(), b2.addrInfo()); err != nil {
				t.Fatalf("connect after unban: %v", err)
			}
			s, err := hostile.NewStream(t.Context(), b2.id(), haveProto)
			if err != nil {
				t.Fatalf("stream after unban: %v", err)
			}
			_ = s.Reset()
		})
	}
}

func assertBanned(t *testing.T, tn *testNode, p peer.ID, wantCID string) {
	t.Helper()
	bans := tn.s.Bans()
	if len(bans) != 1 || bans[0].Peer != p.String() || bans[0].Reason == "" ||
		bans[0].Evidence.CID != wantCID || bans[0].Evidence.Detail == "" || bans[0].Time.IsZero() {
		t.Fatalf("Bans() = %+v, want %s with reason and evidence for %s", bans, p, wantCID)
	}
	if _, err := tn.st.Meta(banNamespace, p.String()); err != nil {
		t.Fatalf("ban not persisted: %v", err)
	}
}

// assertCannotConnect: the banned peer's connections are gone, it cannot
// open streams to the node, and the node does not dial it.
func assertCannotConnect(t *testing.T, tn *testNode, hostile host.Host) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	// The remote gate acts after the handshake: Connect may report success,
	// but the connection is dropped and no stream opens.
	_ = hostile.Connect(ctx, tn.addrInfo())
	if s, err := hostile.NewStream(network.WithNoDial(ctx, "test"), tn.id(), haveProto); err == nil {
		if _, err := s.Write(writeCID(nil, cidOf(t, []byte("x")))); err == nil {
			_ = s.CloseWrite()
			if _, err := readHeader(bufio.NewReader(s)); err == nil {
				t.Fatal("banned peer still gets answers")
			}
		}
		_ = s.Reset()
	}
	if err := tn.s.h.Connect(ctx, peer.AddrInfo{ID: hostile.ID(), Addrs: hostile.Addrs()}); err == nil {
		t.Fatal("node dialed a banned peer")
	}
	if tn.s.h.Network().Connectedness(hostile.ID()) == network.Connected {
		t.Fatal("banned peer still connected")
	}
}

// TestManualBan covers the admin methods: ban by hand, list, refuse
// self, unban, unban of a peer that is not banned.
func TestManualBan(t *testing.T) {
	t.Parallel()
	a := startNode(t, newMemStore(t))
	other := startNode(t, newMemStore(t), withBootstrap(a))
	waitConnected(t, a.s.h, other.id())
	if err := a.s.Ban(other.id(), "testing", Evidence{Detail: "manual"}); err != nil {
		t.Fatalf("Ban: %v", err)
	}
	bans := a.s.Bans()
	if len(bans) != 1 || bans[0].Reason != "testing" {
		t.Fatalf("Bans() = %+v", bans)
	}
	if err := a.s.Ban(other.id(), "another reason", Evidence{}); !errors.Is(err, ErrAlreadyBanned) {
		t.Fatalf("second Ban = %v, want ErrAlreadyBanned", err)
	}
	if bans := a.s.Bans(); len(bans) != 1 || bans[0].Reason != "testing" {
		t.Fatalf("a second ban replaced the first: %+v", bans)
	}
	if a.s.h.Network().Connectedness(other.id()) == network.Connected {
		t.Fatal("ban left the connection open")
	}
	for _, tt := range []struct {
		name string
		err  error
		want error
	}{
		{"self", a.s.Ban(a.id(), "x", Evidence{}), ErrSelfBan},
		{"unban not banned", a.s.Unban(a.id()), ErrNotBanned},
	} {
		if !errors.Is(tt.err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, tt.err, tt.want)
		}
	}
	if err := a.s.Unban(other.id()); err != nil {
		t.Fatalf("Unban: %v", err)
	}
	if err := a.s.Unban(other.id()); !errors.Is(err, ErrNotBanned) {
		t.Fatalf("second Unban = %v, want ErrNotBanned", err)
	}
	if bans := a.s.Bans(); len(bans) != 0 {
		t.Fatalf("Bans() after unban = %+v", bans)
	}
}

// TestAllowList: with AllowPeers set, a peer not on the list cannot connect.
func TestAllowList(t *testing.T) {
	t.Parallel()
	friend := startNode(t, newMemStore(t))
	a := startNode(t, newMemStore(t), func(c *Config) { c.AllowPeers = []string{friend.id().String()} })
	stranger := newRawHost(t)
	if err := friend.s.h.Connect(t.Context(), a.addrInfo()); err != nil {
		t.Fatalf("friend connect: %v", err)
	}
	waitConnected(t, a.s.h, friend.id())
	assertCannotConnect(t, a, stranger)
	if got := a.s.Refused(); got.NotAllowed == 0 {
		t.Fatalf("Refused() = %+v, want the stranger counted as not allowed", got)
	}
}

// TestIdentityPersisted: the key is created 0600 and reused, so the peer
// ID (and bans others hold against it) survives restarts.
func TestIdentityPersisted(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	k1, err := loadIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := loadIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !k1.Equals(k2) {
		t.Fatal("identity changed between loads")
	}
	fi, err := os.Stat(dir + "/" + identityFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("identity file mode = %v, %v; want 0600", fi.Mode().Perm(), err)
	}
}

// TestShortThenGone: a stream that ends short right before the peer's
// connection drops looks like a host shutting down mid-transfer: a plain
// failure, until the peer makes a habit of it and is banned.
func TestShortThenGone(t *testing.T) {
	t.Parallel()
	const size = 1 << 20
	data := storetest.RandomBytes(8, size)
	var hostile host.Host
	hostile = hostileHost(t, size, func(s network.Stream) {
		_ = writeHeader(s, header{code: statusOK, size: size, available: size})
		_, _ = s.Write(data[:size/4])
		_ = s.Close()
		time.Sleep(50 * time.Millisecond) // the clean end arrives first
		_ = hostile.Network().ClosePeer(s.Conn().RemotePeer())
	})
	b := startNode(t, newMemStore(t))
	c := cidOf(t, data)
	for i := 1; i <= maxShortAndGone; i++ {
		if err := hostile.Connect(t.Context(), b.addrInfo()); err != nil {
			t.Fatalf("attempt %d: connect: %v", i, err)
		}
		waitConnected(t, b.s.h, hostile.ID())
		_, err := (&peerSource{s: b.s, p: hostile.ID()}).Fetch(t.Context(), c, 0, io.Discard)
		if err == nil {
			t.Fatalf("attempt %d: a short stream succeeded", i)
		}
		banned := b.s.bans.banned(hostile.ID())
		if want := i == maxShortAndGone; banned != want || errors.Is(err, ErrMisbehaviour) != want {
			t.Fatalf("attempt %d: banned %v (%v), want %v", i, banned, err, want)
		}
	}
}
