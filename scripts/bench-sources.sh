#!/usr/bin/env bash
# bench-sources.sh: the source-choice bench of issue 7 as a table.
# Machines in network namespaces (root needed), the mirror behind a 100 Mbit
# htb class per site, a 20 Mbit WAN between sites, the real pacman with
# ParallelDownloads = 5 through flocon with default flags:
#   one machine alone; 5 machines at once; 5 starting 1 s apart; 5 with the
#   first (the one the others stream from) killed with SIGKILL as soon as
#   its /metrics show it sending to two peers while it still downloads;
#   two sites of 3 machines, site B upgrading after site A (B bootstraps A).
# Columns: bytes over the package set (upstream; for two sites: into site B
# from the mirror plus over the WAN), slowest machine over one machine alone
# (two sites: B's slowest over A's), longest wait for a byte seen by a pacman;
# for kill -9 runs, when the kill came, how many peers streamed from the
# killed machine then, and how many survivor downloads lost it ("churn";
# 0 means the row measured no churn); "link ratio" is what crossed the
# shaped mirror link over the alone run's (the bytes ratio counts what the
# mirror wrote to its sockets, buffers of cancelled requests included).
# Each scenario runs FLOCON_BENCH_RUNS times (default 3; rounds of every
# scenario, so a burst of load on a shared machine hits them all): the table
# has every run, with the load and where the CPU went, then the worst run of
# each. FLOCON_BENCH_ONLY=<scenario prefix> reruns one scenario;
# FLOCON_BENCH_MACHINE_CPU=<cores> caps each machine (its daemon and its
# pacman) with a cpu cgroup, alone or not (default: the host's cores / 5,
# so five machines at once fit the host as five real machines would; 0:
# uncapped, where one alone gets every core and five share them).
# FLOCON_BENCH_SET=issue runs issue 7's own package set (33 packages,
# 204.5 MB) instead of the default 27 packages, 52.5 MB (shorter rounds).
# FLOCON_BENCH_LOGS=<dir> keeps each run's daemon logs, pacman downloads
# (start, first byte, end) and mirror requests. FLOCON_BENCH_P2P=quic has the
# machines speak QUIC only (a SIGKILL then resets nothing: the kill row
# measures how fast the survivors find the dead peer).
# Takes minutes; prerequisites as for the e2e tests (scripts/deps.sh). Run
# it alone on the machine: other benches or builds skew the figures.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(FLOCON_BENCH_SOURCES=1 go test -count=1 -timeout 60m -run '^TestBenchSources$' -v ./test/e2e/ 2>&1) || {
	echo "$out" | grep -E -- '--- FAIL|_test.go:[0-9]+:' | head -40 >&2
	echo "$out" | sed -n 's/^BENCH //p'
	exit 1
}
echo "$out" | grep -E '^\s+bench_sources_test.go' >&2 || true
echo "$out" | sed -n 's/^BENCH //p'
