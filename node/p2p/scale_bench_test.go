package p2p

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/metrics"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"

	"github.com/flocon/flocon/node/routing/routingtest"
)

// Rates the per-hour traffic figures assume: lookups that reach the DHT
// (misses of the LAN) and new blobs, per node per hour.
const (
	benchLookupsPerHour  = 1000
	benchAnnouncePerHour = 200
	kadRefreshPerHour    = float64(time.Hour / kadRefresh) // kad-dht's routing-table refreshes
)

// BenchmarkRoutingScale starts FLOCON_BENCH_NODES real libp2p hosts
// (default 100; TCP, TLS, yamux on loopback, all in this process), every
// one bootstrapped from the first only, each holding FLOCON_BENCH_BLOBS
// blobs (default 20,000). It runs one re-provide round on every node, then
// random lookups of held blobs (first provider that answers its have
// query) and of unknown ones (misses), and prints a table: lookup p50/p99,
// routing state per node (heap growth of the round, and the records' own
// bytes), and announce, lookup and upkeep traffic per node per hour at the
// rates above. Run with -benchtime=1x (scripts/bench-routing.sh).
func BenchmarkRoutingScale(b *testing.B) {
	nodes, blobs := envInt("FLOCON_BENCH_NODES", 100), envInt("FLOCON_BENCH_BLOBS", 20000)
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
			c.HaveTimeout = 500 * time.Millisecond
			c.swarmOpts = []swarm.Option{swarm.WithMetrics(bw)}
		}}
		if i > 0 {
			opts = append(opts, withBootstrap(nodes[0].tn))
		}
		nodes[i] = scaleNode{tn: startNode(b, newMemStore(b), opts...), bw: bw}
	}
	waitUntil(b, "routing tables", 10*time.Minute, func() bool {
		for _, sn := range nodes {
			if sn.tn.s.dht.d.RoutingTable().Size() < min(n-1, dhtBucketSize) {
				return false
			}
		}
		return true
	})
	// Scheduled rounds come while the tables grow; let them settle so the
	// measured round is the only one.
	settled := func() []int {
		out := make([]int, n)
		for i, sn := range nodes {
			out[i] = sn.tn.s.dht.d.RoutingTable().Size()
		}
		return out
	}
	for before := settled(); ; {
		time.Sleep(minRoundGap)
		now := settled()
		if slices.Equal(before, now) {
			break
		}
		before = now
	}
	var rounds0 int64
	for _, sn := range nodes {
		rounds0 += sn.tn.s.dht.rounds.Load()
	}
	heapHosts := heapNow()

	// The blobs: in each store and offered, not provided yet.
	for i := range nodes {
		st := nodes[i].tn.st.(*memStore)
		st.mu.Lock()
		for j := range blobs {
			c := routingtest.CID(b, fmt.Sprintf("node %d blob %d", i, j))
			st.blobs[c] = 1
			nodes[i].cs = append(nodes[i].cs, c)
			nodes[i].tn.s.announced.add(c)
		}
		st.mu.Unlock()
	}
	heapBlobs := heapNow()
	writeHeapProfile(b, "FLOCON_BENCH_HEAPPROFILE0")
	conns0 := connsPerNode(nodes)

	// One re-provide round on every node, a few at a time.
	traffic0 := settledBytes(nodes)
	start := time.Now()
	parallel(len(nodes), 4, func(i int) { nodes[i].tn.s.dht.round(context.Background()) })
	roundTime := time.Since(start)
	roundBytes := settledBytes(nodes) - traffic0
	heapProvided := heapNow()
	writeHeapProfile(b, "FLOCON_BENCH_HEAPPROFILE")
	conns1 := connsPerNode(nodes)
	var records, sent, rounds int64
	for _, sn := range nodes {
		records += int64(sn.tn.s.dht.records.len())
		sent += sn.tn.s.dht.sent.Load()
		rounds += sn.tn.s.dht.rounds.Load()
	}

	// New blobs announced one by one: each goes out with the next batch.
	const fresh = 5
	traffic1 := settledBytes(nodes)
	for i := range nodes {
		for j := range fresh {
			c := routingtest.CID(b, fmt.Sprintf("node %d fresh %d", i, j))
			st := nodes[i].tn.st.(*memStore)
			st.mu.Lock()
			st.blobs[c] = 1
			st.mu.Unlock()
			_ = nodes[i].tn.s.dht.Announce(context.Background(), c)
		}
	}
	waitUntil(b, "fresh provides", 5*time.Minute, func() bool {
		var got int64
		for _, sn := range nodes {
			got += sn.tn.s.dht.sent.Load()
		}
		return got >= sent+int64(n*fresh*replication)*9/10
	})
	perFresh := float64(settledBytes(nodes)-traffic1) / float64(n*fresh)

	stopCPU := startCPUProfile(b, "FLOCON_BENCH_CPUPROFILE")
	gc0 := gcStats()
	hit, hitBytes, notFound := lookups(b, nodes, 300, true)
	miss, missBytes, _ := lookups(b, nodes, 100, false)
	gc1 := gcStats()
	stopCPU()

	// kad-dht's own upkeep: one routing-table refresh on every node.
	traffic2 := settledBytes(nodes)
	parallel(len(nodes), 8, func(i int) { <-nodes[i].tn.s.dht.d.ForceRefresh() })
	refreshBytes := float64(settledBytes(nodes)-traffic2) / float64(n)

	// Every byte is counted out at one node and in at another: half the
	// total is what a node sends (and receives).
	perNode := func(total float64) float64 { return total / 2 / float64(n) }
	statePerNode := (float64(heapProvided) - float64(heapBlobs)) / float64(n)
	roundPerNode := perNode(float64(roundBytes))
	announcePerHour := roundPerNode/reprovideInterval.Hours() + perNode(perFresh*float64(n))*benchAnnouncePerHour
	lookupPerHour := perNode(hitBytes*float64(n)) * benchLookupsPerHour
	fmt.Printf("\nrouting scale: %d real libp2p hosts on loopback (TCP+TLS+yamux, one process), %d blobs each; load %s\n",
		n, blobs, loadAvg())
	fmt.Printf("| measure | value |\n|---|---|\n")
	fmt.Printf("| nodes × blobs/node | %d × %d |\n", n, blobs)
	fmt.Printf("| lookup, first live provider: p50 / p99 | %s / %s (%d lookups, %d not found) |\n",
		pct(hit, 0.50), pct(hit, 0.99), len(hit)+notFound, notFound)
	fmt.Printf("| lookup of an unknown blob (miss): p50 / p99 | %s / %s (%d lookups) |\n", pct(miss, 0.50), pct(miss, 0.99), len(miss))
	fmt.Printf("| routing state per node: heap growth of the round | %.2f MiB |\n", statePerNode/(1<<20))
	fmt.Printf("| routing state per node: provider records (%d B each) | %.0f records, %.2f MiB |\n",
		recordBytes, float64(records)/float64(n), float64(records)*recordBytes/float64(n)/(1<<20))
	fmt.Printf("| heap per node: host up / blobs held (store, offer index) | %.1f / %.1f MiB |\n",
		(float64(heapHosts)-float64(heap0))/(1<<20)/float64(n), (float64(heapBlobs)-float64(heapHosts))/(1<<20)/float64(n))
	fmt.Printf("| re-provide round, all nodes (%d at a time; %d rounds ran, want %d) | %s, %.2f MiB sent per node |\n",
		4, rounds-rounds0, n, roundTime.Round(time.Millisecond), roundPerNode/(1<<20))
	fmt.Printf("| announce traffic sent per node per hour, as much received (round every %v + %d new blobs at %.1f KiB) | %.2f MiB |\n",
		reprovideInterval, benchAnnouncePerHour, perNode(perFresh*float64(n))/1024, announcePerHour/(1<<20))
	fmt.Printf("| lookup traffic sent per node per hour, as much received (%d lookups at %.1f KiB; a miss %.1f KiB) | %.2f MiB |\n",
		benchLookupsPerHour, perNode(hitBytes*float64(n))/1024, perNode(missBytes*float64(n))/1024, lookupPerHour/(1<<20))
	fmt.Printf("| kad-dht upkeep sent per node per hour (%.0f table refreshes at %.1f KiB) | %.2f MiB |\n",
		kadRefreshPerHour, refreshBytes/1024, refreshBytes*kadRefreshPerHour/(1<<20))
	fmt.Printf("| connections per node: before / after the round | %.1f / %.1f |\n", conns0, conns1)
	fmt.Printf("| GC during the lookups (share of CPU: since start) | %d cycles, %v paused (%.0f%%) |\n",
		gc1.NumGC-gc0.NumGC, time.Duration(gc1.PauseTotalNs-gc0.PauseTotalNs), 100*gc1.GCCPUFraction)
	b.ReportMetric(float64(pctDur(hit, 0.50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(pctDur(hit, 0.99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(statePerNode/(1<<20), "state-MiB/node")
}

// lookups runs count lookups from random nodes, of a blob another node
// holds (hit) or of one nobody has, one after another; it returns the
// latencies (to the first live provider, or to the end of a miss), the
// bytes per lookup (all nodes, in and out) and how many hits found nothing.
func lookups(b *testing.B, nodes []scaleNode, count int, hit bool) (lat []time.Duration, bytesPer float64, notFound int) {
	n := len(nodes)
	t0 := settledBytes(nodes)
	for i := range count {
		from, to := rand.IntN(n), rand.IntN(n)
		if from == to {
			to = (to + 1) % n
		}
		c := routingtest.CID(b, fmt.Sprintf("unknown %d %d", i, rand.Int()))
		if hit {
			c = nodes[to].cs[rand.IntN(len(nodes[to].cs))]
		}
		conns0, asks0, gcs0 := len(nodes[from].tn.s.h.Network().Conns()), nodes[from].tn.s.dht.asks.Load(), gcStats().NumGC
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		found := false
		for pr := range nodes[from].tn.s.dht.FindProviders(ctx, c) {
			if pr.ID == nodes[to].tn.id() && !found {
				found = true
				lat = append(lat, time.Since(start))
				cancel()
			}
		}
		cancel()
		took := time.Since(start)
		switch {
		case !hit:
			lat = append(lat, took)
		case !found:
			notFound++
		}
		if os.Getenv("FLOCON_BENCH_TRACE") != "" {
			fmt.Printf("trace hit=%v found=%v took=%v asks=%d conns=%+d gcs=%d\n", hit, found, took,
				nodes[from].tn.s.dht.asks.Load()-asks0, len(nodes[from].tn.s.h.Network().Conns())-conns0, gcStats().NumGC-gcs0)
		}
	}
	slices.Sort(lat)
	return lat, float64(settledBytes(nodes)-t0) / float64(count), notFound
}

func parallel(n, width int, f func(i int)) {
	sem := make(chan struct{}, width)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			f(i)
		})
	}
	wg.Wait()
}

func pctDur(lat []time.Duration, p float64) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	return lat[min(len(lat)-1, int(p*float64(len(lat))))]
}

func pct(lat []time.Duration, p float64) string {
	return pctDur(lat, p).Round(10 * time.Microsecond).String()
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil || len(b) < 14 {
		return "unknown"
	}
	return string(b[:14])
}

// settledBytes is the bytes all nodes sent and received, read once the
// counters caught up: libp2p's bandwidth counter adds what was marked to
// its total only at its next one-second sweep, so a total read right after
// a lookup missed up to the last second of traffic (a hundred misses took
// less than that, and read as 0 bytes).
func settledBytes(nodes []scaleNode) int64 {
	time.Sleep(1500 * time.Millisecond)
	return totalBytes(nodes)
}

func totalBytes(nodes []scaleNode) int64 {
	var t int64
	for _, sn := range nodes {
		st := sn.bw.GetBandwidthTotals()
		t += st.TotalIn + st.TotalOut
	}
	return t
}

// writeHeapProfile writes the live heap to the file named by env, if set.
func writeHeapProfile(b *testing.B, env string) {
	path := os.Getenv(env)
	if path == "" {
		return
	}
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		b.Fatal(err)
	}
}

// startCPUProfile profiles the CPU into the file named by env, if set,
// until the returned function is called.
func startCPUProfile(b *testing.B, env string) (stop func()) {
	path := os.Getenv(env)
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	return func() { pprof.StopCPUProfile(); _ = f.Close() }
}

func connsPerNode(nodes []scaleNode) float64 {
	var c int
	for _, sn := range nodes {
		c += len(sn.tn.s.h.Network().Conns())
	}
	return float64(c) / float64(len(nodes))
}

func gcStats() runtime.MemStats {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m
}

func heapNow() uint64 {
	runtime.GC()
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
