package p2p

import (
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/flocon/flocon/store/storetest"
)

// TestLiveReaderKeepsYamuxCredit: a live sender that pauses again and
// again (it waits on its own source, its goroutine is starved) while the
// receiver's liveness watch keeps expiring delivers its whole blob over
// real libp2p hosts (TCP, yamux). go-yamux v5.1.0 counts a window update
// as granted before it sends it, and drops it when the stream's read
// deadline has passed by then: a read that returns bytes as its deadline
// expires loses the sender that much credit for good, and a few such reads
// leave the sender with no window while the receiver believes it has one.
// The transfer then stalls until the stall timer ("i/o deadline
// reached"), which is what some transfers of 0.4-1.5 MB did in the herd
// benches. The liveness watch here runs every millisecond of silence (the
// real one every livenessTimeout), so the sender's pauses of up to 2 ms
// cross it hundreds of times.
func TestLiveReaderKeepsYamuxCredit(t *testing.T) {
	t.Parallel()
	const proto = protocol.ID("/flocon/test/credit/1.0.0")
	data := storetest.RandomBytes(11, 8<<20)
	send, recv := newRawHost(t), newRawHost(t)
	send.SetStreamHandler(proto, func(s network.Stream) {
		defer s.Close()
		for i, p := 0, data; len(p) > 0; i++ {
			k := min(len(p), 16<<10)
			if _, err := s.Write(p[:k]); err != nil {
				_ = s.Reset()
				return
			}
			p = p[k:]
			time.Sleep(time.Duration(i%5) * 500 * time.Microsecond) // the sender pauses: 0-2 ms
		}
	})
	if err := recv.Connect(t.Context(), peer.AddrInfo{ID: send.ID(), Addrs: send.Addrs()}); err != nil {
		t.Fatal(err)
	}
	str, err := recv.NewStream(t.Context(), send.ID(), proto)
	if err != nil {
		t.Fatal(err)
	}
	defer str.Close()
	if str.Conn().ConnState().StreamMultiplexer != "/yamux/1.0.0" {
		t.Fatalf("stream over %q, want yamux", str.Conn().ConnState().StreamMultiplexer)
	}
	live := &liveReader{r: str, d: time.Millisecond, alive: func() error { return nil }} // alive, pinged at every pause
	got, err := io.ReadAll(io.LimitReader(live, int64(len(data))))
	if err != nil {
		t.Fatalf("read %d of %d bytes: %v", len(got), len(data), err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, not the %d sent", len(got), len(data))
	}
}

// TestSignOfLife: a peer whose libp2p ping goes unanswered (its handler
// starved, here switched off) still proves itself alive through its
// transport: a yamux pong over TCP, a QUIC packet acknowledging the ping;
// a peer cut off (a relay that forwards nothing: a machine without power)
// gives no sign.
func TestSignOfLife(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name   string
		listen string
		cut    bool   // reached through a blackhole, then cut
		want   string // "": no sign
	}{
		{"yamux answers", "/ip4/127.0.0.1/tcp/0", false, "yamux"},
		{"quic acknowledges", "/ip4/127.0.0.1/udp/0/quic-v1", false, "quic"},
		{"cut off", "/ip4/127.0.0.1/tcp/0", true, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			quiet, err := libp2p.New(libp2p.ListenAddrStrings(tt.listen), libp2p.DisableRelay(),
				libp2p.DisableMetrics(), libp2p.Ping(false)) // no libp2p pong: only the transport speaks
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = quiet.Close() })
			ai := peer.AddrInfo{ID: quiet.ID(), Addrs: quiet.Addrs()}
			var hole *blackhole
			if tt.cut {
				target, err := manet.ToNetAddr(quiet.Addrs()[0])
				if err != nil {
					t.Fatal(err)
				}
				hole = newBlackhole(t, target.String())
				ai.Addrs = []ma.Multiaddr{hole.addr(t)}
			}
			b := startNode(t, newMemStore(t), func(c *Config) {
				c.ListenAddrs = []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"}
			})
			if err := b.s.h.Connect(t.Context(), ai); err != nil {
				t.Fatal(err)
			}
			if hole != nil {
				hole.cutNow()
			}
			sign, err := b.s.signOfLife(t.Context(), quiet.ID())
			if sign != tt.want || (tt.want == "") != (err != nil) {
				t.Fatalf("sign of life %q, %v; want %q", sign, err, tt.want)
			}
		})
	}
}
