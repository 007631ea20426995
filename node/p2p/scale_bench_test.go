package p2p

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/metrics"

	"github.com/flocon/flocon/node/routing/routingtest"
)

// BenchmarkRoutingScale starts FLOCON_BENCH_NODES hosts (default 30) on
// loopback in this process, every one bootstrapped from the first only;
// each announces FLOCON_BENCH_BLOBS blobs (default 20) on the DHT; then
// random nodes look up random blobs of others. It prints a table: lookup
// latency (first provider, checked with a have query) p50/p99, heap and
// routing state per node, traffic per provide and per lookup, and those
// scaled to 20,000 blobs per node re-provided hourly. Run with
// -benchtime=1x (scripts/bench-routing.sh).
func BenchmarkRoutingScale(b *testing.B) {
	nodes, blobs := envInt("FLOCON_BENCH_NODES", 30), envInt("FLOCON_BENCH_BLOBS", 20)
	for b.Loop() {
		runScale(b, nodes, blobs)
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

type scaleNode struct {
	tn *testNode
	bw *metrics.BandwidthCounter
	cs []cid.Cid
}

func runScale(b *testing.B, n, blobs int) {
	heap0 := heapNow()
	nodes := make([]scaleNode, n)
	for i := range nodes {
		bw := metrics.NewBandwidthCounter()
		opts := []func(*Config){func(c *Config) {
			c.HaveTimeout = 150 * time.Millisecond
			c.libp2pOpts = []libp2p.Option{libp2p.BandwidthReporter(bw)}
		}}
		if i > 0 {
			opts = append(opts, withBootstrap(nodes[0].tn))
		}
		nodes[i] = scaleNode{tn: startNode(b, newMemStore(b), opts...), bw: bw}
	}
	waitUntil(b, "routing tables", 5*time.Minute, func() bool {
		for _, sn := range nodes {
			if sn.tn.s.dht.d.RoutingTable().Size() < min(n-1, 4) {
				return false
			}
		}
		return true
	})
	heapHosts := heapNow()
	traffic0 := totalBytes(nodes)
	start := time.Now()
	for i := range nodes {
		st := nodes[i].tn.st.(*memStore)
		for j := range blobs {
			c := routingtest.CID(b, fmt.Sprintf("node %d blob %d", i, j))
			st.mu.Lock()
			st.blobs[c] = 1
			st.mu.Unlock()
			nodes[i].cs = append(nodes[i].cs, c)
			_ = nodes[i].tn.s.dht.Announce(context.Background(), c)
		}
	}
	waitUntil(b, "every provide", 20*time.Minute, func() bool {
		for _, sn := range nodes {
			sn.tn.s.dht.mu.Lock()
			k := len(sn.tn.s.dht.provided)
			sn.tn.s.dht.mu.Unlock()
			if k < blobs {
				return false
			}
		}
		return true
	})
	provideTime := time.Since(start)
	provideBytes := totalBytes(nodes) - traffic0
	heapProvided := heapNow()

	const lookups = 300
	lat := make([]time.Duration, 0, lookups)
	misses := 0
	traffic1 := totalBytes(nodes)
	for range lookups {
		from, to := rand.IntN(n), rand.IntN(n)
		if from == to {
			to = (to + 1) % n
		}
		c := nodes[to].cs[rand.IntN(blobs)]
		t0 := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		found := false
		for pr := range nodes[from].tn.s.dht.FindProviders(ctx, c) {
			if pr.ID == nodes[to].tn.id() && !found {
				found = true
				lat = append(lat, time.Since(t0))
				cancel()
			}
		}
		cancel()
		if !found {
			misses++
		}
	}
	lookupBytes := totalBytes(nodes) - traffic1

	slices.Sort(lat)
	pct := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(p*float64(len(lat))))]
	}
	perProvide := float64(provideBytes) / float64(n*blobs)
	perLookup := float64(lookupBytes) / float64(lookups)
	// Records, peerstore entries, buffers; signed: at small B it is within
	// the GC's noise and may come out negative.
	statePerNode := (float64(heapProvided) - float64(heapHosts)) / (1 << 20) / float64(n)
	scale := 20000 / float64(blobs)
	fmt.Printf("\nrouting scale: %d nodes on loopback (one process), %d blobs each on the DHT\n", n, blobs)
	fmt.Printf("| measure | value |\n|---|---|\n")
	fmt.Printf("| provide all (%d records) | %s |\n", n*blobs, provideTime.Round(time.Millisecond))
	fmt.Printf("| lookup, first live provider: p50 / p99 | %s / %s (%d lookups, %d not found) |\n",
		pct(0.50).Round(time.Microsecond), pct(0.99).Round(time.Microsecond), lookups, misses)
	fmt.Printf("| heap per node: hosts up / after provides | %.1f / %.1f MiB |\n",
		(float64(heapHosts)-float64(heap0))/(1<<20)/float64(n), (float64(heapProvided)-float64(heap0))/(1<<20)/float64(n))
	fmt.Printf("| routing state per node (heap after provides - before) | %.3f MiB |\n", statePerNode)
	fmt.Printf("| traffic per provide / per lookup (all nodes, in+out) | %.1f KiB / %.1f KiB |\n", perProvide/1024, perLookup/1024)
	fmt.Printf("| scaled to 20k blobs per node: routing state per node | %.1f MiB |\n", statePerNode*scale)
	fmt.Printf("| scaled to 20k blobs per node: re-provide traffic per node per hour | %.1f MiB |\n", perProvide*20000/(1<<20))
	b.ReportMetric(float64(pct(0.50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(pct(0.99).Microseconds())/1000, "p99-ms")
}

func totalBytes(nodes []scaleNode) int64 {
	var t int64
	for _, sn := range nodes {
		st := sn.bw.GetBandwidthTotals()
		t += st.TotalIn + st.TotalOut
	}
	return t
}

func heapNow() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func waitUntil(b *testing.B, what string, limit time.Duration, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
