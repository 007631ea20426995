package p2p

import (
	"bufio"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/flocon/flocon/store/repodb"
	"github.com/flocon/flocon/store/storetest"
	"github.com/flocon/flocon/verify"
)

// Benchmarks of the peer path (scripts/bench-p2p.sh prints them as a table):
//
//	go test -run '^$' -bench 'P2P' -benchtime 3x ./node/p2p/
//
// BenchmarkP2PThroughput/libp2p and /http move the same 200 MiB blob
// between two processes on loopback, as between two daemons: a flocon blob
// stream (the transport the nodes pick on a LAN: TCP, TLS, yamux) and plain
// HTTP of the same file; /libp2p-quic is the blob stream over QUIC.
// BenchmarkP2PFirstByte is the time to the first byte from a peer (lookup +
// stream). The serving side runs in a child process (benchServerEnv): with
// both ends in one Go scheduler the sender's work delayed the receiver's
// goroutines by a millisecond and more, which no pair of daemons sees.
// BenchmarkP2PLookupMiss is what a miss on every peer adds before the
// mirrors; BenchmarkP2PAnnounced20k is the memory of 20,000 announced blobs.

const (
	benchBlobSize      = 200 << 20
	benchFirstByteSize = 1 << 20
)

// benchPeer is the serving daemon of the throughput and first-byte
// benches, in a child process: its blobs, its addresses, its HTTP server.
type benchPeer struct {
	big, small cid.Cid
	tcp, quic  peer.AddrInfo // the node, by one transport each
	url        string        // the big blob over plain HTTP
	stdin      io.Closer     // held open: the child ends when it closes
	pid        int           // the child's, for its CPU time
}

var (
	benchPeerOnce sync.Once
	benchPeerVal  *benchPeer
	benchPeerErr  error
)

// startBenchPeer starts the child process once per bench binary.
func startBenchPeer(b *testing.B) *benchPeer {
	b.Helper()
	benchPeerOnce.Do(func() { benchPeerVal, benchPeerErr = spawnBenchPeer() })
	if benchPeerErr != nil {
		b.Fatal(benchPeerErr)
	}
	return benchPeerVal
}

// benchServerEnv makes the test binary the serving daemon of the benches:
// it serves the blobs of the directory named by the variable.
const benchServerEnv = "FLOCON_P2P_BENCH_SERVER"

func spawnBenchPeer() (*benchPeer, error) {
	dir, err := os.MkdirTemp("", "flocon-p2p-bench-")
	if err != nil {
		return nil, err
	}
	st := &memStore{dir: dir}
	var cids []cid.Cid
	for i, size := range []int{benchBlobSize, benchFirstByteSize} {
		data := storetest.RandomBytes(uint64(42+i), size)
		sum := sha256.Sum256(data)
		c, err := verify.CIDFromSHA256(sum[:])
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(st.path(c), data, 0o444); err != nil {
			return nil, err
		}
		cids = append(cids, c)
	}
	bp := &benchPeer{big: cids[0], small: cids[1]}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), benchServerEnv+"="+dir)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	// The child lives as long as this process: it exits when its stdin
	// closes, which the kernel does when this process ends.
	bp.stdin, bp.pid = stdin, cmd.Process.Pid
	sc := bufio.NewScanner(stdout)
	var lines []string
	for len(lines) < 3 && sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) < 3 {
		return nil, fmt.Errorf("bench peer: %d lines of 3 (%v)", len(lines), sc.Err())
	}
	for i, ai := range []*peer.AddrInfo{&bp.tcp, &bp.quic} {
		a, err := peer.AddrInfoFromString(lines[i])
		if err != nil {
			return nil, fmt.Errorf("bench peer address %q: %w", lines[i], err)
		}
		*ai = *a
	}
	bp.url = lines[2] + "/" + bp.big.String()
	return bp, nil
}

// runBenchServer is the child: a node serving every blob of dir over
// libp2p (TCP and QUIC on loopback) and HTTP; it prints its TCP address,
// its QUIC address and its HTTP base URL, then serves until stdin closes.
func runBenchServer(dir string) int {
	st := &memStore{dir: dir, blobs: map[cid.Cid]int64{}, sigs: map[cid.Cid][]byte{},
		meta: map[string][]byte{}, grow: map[cid.Cid]*memGrowing{}, entries: map[cid.Cid]repodb.Entry{}}
	entries, err := os.ReadDir(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for _, e := range entries {
		c, err := cid.Decode(e.Name())
		if info, ierr := e.Info(); err == nil && ierr == nil {
			st.blobs[c] = info.Size()
		}
	}
	dataDir, err := os.MkdirTemp("", "flocon-p2p-bench-node-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dataDir)
	defer os.RemoveAll(dir)
	h, err := newHost(Config{
		DataDir:     dataDir,
		ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"},
		DisableDHT:  true,
	}, st)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	srv := &http.Server{Handler: http.FileServer(http.Dir(dir))}
	go func() { _ = srv.Serve(ln) }()
	for _, proto := range []int{ma.P_TCP, ma.P_QUIC_V1} {
		for _, a := range h.h.Addrs() {
			if _, err := a.ValueForProtocol(proto); err == nil {
				fmt.Printf("%s/p2p/%s\n", a, h.h.ID())
				break
			}
		}
	}
	fmt.Printf("http://%s\n", ln.Addr())
	_, _ = io.Copy(io.Discard, os.Stdin)
	_ = srv.Close()
	cancel()
	if err := <-done; err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func BenchmarkP2PThroughput(b *testing.B) {
	bp := startBenchPeer(b)
	for _, tt := range []struct {
		name   string
		listen string
		to     peer.AddrInfo
	}{
		{"libp2p", "/ip4/127.0.0.1/tcp/0", bp.tcp},
		{"libp2p-quic", "/ip4/127.0.0.1/udp/0/quic-v1", bp.quic},
	} {
		b.Run(tt.name, func(b *testing.B) {
			self := startNode(b, newMemStore(b), func(c *Config) { c.ListenAddrs = []string{tt.listen} })
			if err := self.s.h.Connect(context.Background(), tt.to); err != nil {
				b.Fatal(err)
			}
			src := &peerSource{s: self.s, p: tt.to.ID}
			b.SetBytes(benchBlobSize)
			cpu := bp.startCPU()
			b.ResetTimer()
			for b.Loop() {
				if n, err := src.Fetch(context.Background(), bp.big, 0, io.Discard); err != nil || n != benchBlobSize {
					b.Fatalf("fetch: %d, %v", n, err)
				}
			}
			cpu.report(b)
		})
	}
	// http reads as before (io.Discard's ReadFrom: 8 KiB per read(2));
	// http-1m reads 1 MiB at a time like the blob receiver (copyBody), the
	// fairer baseline.
	for _, tt := range []struct {
		name string
		buf  int
	}{{"http", 0}, {"http-1m", chunkSize}} {
		b.Run(tt.name, func(b *testing.B) {
			client := &http.Client{Transport: &http.Transport{}}
			defer client.CloseIdleConnections()
			var buf []byte
			if tt.buf > 0 {
				buf = make([]byte, tt.buf)
			}
			b.SetBytes(benchBlobSize)
			cpu := bp.startCPU()
			defer cpu.report(b)
			for b.Loop() {
				resp, err := client.Get(bp.url)
				if err != nil {
					b.Fatal(err)
				}
				var n int64
				if buf != nil {
					n, err = io.CopyBuffer(struct{ io.Writer }{io.Discard}, resp.Body, buf)
				} else {
					n, err = io.Copy(io.Discard, resp.Body)
				}
				resp.Body.Close()
				if err != nil || n != benchBlobSize {
					b.Fatalf("http: %d, %v", n, err)
				}
			}
		})
	}
}

// benchCPU is the CPU time (user + system) of both ends of a bench: this
// process (the receiver) and the bench peer's child (the sender).
type benchCPU struct {
	bp           *benchPeer
	recv0, send0 time.Duration
}

func (bp *benchPeer) startCPU() benchCPU {
	return benchCPU{bp: bp, recv0: selfCPU(), send0: procCPU(bp.pid)}
}

// report adds the CPU per op of each end: ms-cpu-recv/op and ms-cpu-send/op.
func (c benchCPU) report(b *testing.B) {
	n := float64(max(b.N, 1))
	b.ReportMetric(float64(selfCPU()-c.recv0)/1e6/n, "ms-cpu-recv/op")
	b.ReportMetric(float64(procCPU(c.bp.pid)-c.send0)/1e6/n, "ms-cpu-send/op")
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU is the CPU time of process pid from /proc (clock ticks of 10 ms).
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:]) // after "pid (comm) "
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

func BenchmarkP2PFirstByte(b *testing.B) {
	bp := startBenchPeer(b)
	self := startNode(b, newMemStore(b))
	if err := self.s.h.Connect(context.Background(), bp.tcp); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		srcs := self.peerSources(context.Background(), bp.small)
		if len(srcs) != 1 {
			b.Fatal("no source")
		}
		w := &firstByteWriter{}
		ctx, cancel := context.WithCancel(context.Background())
		w.cancel = cancel
		_, _ = srcs[0].Fetch(ctx, bp.small, 0, w)
		cancel()
		if !w.got {
			b.Fatal("no byte")
		}
	}
}

// firstByteWriter stops the transfer at the first byte.
type firstByteWriter struct {
	got    bool
	cancel func()
}

func (w *firstByteWriter) Write(p []byte) (int, error) {
	w.got = true
	w.cancel()
	return len(p), nil
}

func BenchmarkP2PLookupMiss(b *testing.B) {
	for _, peers := range []int{1, 5} {
		b.Run(fmt.Sprintf("peers=%d", peers), func(b *testing.B) {
			self := startNode(b, newMemStore(b))
			for range peers {
				connectB(b, self, startNode(b, newMemStore(b)))
			}
			c := cidOf(b, []byte("nobody has it"))
			b.ResetTimer()
			for b.Loop() {
				if srcs := self.peerSources(context.Background(), c); len(srcs) != 0 {
					b.Fatal("unexpected source")
				}
			}
		})
	}
}

func BenchmarkP2PAnnounced20k(b *testing.B) {
	for b.Loop() {
		runtime.GC()
		before := rssBytes()
		var ms0 runtime.MemStats
		runtime.ReadMemStats(&ms0)
		st := newMemStore(b)
		tn := startNode(b, st)
		for i := range 20000 {
			_ = tn.s.LAN().Announce(context.Background(), cidOf(b, []byte(strconv.Itoa(i))))
		}
		runtime.GC()
		var ms1 runtime.MemStats
		runtime.ReadMemStats(&ms1)
		b.ReportMetric(float64(rssBytes())/(1<<20), "MiB-rss")
		b.ReportMetric(float64(int64(ms1.HeapInuse)-int64(ms0.HeapInuse))/(1<<20), "MiB-heap-added")
		_ = before
		if tn.s.announced.len() != 20000 {
			b.Fatal("announced set incomplete")
		}
	}
}

// rssBytes is this process's resident set size (Linux).
func rssBytes() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func connectB(b *testing.B, from, to *testNode) {
	b.Helper()
	if err := from.s.h.Connect(context.Background(), to.addrInfo()); err != nil {
		b.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(to.s.h.Network().ConnsToPeer(from.id())) == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
}
