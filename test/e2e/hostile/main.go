// Command hostile is a lying or slow flocon peer for the e2e tests: it joins
// the LAN by mDNS (_flocon._udp), claims to hold one CID and, asked for it,
// misbehaves as --mode says:
//
//	garbage   size bytes of garbage (default)
//	trickle   the real bytes (--file), one every 4 s
//	slow      the real bytes at 3 KB/s
//	stall     says "have", sends the answer header, then nothing
//	junk      the real bytes, then 64 KiB of junk past the announced size
//	oversize  announces 1 MiB more than the file, sends the real bytes and junk
//
// It also keeps trying to reach every flocon peer it found and prints each
// change ("reach PEER ok" / "reach PEER fail ...") so a test can watch a ban
// take effect and lift.
//
//	hostile --cid bafkrei... --size 1048576 --listen /ip4/0.0.0.0/tcp/19432
//	hostile --cid bafkrei... --file pkg.tar.zst --mode slow
//
// It speaks flocon's wire format on purpose without importing flocon, like
// any other program on the network would.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/discovery/mdns"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

const (
	haveProto = protocol.ID("/flocon/have/1.0.0")
	blobProto = protocol.ID("/flocon/blob/1.0.0")
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "hostile:", err)
		os.Exit(1)
	}
}

func run() error {
	claim := flag.String("cid", "", "the CID to claim")
	size := flag.Int64("size", 1<<20, "how many garbage bytes to send")
	listen := flag.String("listen", "/ip4/0.0.0.0/tcp/19432", "listen multiaddr")
	mode := flag.String("mode", "garbage", "garbage, trickle, slow, stall, junk or oversize")
	file := flag.String("file", "", "the real bytes of the CID (every mode but garbage)")
	flag.Parse()
	want, err := cid.Decode(*claim)
	if err != nil {
		return fmt.Errorf("--cid: %w", err)
	}
	var data []byte
	if *mode != "garbage" {
		if data, err = os.ReadFile(*file); err != nil {
			return fmt.Errorf("--file: %w", err)
		}
		*size = int64(len(data))
	}
	announced := *size
	if *mode == "oversize" {
		announced += 1 << 20
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	h, err := libp2p.New(libp2p.ListenAddrStrings(*listen), libp2p.DisableRelay(), libp2p.DisableMetrics(),
		libp2p.AddrsFactory(noLoopback))
	if err != nil {
		return err
	}
	defer h.Close()
	h.SetStreamHandler(haveProto, func(s network.Stream) { answerHave(s, want, announced) })
	h.SetStreamHandler(blobProto, func(s network.Stream) {
		if *mode == "garbage" {
			sendGarbage(s, *size)
			return
		}
		sendMode(ctx, s, *mode, data, announced)
	})
	fmt.Printf("id %s\n", h.ID())
	found := &peers{m: map[peer.ID]peer.AddrInfo{}}
	svc := mdns.NewMdnsService(h, "_flocon._udp", found)
	if err := svc.Start(); err != nil {
		return fmt.Errorf("mdns: %w", err)
	}
	defer svc.Close()
	reachLoop(ctx, h, found)
	return nil
}

func noLoopback(addrs []ma.Multiaddr) []ma.Multiaddr {
	out := addrs[:0:0]
	for _, a := range addrs {
		if !manet.IsIPLoopback(a) {
			out = append(out, a)
		}
	}
	return out
}

// answerHave says "complete" for the claimed CID, "no" otherwise.
func answerHave(s network.Stream, want cid.Cid, size int64) {
	defer s.Close()
	c, err := readCID(bufio.NewReader(s))
	if err != nil {
		_ = s.Reset()
		return
	}
	state, sz := byte(0), uint64(0)
	if c.Equals(want) {
		state, sz = 1, uint64(size)+1
	}
	b := []byte{state}
	b = binary.AppendUvarint(b, sz)
	b = binary.AppendUvarint(b, uint64(size)*uint64(state))
	b = binary.AppendUvarint(b, 0)
	_, _ = s.Write(b)
}

// sendGarbage answers any blob request with size random bytes.
func sendGarbage(s network.Stream, size int64) {
	defer s.Close()
	r := bufio.NewReader(s)
	if _, err := r.ReadByte(); err != nil {
		_ = s.Reset()
		return
	}
	if _, err := readCID(r); err != nil {
		_ = s.Reset()
		return
	}
	off, err := binary.ReadUvarint(r)
	if err != nil || int64(off) > size {
		_ = s.Reset()
		return
	}
	b := []byte{0}
	b = binary.AppendUvarint(b, uint64(size)+1)
	b = binary.AppendUvarint(b, uint64(size))
	if _, err := s.Write(b); err != nil {
		return
	}
	fmt.Printf("sending garbage to %s\n", s.Conn().RemotePeer())
	_, _ = io.CopyN(s, rand.Reader, size-int64(off))
}

// sendMode answers a blob request with the real bytes from the asked
// offset, paced or spoiled as mode says.
func sendMode(ctx context.Context, s network.Stream, mode string, data []byte, announced int64) {
	defer s.Close()
	off, ok := readBlobRequest(s, announced)
	if !ok {
		return
	}
	b := []byte{0}
	b = binary.AppendUvarint(b, uint64(announced)+1)
	b = binary.AppendUvarint(b, uint64(announced))
	if _, err := s.Write(b); err != nil {
		return
	}
	fmt.Printf("sending %s to %s from %d\n", mode, s.Conn().RemotePeer(), off)
	rest := data[min(off, int64(len(data))):]
	switch mode {
	case "stall":
		<-ctx.Done()
	case "trickle":
		pace(ctx, s, rest, 1, 4*time.Second)
	case "slow":
		pace(ctx, s, rest, 300, 100*time.Millisecond)
	case "junk", "oversize":
		_, _ = s.Write(rest)
		_, _ = s.Write(bytes.Repeat([]byte{'j'}, 64<<10))
	}
}

// pace writes chunk bytes of b every interval until b is sent, the stream
// fails or ctx ends.
func pace(ctx context.Context, s network.Stream, b []byte, chunk int, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for len(b) > 0 {
		k := min(chunk, len(b))
		if _, err := s.Write(b[:k]); err != nil {
			return
		}
		b = b[k:]
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

// readBlobRequest reads kind, CID and offset; false when malformed.
func readBlobRequest(s network.Stream, size int64) (int64, bool) {
	r := bufio.NewReader(s)
	if _, err := r.ReadByte(); err != nil {
		_ = s.Reset()
		return 0, false
	}
	if _, err := readCID(r); err != nil {
		_ = s.Reset()
		return 0, false
	}
	off, err := binary.ReadUvarint(r)
	if err != nil || int64(off) > size {
		_ = s.Reset()
		return 0, false
	}
	return int64(off), true
}

func readCID(r *bufio.Reader) (cid.Cid, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil || n == 0 || n > 128 {
		return cid.Undef, fmt.Errorf("bad cid length")
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return cid.Undef, err
	}
	_, c, err := cid.CidFromBytes(b)
	return c, err
}

// peers is what mDNS found.
type peers struct {
	mu sync.Mutex
	m  map[peer.ID]peer.AddrInfo
}

func (p *peers) HandlePeerFound(ai peer.AddrInfo) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.m[ai.ID] = ai
}

func (p *peers) list() []peer.AddrInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]peer.AddrInfo, 0, len(p.m))
	for _, ai := range p.m {
		out = append(out, ai)
	}
	return out
}

// reachLoop tries every found peer twice a second and prints changes.
func reachLoop(ctx context.Context, h host.Host, found *peers) {
	last := map[peer.ID]string{}
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		for _, ai := range found.list() {
			if ai.ID == h.ID() {
				continue
			}
			state, detail := "ok", ""
			if err := reach(ctx, h, ai); err != nil {
				state, detail = "fail", err.Error()
			}
			if last[ai.ID] != state {
				fmt.Printf("reach %s %s %s\n", ai.ID, state, detail)
			}
			last[ai.ID] = state
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

// reach connects to ai and asks it a have question.
func reach(ctx context.Context, h host.Host, ai peer.AddrInfo) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	h.Peerstore().AddAddrs(ai.ID, ai.Addrs, time.Minute)
	if err := h.Connect(ctx, ai); err != nil {
		return err
	}
	s, err := h.NewStream(ctx, ai.ID, haveProto)
	if err != nil {
		return err
	}
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(2 * time.Second))
	c, _ := cid.Decode("bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy")
	b := binary.AppendUvarint(nil, uint64(len(c.Bytes())))
	if _, err := s.Write(append(b, c.Bytes()...)); err != nil {
		return err
	}
	_ = s.CloseWrite()
	if _, err := bufio.NewReader(s).ReadByte(); err != nil {
		return err
	}
	return nil
}
