package p2p

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flocon/flocon/store/storetest"
)

// Benchmarks of the peer path (scripts/bench-p2p.sh prints them as a table):
//
//	go test -run '^$' -bench 'P2P' -benchtime 3x ./node/
//
// BenchmarkP2PThroughput/libp2p and /http move the same 200 MiB blob
// between two hosts on loopback: a flocon blob stream (TCP, Noise, yamux)
// and plain HTTP of the same file; BenchmarkP2PFirstByte is the time to the
// first byte from a peer (lookup + stream); BenchmarkP2PLookupMiss is what a
// miss on every peer adds before the mirrors; BenchmarkP2PAnnounced20k is
// the memory of 20,000 announced blobs.

const benchBlobSize = 200 << 20

func BenchmarkP2PThroughput(b *testing.B) {
	data := storetest.RandomBytes(42, benchBlobSize)
	st := newMemStore(b)
	c := st.addBlob(b, data)
	b.Run("libp2p", func(b *testing.B) {
		a, peerB := startNode(b, st), startNode(b, newMemStore(b))
		connectB(b, peerB, a)
		src := &peerSource{s: peerB.s, p: a.id()}
		b.SetBytes(benchBlobSize)
		b.ResetTimer()
		for b.Loop() {
			if n, err := src.Fetch(context.Background(), c, 0, io.Discard); err != nil || n != benchBlobSize {
				b.Fatalf("fetch: %d, %v", n, err)
			}
		}
	})
	b.Run("http", func(b *testing.B) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.ServeFile(w, r, st.path(c))
		})}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
		url := "http://" + ln.Addr().String() + "/blob"
		b.SetBytes(benchBlobSize)
		b.ResetTimer()
		for b.Loop() {
			resp, err := http.Get(url)
			if err != nil {
				b.Fatal(err)
			}
			n, err := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err != nil || n != benchBlobSize {
				b.Fatalf("http: %d, %v", n, err)
			}
		}
	})
}

func BenchmarkP2PFirstByte(b *testing.B) {
	st := newMemStore(b)
	c := st.addBlob(b, storetest.RandomBytes(43, 1<<20))
	a, peerB := startNode(b, st), startNode(b, newMemStore(b))
	connectB(b, peerB, a)
	b.ResetTimer()
	for b.Loop() {
		srcs := peerB.peerSources(context.Background(), c)
		if len(srcs) != 1 {
			b.Fatal("no source")
		}
		w := &firstByteWriter{}
		ctx, cancel := context.WithCancel(context.Background())
		w.cancel = cancel
		_, _ = srcs[0].Fetch(ctx, c, 0, w)
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
