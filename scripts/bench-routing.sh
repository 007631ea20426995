#!/usr/bin/env bash
# bench-routing.sh: the DHT at scale, as a table (node/p2p BenchmarkRoutingScale):
# N real libp2p hosts (TCP, TLS, yamux on loopback) in one process, each
# bootstrapped from the first only, B blobs held by each; one re-provide
# round on every node, 300 lookups of held blobs, 100 of unknown ones.
# Prints lookup p50/p99 (hit and miss), routing state per node, and
# announce, lookup and kad-dht upkeep traffic per node per hour.
# Usage: scripts/bench-routing.sh [nodes (100)] [blobs per node (20000)]
# Run it alone on the machine: lookup latency tracks the CPU it gets.
# Profiling knobs (env): FLOCON_BENCH_HEAPPROFILE0 / FLOCON_BENCH_HEAPPROFILE
# write the live heap before / after the round (diff them with pprof -base),
# FLOCON_BENCH_CPUPROFILE profiles the lookups, FLOCON_BENCH_TRACE=1 prints
# one line per lookup (time, record queries, new connections, GC cycles).
set -euo pipefail
cd "$(dirname "$0")/.."
FLOCON_BENCH_NODES=${1:-100} FLOCON_BENCH_BLOBS=${2:-20000} \
	go test -run '^$' -bench '^BenchmarkRoutingScale$' -benchtime 1x -timeout 60m ./node/p2p/ |
	grep -E '^(\||routing scale|Benchmark|ok|FAIL|---|trace|\s+scale_bench)'
