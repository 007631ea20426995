#!/usr/bin/env bash
# bench-p2p.sh: the peer path benchmarks of node/ as a table.
#   (1) 200 MiB blob from a peer (libp2p stream: TCP, TLS, yamux, as LAN
#       peers connect; and over QUIC) vs plain HTTP of the same file between
#       the same two processes (loopback);
#   (2) time to first byte from a peer (have lookup + blob stream);
#   (3) time a miss on every peer adds before the mirrors;
#   (4) upstream bytes when 3 machines ask for one cold package at once;
#   (5) memory with 20,000 announced blobs.
# Usage: scripts/bench-p2p.sh [benchtime of (1) and (5), default 3x]
#        (FIRSTBYTE_ROUNDS, default 200x, is the benchtime of (2) and (3))
set -euo pipefail
cd "$(dirname "$0")/.."
bt=${1:-3x}
out=$(go test -run '^$' -bench 'P2PThroughput|P2PAnnounced' -benchtime "$bt" ./node/p2p/)
# Latencies are short and noisy: many rounds (the first one sets up streams).
out+=$'\n'$(go test -run '^$' -bench 'P2PFirstByte|P2PLookupMiss' -benchtime "${FIRSTBYTE_ROUNDS:-200x}" ./node/p2p/)
herd=$(go test -count=1 -v -run '^TestLANSingleFlightConcurrent$' ./node/ | grep -o 'herd: .*' || echo 'herd: FAILED')
out+=$'\n'"$herd"
echo "$out" | grep -E '^(Benchmark|ok|FAIL)' >&2
echo "$out" | awk '
/^BenchmarkP2PThroughput\/libp2p-quic/ { for (i=1;i<=NF;i++) if ($i=="MB/s") quic=$(i-1); next }
function cpu(   i, r, s) { for (i=1;i<=NF;i++) { if ($i=="ms-cpu-send/op") s=$(i-1); if ($i=="ms-cpu-recv/op") r=$(i-1) }; return sprintf("%.0f + %.0f ms", s, r) }
/^BenchmarkP2PThroughput\/libp2p/ { for (i=1;i<=NF;i++) if ($i=="MB/s") p2p=$(i-1); p2pcpu=cpu() }
/^BenchmarkP2PThroughput\/http-1m/ { for (i=1;i<=NF;i++) if ($i=="MB/s") http1m=$(i-1); http1mcpu=cpu(); next }
/^BenchmarkP2PThroughput\/http/   { for (i=1;i<=NF;i++) if ($i=="MB/s") http=$(i-1); httpcpu=cpu() }
/^BenchmarkP2PFirstByte/          { ttfb=$3/1e6 }
/^BenchmarkP2PLookupMiss\/peers=1/ { miss1=$3/1e6 }
/^BenchmarkP2PLookupMiss\/peers=5/ { miss5=$3/1e6 }
/^herd: /                         { herd=$0; sub(/^herd: /, "", herd) }
/^BenchmarkP2PAnnounced20k/       { for (i=1;i<=NF;i++) { if ($i=="MiB-rss") rss=$(i-1); if ($i=="MiB-heap-added") heap=$(i-1) } }
END {
  printf "%-44s %12s\n", "measure", "value"
  printf "%-44s %9.0f MB/s\n", "(1) 200 MiB from a peer, libp2p stream", p2p
  printf "%-44s %9.0f MB/s\n", "(1) same file, plain HTTP", http
  printf "%-44s %12.2f\n", "(1) ratio libp2p / HTTP (aim >= 0.7)", p2p/http
  printf "%-44s %s\n", "(1) CPU per blob, sender + receiver: libp2p", p2pcpu
  printf "%-44s %s\n", "(1) CPU per blob, sender + receiver: HTTP", httpcpu
  printf "%-44s %9.0f MB/s\n", "(1b) HTTP read 1 MiB at a time", http1m
  printf "%-44s %12.2f\n", "(1b) libp2p / that HTTP", p2p/http1m
  printf "%-44s %s\n", "(1b) CPU per blob, sender + receiver", http1mcpu
  printf "%-44s %9.0f MB/s\n", "(1) same blob over QUIC (not used on a LAN)", quic
  printf "%-44s %9.2f ms\n", "(2) time to first byte from a peer", ttfb
  printf "%-44s %9.2f ms\n", "(3) miss on 1 peer before mirrors", miss1
  printf "%-44s %9.2f ms\n", "(3) miss on 5 peers before mirrors", miss5
  printf "%-44s %s\n", "(4) 3 machines, one cold package at once", herd
  printf "%-44s %9.1f MiB\n", "(5) process RSS, 20,000 announced blobs", rss
  printf "%-44s %9.1f MiB\n", "(5) heap added by 20,000 announced blobs", heap
}'
