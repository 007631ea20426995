#!/usr/bin/env bash
# bench-routing.sh: the DHT at scale, as a table (node/p2p BenchmarkRoutingScale):
# N hosts on loopback in one process (default 30; 100 did not converge here, see the report), each bootstrapped from the
# first only, B blobs announced per host (default 20), 300 random lookups;
# lookup p50/p99, heap per host, traffic per provide and per lookup, and
# those scaled to 20,000 blobs per host re-provided hourly.
# Usage: scripts/bench-routing.sh [nodes] [blobs]
set -euo pipefail
cd "$(dirname "$0")/.."
FLOCON_BENCH_NODES=${1:-30} FLOCON_BENCH_BLOBS=${2:-20} \
	go test -run '^$' -bench '^BenchmarkRoutingScale$' -benchtime 1x -timeout 30m ./node/p2p/ |
	grep -E '^(\||routing scale|Benchmark|ok|FAIL)'
