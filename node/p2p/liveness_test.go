package p2p

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"testing/iotest"
	"testing/synctest"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/flocon/flocon/store/storetest"
)

// livePipe is a framed body over net.Pipe: the sender's keepalives and the
// receiver's deadline run on the bubble's clock.
func livePipe(t *testing.T) (send *bodySender, recv io.Reader, sendConn, recvConn net.Conn) {
	t.Helper()
	a, b := net.Pipe()
	send = newBodySender(a, true, nil)
	t.Cleanup(send.stop)                               // after the close below: a blocked keepalive ends
	t.Cleanup(func() { _ = a.Close(); _ = b.Close() }) // (cleanups run last first)
	return send, &frameReader{r: bufio.NewReader(&liveReader{r: b, d: livenessTimeout})}, a, b
}

// TestLivenessWaitingSenderStaysAlive: a sender with nothing to send for
// far longer than the liveness deadline (it waits on its own source) keeps
// the receiver reading; its bytes arrive when it has them.
func TestLivenessWaitingSenderStaysAlive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		send, recv, _, _ := livePipe(t)
		data := []byte("the bytes the sender's own source brought, at last")
		go func() {
			time.Sleep(30 * livenessTimeout) // waiting on its source
			if _, err := send.write(data, stallTimeout); err != nil {
				t.Errorf("write: %v", err)
			}
		}()
		start := time.Now()
		got := make([]byte, len(data))
		if _, err := io.ReadFull(recv, got); err != nil {
			t.Fatalf("read after a long wait: %v (after %s)", err, time.Since(start))
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("got %q, want %q", got, data)
		}
		if waited := time.Since(start); waited != 30*livenessTimeout {
			t.Fatalf("bytes after %s, want %s", waited, 30*livenessTimeout)
		}
	})
}

// TestLivenessDeadSenderDetected: a sender that stops sending frames (a
// process killed mid-transfer: no keepalive, no close) is given up on
// livenessTimeout after its last frame, not after the stall timer.
func TestLivenessDeadSenderDetected(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		send, recv, _, _ := livePipe(t)
		type end struct {
			at  time.Time
			err error
		}
		ended := make(chan end, 1)
		go func() { // the receiver reads on, keepalives included
			buf := make([]byte, 64)
			for {
				if _, err := recv.Read(buf); err != nil {
					ended <- end{time.Now(), err}
					return
				}
			}
		}()
		if _, err := send.write([]byte("first chunk"), stallTimeout); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * keepaliveEvery) // alive a while: keepalives only
		send.stop()                    // then dead: nothing more on the wire
		dead := time.Now()
		e := <-ended
		if !isTimeout(e.err) {
			t.Fatalf("read from a dead sender: %v, want a deadline error", e.err)
		}
		// The last keepalive went out at most keepaliveEvery before the
		// death; the deadline runs from it.
		if took := e.at.Sub(dead); took > livenessTimeout || took < livenessTimeout-keepaliveEvery {
			t.Fatalf("dead sender detected after %s, want within [%s, %s]", took, livenessTimeout-keepaliveEvery, livenessTimeout)
		}
	})
}

// TestLivenessClosedConnection: a connection that closes is noticed at
// once, without waiting for any deadline.
func TestLivenessClosedConnection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, recv, sendConn, _ := livePipe(t)
		go func() {
			time.Sleep(keepaliveEvery / 2)
			_ = sendConn.Close()
		}()
		start := time.Now()
		_, err := recv.Read(make([]byte, 8))
		if err == nil || isTimeout(err) {
			t.Fatalf("read on a closed connection: %v, want the close", err)
		}
		if took := time.Since(start); took != keepaliveEvery/2 {
			t.Fatalf("close noticed after %s, want %s", took, keepaliveEvery/2)
		}
	})
}

// TestLivenessBusySenderSendsNoKeepalive: while data flows, no keepalive
// frames are interleaved (the body is data frames only).
func TestLivenessBusySenderSendsNoKeepalive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := net.Pipe()
		defer a.Close()
		defer b.Close()
		send := newBodySender(a, true, nil)
		chunk := bytes.Repeat([]byte{7}, 1000)
		go func() {
			defer a.Close()
			for range 20 {
				time.Sleep(keepaliveEvery / 2)
				if _, err := send.write(chunk, stallTimeout); err != nil {
					t.Errorf("write: %v", err)
					return
				}
			}
			send.stop()
		}()
		raw, err := io.ReadAll(b)
		if err != nil {
			t.Fatal(err)
		}
		want := bytes.Repeat(append([]byte{0xe8, 0x07}, chunk...), 20) // uvarint(1000) = e8 07
		if !bytes.Equal(raw, want) {
			t.Fatalf("wire carried %d bytes, want %d data frames only (%d bytes)", len(raw), 20, len(want))
		}
	})
}

// TestFrameReader: keepalives are skipped, the end between frames is the
// sender's end, a short frame is truncation, an oversized one malformed.
func TestFrameReader(t *testing.T) {
	frame := func(b []byte) []byte {
		var w bytes.Buffer
		s := newBodySender(nopDeadline{&w}, true, nil)
		s.stop()
		_, _ = s.write(b, time.Second)
		return w.Bytes()
	}
	body := append(append(append([]byte{0, 0}, frame([]byte("abc"))...), 0), frame([]byte("defg"))...)
	for _, tt := range []struct {
		name string
		wire []byte
		want string
		err  error
	}{
		{"data and keepalives", body, "abcdefg", nil},
		{"keepalives only", []byte{0, 0, 0}, "", nil},
		{"a frame longer than the reader's buffer", frame(bytes.Repeat([]byte("x"), 100)), strings.Repeat("x", 100), nil},
		{"short frame", body[:len(body)-2], "abcde", errTruncated},
		{"cut in a length", []byte{0, 0x80}, "", errTruncated},
		{"oversized frame", []byte{0x81, 0x80, 0x40}, "", errMalformed},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := io.ReadAll(&frameReader{r: bufio.NewReader(bytes.NewReader(tt.wire))})
			if string(got) != tt.want || (tt.err == nil) != (err == nil) || (tt.err != nil && !errors.Is(err, tt.err)) {
				t.Fatalf("read %q, %v; want %q, %v", got, err, tt.want, tt.err)
			}
			// A stream that returns its last bytes with io.EOF (QUIC
			// does), read past a buffer smaller than the reads.
			got, err = io.ReadAll(&frameReader{r: bufio.NewReaderSize(iotest.DataErrReader(bytes.NewReader(tt.wire)), 16)})
			if string(got) != tt.want || (tt.err == nil) != (err == nil) || (tt.err != nil && !errors.Is(err, tt.err)) {
				t.Fatalf("data with EOF: read %q, %v; want %q, %v", got, err, tt.want, tt.err)
			}
		})
	}
}

type nopDeadline struct{ io.Writer }

func (nopDeadline) SetWriteDeadline(time.Time) error { return nil }

// TestSilentSenderIsGone: a sender that sends its header and a first
// chunk, then nothing, reached through a relay that then forwards nothing
// either way (a machine that lost power, a process killed over QUIC: no
// keepalive, no pong, no reset, no close), fails the fetch with
// ErrPeerGone, well before the stall timer, and is not banned: dying is no
// lie. The rule is the same for a blob/1.0.0 sender, which never sends
// keepalives, and for one that dies before its header. Its connection is
// closed, so its other streams fail at once.
func TestSilentSenderIsGone(t *testing.T) {
	t.Parallel()
	data := storetest.RandomBytes(7, 1<<20)
	c := cidOf(t, data)
	for _, tt := range []struct {
		name  string
		proto protocol.ID
		sent  int // body bytes before the silence; -1: no header either
	}{
		{"blob/1.1.0", blobProtoLive, 1000},
		{"blob/1.0.0", blobProto, 1000},
		{"silent before the header", blobProtoLive, -1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dead, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay(),
				libp2p.DisableMetrics())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = dead.Close() })
			target, err := manet.ToNetAddr(dead.Addrs()[0])
			if err != nil {
				t.Fatal(err)
			}
			hole := newBlackhole(t, target.String())
			stop := make(chan struct{})
			t.Cleanup(func() { close(stop) }) // before the host closes
			dead.SetStreamHandler(tt.proto, func(s network.Stream) {
				if _, err := readBlobRequest(bufio.NewReader(s)); err != nil {
					_ = s.Reset()
					return
				}
				if tt.sent < 0 {
					hole.cutNow()
				} else {
					_ = writeHeader(s, header{code: statusOK, size: int64(len(data)), available: int64(len(data))})
					body := newBodySender(s, tt.proto == blobProtoLive, nil)
					_, _ = body.write(data[:tt.sent], stallTimeout)
					body.stop() // the receiver cuts the relay once it has these bytes
				}
				<-stop
				_ = s.Reset()
			})
			b := startNode(t, newMemStore(t))
			if err := b.s.h.Connect(t.Context(), peer.AddrInfo{ID: dead.ID(), Addrs: []ma.Multiaddr{hole.addr(t)}}); err != nil {
				t.Fatal(err)
			}
			waitConnected(t, b.s.h, dead.ID())
			start := time.Now()
			w := &cutWriter{at: max(tt.sent, 1), cut: hole.cutNow} // dead from the last byte on
			n, err := b.s.FetchBlob(t.Context(), dead.ID(), c, 0, w)
			if !errors.Is(err, ErrPeerGone) || n != int64(max(tt.sent, 0)) {
				t.Fatalf("fetch from a silent sender: %d bytes, %v; want %d and ErrPeerGone", n, err, max(tt.sent, 0))
			}
			if b.s.bans.banned(dead.ID()) {
				t.Fatal("a dead peer was banned")
			}
			if b.s.h.Network().Connectedness(dead.ID()) == network.Connected {
				t.Error("the dead peer's connection is still open: its other streams wait on their own deadlines")
			}
			t.Logf("silent sender given up after %s", time.Since(start).Round(time.Millisecond))
		})
	}
}

// TestLivenessPingHasTheLastWord: a sender silent past the deadline (its
// goroutine starved on a loaded machine) that still answers a ping is
// waited for, and its bytes arrive; one that does not answer is gone
// (ErrPeerGone) once the ping's time is up; and one that answers pings
// but sends nothing is given up at the stall timer.
func TestLivenessPingHasTheLastWord(t *testing.T) {
	for _, tt := range []struct {
		name    string
		alive   func() error
		sendAt  time.Duration // 0: never
		wantErr error         // nil: the bytes arrive
		wantAt  time.Duration
	}{
		{"starved but answers pings", func() error { return nil }, 2 * time.Second, nil, 2 * time.Second},
		{"dead", func() error { time.Sleep(livenessConfirm); return errors.New("ping: deadline") }, 0, ErrPeerGone, livenessTimeout + livenessConfirm},
		{"answers pings, sends nothing", func() error { return nil }, 0, os.ErrDeadlineExceeded, stallTimeout},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				a, b := net.Pipe()
				defer b.Close()
				defer a.Close()
				send := newBodySender(a, true, nil)
				send.stop() // no keepalive: only the ping speaks for the sender
				if tt.sendAt > 0 {
					go func() {
						time.Sleep(tt.sendAt)
						_, _ = send.write([]byte("late"), stallTimeout)
					}()
				}
				recv := &frameReader{r: bufio.NewReader(&liveReader{r: b, d: livenessTimeout, alive: tt.alive})}
				start := time.Now()
				got := make([]byte, 4)
				_, err := io.ReadFull(recv, got)
				if (tt.wantErr == nil) != (err == nil) || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
					t.Fatalf("read: %v, want %v", err, tt.wantErr)
				}
				if took := time.Since(start); took != tt.wantAt {
					t.Fatalf("read ended after %s, want %s", took, tt.wantAt)
				}
			})
		})
	}
}

// TestLivenessBytesDuringThePingSpeakForTheSender: a sender silent past
// the deadline whose next bytes come while the ping is unanswered (both
// ends starved on a loaded machine) is alive: its bytes are read as they
// come, not left behind a ping that then fails (ErrPeerGone, and the
// connection closed).
func TestLivenessBytesDuringThePingSpeakForTheSender(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := net.Pipe()
		defer b.Close()
		defer a.Close()
		send := newBodySender(a, true, nil)
		send.stop() // no keepalive: the late chunk is the only sign of life
		const sendAt = livenessTimeout + livenessConfirm/2
		go func() {
			time.Sleep(sendAt)
			_, _ = send.write([]byte("late"), stallTimeout)
		}()
		unanswered := func() error { time.Sleep(livenessConfirm); return errors.New("ping: deadline") }
		recv := &frameReader{r: bufio.NewReader(&liveReader{r: b, d: livenessTimeout, alive: unanswered})}
		start := time.Now()
		got := make([]byte, 4)
		if _, err := io.ReadFull(recv, got); err != nil {
			t.Fatalf("read: %v, want the bytes sent during the ping", err)
		}
		if took := time.Since(start); took != sendAt {
			t.Fatalf("bytes read after %s, want as they came (%s)", took, sendAt)
		}
		time.Sleep(livenessConfirm) // the unanswered ping ends on its own
	})
}

// TestLivenessOtherStreamsSpeakForThePeer: a stream silent past the
// deadline while another stream from the same peer brings bytes is not
// given up, even when the ping goes unanswered (it would wait behind those
// bytes); once every stream of the peer is silent, the unanswered ping
// ends it (ErrPeerGone) as before.
func TestLivenessOtherStreamsSpeakForThePeer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const p = peer.ID("peerP")
		book := newHeardBook()
		reader := func(c net.Conn) *liveReader {
			heard, done := book.open(p)
			t.Cleanup(done)
			return &liveReader{r: c, d: livenessTimeout, heard: heard, alive: func() error {
				return book.confirm(p, unansweredPing)
			}}
		}
		quietSend, quietRecv := net.Pipe()
		busySend, busyRecv := net.Pipe()
		defer quietSend.Close()
		defer quietRecv.Close()
		defer busySend.Close()
		defer busyRecv.Close()
		quiet, busy := reader(quietRecv), reader(busyRecv)
		const busyFor = 3 * time.Second
		go func() { // the other stream: bytes every 100 ms, then silence
			for start := time.Now(); time.Since(start) < busyFor; {
				_, _ = busySend.Write([]byte{1})
				time.Sleep(100 * time.Millisecond)
			}
		}()
		go func() { _, _ = io.Copy(io.Discard, busy) }()
		start := time.Now()
		_, err := quiet.Read(make([]byte, 8))
		if !errors.Is(err, ErrPeerGone) {
			t.Fatalf("read: %v, want ErrPeerGone once the other stream went silent too", err)
		}
		if took := time.Since(start); took < busyFor || took > busyFor+2*livenessTimeout+livenessConfirm {
			t.Fatalf("silent stream given up after %s, want after the other stream's last byte (%s) plus a deadline and a ping", took, busyFor)
		}
	})
}

// unansweredPing is the ping of a peer that does not answer.
func unansweredPing() error {
	time.Sleep(livenessConfirm)
	return errors.New("ping: deadline")
}

// TestLivenessBytesOnOtherStreamsDuringThePing: a stream silent past the
// deadline whose peer sends one byte on another stream while the ping is
// out (unanswered: the pong waits behind a starved goroutine) is not given
// up then; once the peer is silent everywhere, the next unanswered ping
// ends it (ErrPeerGone).
func TestLivenessBytesOnOtherStreamsDuringThePing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const p = peer.ID("peerP")
		book := newHeardBook()
		quietSend, quietRecv := net.Pipe()
		otherSend, otherRecv := net.Pipe()
		defer quietSend.Close()
		defer quietRecv.Close()
		defer otherSend.Close()
		defer otherRecv.Close()
		reader := func(c net.Conn) *liveReader {
			heard, done := book.open(p)
			t.Cleanup(done)
			return &liveReader{r: c, d: livenessTimeout, heard: heard, alive: func() error { return book.confirm(p, unansweredPing) }}
		}
		quiet, other := reader(quietRecv), reader(otherRecv)
		const byteAt = livenessTimeout + livenessConfirm/2 // while the quiet stream's first ping is out
		go func() {
			time.Sleep(byteAt)
			_, _ = otherSend.Write([]byte{1})
		}()
		go func() { _, _ = other.Read(make([]byte, 1)) }()
		start := time.Now()
		_, err := quiet.Read(make([]byte, 8))
		if !errors.Is(err, ErrPeerGone) {
			t.Fatalf("read: %v, want ErrPeerGone once the peer was silent everywhere", err)
		}
		// The first ping (from livenessTimeout) failed with a byte during
		// it; the next, asked livenessTimeout later, failed without one.
		if took, want := time.Since(start), 2*(livenessTimeout+livenessConfirm); took != want {
			t.Fatalf("silent stream given up after %s, want %s (the byte during the first ping spoke for the peer)", took, want)
		}
		quiet.stop()
		other.stop()
	})
}
