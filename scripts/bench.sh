#!/usr/bin/env bash
# bench.sh: flocon's foundation benchmark (`make bench`). Measures, in one run
# on this machine, flocon beside Debian's nginx serving the same files from
# disk (the limit here); the same nginx, on a second port, is flocon's
# upstream mirror, and that port's access log counts upstream fetches. Each
# row measures nginx right beside flocon so both see the same machine load.
# Prints a markdown table at the end; exits 1 when a row failed or a check
# (one upstream fetch per file, byte-identical bodies) did not hold.
#
# Rows: cold and warm 200 MiB, 8 concurrent clients on one cold file (wall
# time + upstream fetches, which must be 1), a client joining a download in
# flight (time to its first byte), 200 x 50 KiB over one keep-alive
# connection cold and warm, flocon's peak RSS (VmHWM, p2p on) and idle RSS (each split anonymous + file),
# and the peer path (scripts/bench-p2p.sh). Each row shows flocon as a ratio
# to nginx measured beside it, next to the goal of issue #11 and whether it
# is met (absolute times swing 2-3x on a shared machine; ratios much less).
#
# Environment:
#   BIG_MB [200]  SMALL_N [200]  SMALL_KB [50]  WARM_RUNS [5] (median of)  CLIENTS [8]
#   JOINERS [5]: clients joining the download of row 4 one after another
#       (the first reads it whole, the others their first bytes); the row
#       shows the median of their first bytes, the log lists them all
#   BENCH_CACHE [~/.cache/flocon-bench]: generated test repos are kept there,
#       keyed by the generator's hash and the sizes ("" = always regenerate)
#   BENCH_OUT []: directory that receives the table, logs and profiles
#   BENCH_PROFILE []: 1 = record flocon with `perf record -g` during its rows
#       and write the hottest symbols to BENCH_OUT (or print them)
#   BENCH_STRACE []: 1 = count the daemon's system calls (`strace -c -f`)
#       during each row and write them to BENCH_OUT (or print them); slows
#       the daemon down: not for the timings of the same run
#   BENCH_VERIFY [auto]: run scripts/bench-verify.sh too when it exists (0 = no)
#   BENCH_P2P [1]: run scripts/bench-p2p.sh for the peer-path rows (0 = no)
#   IDLE_WAIT [3]: seconds the daemon rests before its idle RSS is read
#   MAKE_REPO [test/e2e/testdata/make-repo.sh]: the signed-repo generator
#   PKG_ZSTD []: zstd flags of the generated packages, e.g. "--ultra -20" as
#       makepkg (every Arch package's frame then declares a 32 MiB window);
#       slow for big packages: use with a small BIG_MB
#   BENCH_REPO []: use this already generated repo (make-repo.sh OUTDIR) as is
#   FLOCON_BIN []: use this binary instead of building ./cmd/flocon
#   FLOCON_ARGS []: more `flocon serve` flags, e.g. "--keep-versions 0" (word-split)
#   BENCH_ROWS [1 2 3 4 5]: the rows to run (rows 6-7 always report); e.g.
#       BENCH_ROWS=5 BIG_MB=1 BENCH_P2P=0 BENCH_VERIFY=0 for the small-file rows
#       alone, in seconds (the big rows then show "err" and the run exits 1)
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
ROOT=$(pwd)

BIG_MB=${BIG_MB:-200}
SMALL_N=${SMALL_N:-200}
SMALL_KB=${SMALL_KB:-50}
WARM_RUNS=${WARM_RUNS:-5}
CLIENTS=${CLIENTS:-8}
JOINERS=${JOINERS:-5}
BENCH_CACHE=${BENCH_CACHE-${XDG_CACHE_HOME:-$HOME/.cache}/flocon-bench}
BENCH_OUT=${BENCH_OUT:-}
BENCH_PROFILE=${BENCH_PROFILE:-}
BENCH_STRACE=${BENCH_STRACE:-}
BENCH_VERIFY=${BENCH_VERIFY:-auto}
BENCH_P2P=${BENCH_P2P:-1}
IDLE_WAIT=${IDLE_WAIT:-3}
BENCH_ROWS=${BENCH_ROWS:-1 2 3 4 5}
row_on() { [[ " $BENCH_ROWS " == *" $1 "* ]]; } # row_on N: row N is to run
MAKE_REPO=${MAKE_REPO:-$ROOT/test/e2e/testdata/make-repo.sh}
ARCH=x86_64
REPO=bench

log() { echo "bench.sh: $*" >&2; }
die() { log "$*"; exit 1; }

for t in nginx curl go awk sha256sum; do
	command -v "$t" >/dev/null || die "missing tool: $t (scripts/deps.sh installs it)"
done
[[ -f $MAKE_REPO ]] || die "missing repo generator $MAKE_REPO (set MAKE_REPO)"
[[ -z $BENCH_PROFILE ]] || command -v perf >/dev/null || die "BENCH_PROFILE needs perf (linux-perf)"
[[ -z $BENCH_STRACE ]] || command -v strace >/dev/null || die "BENCH_STRACE needs strace"

TMP=$(mktemp -d /tmp/flocon-bench.XXXXXX)
PIDS=()
cleanup() {
	local rc=$? p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	if ((rc != 0)) && [[ -f $TMP/flocon.log ]]; then
		log "last warnings and errors of the flocon log:"
		grep -E 'level=(WARN|ERROR)' "$TMP/flocon.log" | tail -n 10 >&2 || true
	fi
	rm -rf "$TMP"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------ build
log "building flocon and httpbench"
HB=$TMP/httpbench
go build -o "$HB" ./scripts/bench/httpbench
if [[ -n ${FLOCON_BIN:-} ]]; then
	FLOCON=$FLOCON_BIN
else
	FLOCON=$TMP/flocon
	# a daemon that does not build still leaves the nginx columns to show;
	# static, as the package builds it (cmd/flocon/dist/PKGBUILD): no libc
	# mapped, whose pages count in the RSS rows
	CGO_ENABLED=0 go build -trimpath -o "$FLOCON" ./cmd/flocon 2>"$TMP/build.err" ||
		{ head -n 20 "$TMP/build.err" >&2; log "flocon does not build: its rows will fail"; FLOCON=""; }
fi

# ------------------------------------------------------------------ test repo
# make_repo DIR: a signed mirror with the bench repo (big, c8big, joinbig and
# SMALL_N small packages), generated once per generator version and sizes.
make_repo() {
	local out=$1
	log "generating the signed test repo (${BIG_MB} MiB x 3 + ${SMALL_N} x ${SMALL_KB} KiB), about a minute"
	rm -rf "$out.partial"
	BIG_MB=$BIG_MB BENCH_SMALL=$SMALL_N BENCH_SMALL_KB=$SMALL_KB KEYS_DIR=$KEYS_DIR \
		bash "$MAKE_REPO" "$out.partial" >"$TMP/make-repo.log" 2>&1 ||
		{ tail -n 20 "$TMP/make-repo.log" >&2; die "make-repo.sh failed"; }
	mv "$out.partial" "$out"
}
# fixed keys (when the generator ships them) make the repo the same run to run
KEYS_DIR=$(dirname "$MAKE_REPO")/keys
[[ -f $KEYS_DIR/secret-keys.gpg ]] || KEYS_DIR=""
if [[ -n ${BENCH_REPO:-} ]]; then
	DATA=$BENCH_REPO
elif [[ -n $BENCH_CACHE ]]; then
	key=$( { cat "$MAKE_REPO" ${KEYS_DIR:+"$KEYS_DIR"/*}; echo "$BIG_MB $SMALL_N $SMALL_KB${PKG_ZSTD:+ $PKG_ZSTD}"; } |
		sha256sum | cut -c1-16)
	DATA=$BENCH_CACHE/repo-$key
	mkdir -p "$BENCH_CACHE"
	[[ -f $DATA/MANIFEST.tsv ]] || make_repo "$DATA"
else
	DATA=$TMP/repo
	make_repo "$DATA"
fi
MIRROR=$DATA/mirror
PKGDIR=$MIRROR/$REPO/os/$ARCH
[[ -d $PKGDIR ]] || die "$PKGDIR missing: the generator has no bench mode (BENCH_SMALL)"
pkgfile() { # pkgfile NAME -> file name of package NAME in the bench repo
	local f=("$PKGDIR/$1"-*-*-*.pkg.tar.zst)
	[[ -f ${f[0]} ]] || die "package $1 missing from $PKGDIR"
	echo "${f[0]##*/}"
}
BIG=$(pkgfile big); C8=$(pkgfile c8big); JOIN=$(pkgfile joinbig)
BIG_SIZE=$(stat -c %s "$PKGDIR/$BIG")
C8_SIZE=$(stat -c %s "$PKGDIR/$C8")
JOIN_SIZE=$(stat -c %s "$PKGDIR/$JOIN")
(cd "$PKGDIR" && printf '%s\n' small*.pkg.tar.zst) > "$TMP/small.txt"
(( $(wc -l < "$TMP/small.txt") == SMALL_N )) || die "want $SMALL_N small packages in $PKGDIR"
# keyring folder with only the NAME.gpg / -trusted / -revoked set
KEYRING=$TMP/keyring
mkdir -p "$KEYRING"
for f in "$DATA"/keyring/*-trusted; do
	n=${f##*/}; n=${n%-trusted}
	cp "$DATA/keyring/$n.gpg" "$DATA/keyring/$n-trusted" "$DATA/keyring/$n-revoked" "$KEYRING/"
done

# ------------------------------------------------------------------ nginx (the upstream)
# One nginx, two ports: UP is flocon's upstream mirror, whose access log
# counts upstream fetches; DIRECT serves the benchmark clients straight.
UP_PORT=$("$HB" freeport)
DIRECT_PORT=$("$HB" freeport)
NG=$TMP/nginx
mkdir -p "$NG"
NGINX_USER=""
(( EUID != 0 )) || NGINX_USER="user root root;" # workers must read the cache dir, which may be 0700
cat > "$NG/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes auto;
$NGINX_USER
pid $NG/nginx.pid;
error_log $NG/error.log warn;
events { worker_connections 1024; }
http {
	log_format bench '\$request \$status \$body_bytes_sent';
	client_body_temp_path $NG/body;
	proxy_temp_path $NG/proxy;
	fastcgi_temp_path $NG/fastcgi;
	uwsgi_temp_path $NG/uwsgi;
	scgi_temp_path $NG/scgi;
	sendfile on;
	tcp_nopush on;
	tcp_nodelay on;
	keepalive_timeout 65;
	keepalive_requests 100000;
	default_type application/octet-stream;
	root $MIRROR;
	server {
		listen 127.0.0.1:$UP_PORT;
		access_log $NG/upstream.log bench;
	}
	server {
		listen 127.0.0.1:$DIRECT_PORT;
		access_log off;
	}
}
EOF
nginx -p "$NG" -e "$NG/error.log" -c "$NG/nginx.conf" >"$NG/stderr.log" 2>&1 &
NG_PID=$!
PIDS+=("$NG_PID")
NGINX_URL=http://127.0.0.1:$DIRECT_PORT/$REPO/os/$ARCH
UPSTREAM="http://127.0.0.1:$UP_PORT/\$repo/os/\$arch"
for u in "$NGINX_URL" "http://127.0.0.1:$UP_PORT/$REPO/os/$ARCH"; do
	"$HB" wait -timeout 10s "$u/$REPO.db" || { cat "$NG/error.log" "$NG/stderr.log" >&2; die "nginx did not start"; }
done
# upstream_fetches FILE: GETs of FILE that the upstream answered with its body
upstream_fetches() {
	awk -v f="/$REPO/os/$ARCH/$1" '$1 == "GET" && $2 == f && ($4 == 200 || $4 == 206)' "$NG/upstream.log" | wc -l
}

# ------------------------------------------------------------------ helpers
median() { sort -g | awk '$1 != "err" {v[++n] = $1} END {if (n) print v[int((n + 1) / 2)]; else print "err"}'; }
kv() { # kv KEY "k=v k=v ..." -> v
	local pair
	for pair in $2; do [[ ${pair%%=*} != "$1" ]] || { echo "${pair#*=}"; return; }; done
	echo err
}
ms() { awk -v s="$1" 'BEGIN { if (s == "err" || s == "") print "err"; else printf "%.1f ms", s * 1000 }'; }
sec() { awk -v s="$1" 'BEGIN { if (s == "err" || s == "") print "err"; else printf "%.3f s", s }'; }
FAILS=()
fail() { FAILS+=("$*"); log "FAIL: $*"; }
# curl_time URL SIZE -> "TOTAL FIRSTBYTE" seconds, after checking status and size
curl_time() {
	local out code total first size
	out=$(curl -sS -o /dev/null --noproxy '*' \
		-w '%{http_code} %{time_total} %{time_starttransfer} %{size_download}' "$1") || { echo err err; return; }
	read -r code total first size <<<"$out"
	if [[ $code != 200 || $size != "$2" ]]; then log "GET $1: status $code, $size bytes (want $2)"; echo err err; return; fi
	echo "$total $first"
}
hb() { # hb ARGS... -> httpbench's key=value line, plus "error=1" when it failed
	"$HB" "$@" 2>>"$TMP/httpbench.err" || echo "error=1"
}
sha_ok() { # sha_ok URL FILE: the body at URL is byte-identical to FILE
	[[ $(curl -sS --noproxy '*' "$1" | sha256sum | cut -d' ' -f1) == "$(sha256sum < "$2" | cut -d' ' -f1)" ]]
}

# ------------------------------------------------------------------ flocon
FL_PID="" PERF_PID="" STRACE_PID="" FL_UP=0
DB_T="not fetched" START_RSS=err

start_flocon() {
	[[ -n $FLOCON ]] || return 1
	local EXTRA_ARGS=()
	read -ra EXTRA_ARGS <<<"${FLOCON_ARGS:-}"
	FL_PORT=$("$HB" freeport)
	cat > "$TMP/flocon.toml" <<-EOF
		# generated by scripts/bench.sh
		[[repo]]
		name = "$REPO"
		mirrors = ["$UPSTREAM"]
		sig_level = "required"
		keyring = "$KEYRING"
	EOF
	log "starting flocon on port $FL_PORT"
	# p2p on (its memory counts), alone: no mDNS, so other daemons on this
	# machine are never asked and every lookup is an immediate miss
	"$FLOCON" serve --config "$TMP/flocon.toml" --no-mdns --p2p-listen /ip4/127.0.0.1/tcp/0 \
		--listen "127.0.0.1:$FL_PORT" \
		--data-dir "$TMP/data" --mirror "$UPSTREAM" --keyring "$KEYRING" "${EXTRA_ARGS[@]}" >"$TMP/flocon.log" 2>&1 &
	FL_PID=$!
	PIDS+=("$FL_PID")
	FL_URL=http://127.0.0.1:$FL_PORT/$REPO/os/$ARCH
	local i
	for ((i = 0; ; i++)); do # up to 30 s, but no waiting on a daemon that already died
		"$HB" wait -timeout 1s "http://127.0.0.1:$FL_PORT/healthz" 2>/dev/null && break
		if ! kill -0 "$FL_PID" 2>/dev/null || ((i >= 30)); then
			log "flocon did not become healthy; its log:"; tail -n 20 "$TMP/flocon.log" >&2; return 1
		fi
	done
	# pacman -Sy first: the db tells flocon which packages exist and their sums
	DB_T=$(curl -sS -o /dev/null --noproxy '*' -w 'status %{http_code} in %{time_total} s' \
		"$FL_URL/$REPO.db" || echo "failed")
	[[ $DB_T == "status 200 "* ]] || { log "GET $REPO.db through flocon: $DB_T"; return 1; }
	START_RSS=$(rss_split)
}

# rss_split: the daemon's RSS now as "TOTAL MiB (ANON anon + FILE file)";
# the file part is mostly the executable's pages (ARCHITECTURE.md, Memory)
rss_split() {
	awk '/^(VmRSS|RssAnon|RssFile|RssShmem):/ {v[$1] = $2 / 1024}
		END {printf "%.1f MiB (%.1f anon + %.1f file)", v["VmRSS:"], v["RssAnon:"], v["RssFile:"] + v["RssShmem:"]}' \
		"/proc/$FL_PID/status" 2>/dev/null || echo err
}

# prof_start ROW / prof_stop: with BENCH_PROFILE, one perf recording of the
# daemon per row, so each row's hot spots stand on their own
prof_start() {
	((FL_UP)) || return 0
	if [[ -n $BENCH_STRACE ]]; then
		strace -c -f -p "$FL_PID" -o "$TMP/strace-$1.txt" 2>>"$TMP/perf.log" &
		STRACE_PID=$!
		PIDS+=("$STRACE_PID")
		sleep 0.5
	fi
	[[ -n $BENCH_PROFILE ]] || return 0
	perf record -F 999 -g -p "$FL_PID" -o "$TMP/perf-$1.data" >>"$TMP/perf.log" 2>&1 &
	PERF_PID=$!
	PIDS+=("$PERF_PID")
	sleep 0.5 # perf needs a moment to attach to every thread
}
prof_stop() {
	if [[ -n $STRACE_PID ]]; then
		kill -INT "$STRACE_PID" 2>/dev/null || true
		wait "$STRACE_PID" 2>/dev/null || true
		STRACE_PID=""
	fi
	[[ -n $PERF_PID ]] || return 0
	kill -INT "$PERF_PID" 2>/dev/null || true
	wait "$PERF_PID" 2>/dev/null || true
	PERF_PID=""
}

# row_start ROW / row_end: flocon's CPU time (user + system) over a row, in
# CPU[ROW]; less sensitive than wall time to the load of a shared machine
declare -A CPU
CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() {
	if ((FL_UP)) && [[ -r /proc/$FL_PID/stat ]]; then awk '{print $14 + $15}' "/proc/$FL_PID/stat"; else echo 0; fi
}
row_start() { ROW=$1; ROW_T0=$(cpu_ticks); prof_start "$1"; }
row_end() {
	prof_stop
	((FL_UP)) || return 0
	CPU[$ROW]=$(($(cpu_ticks) - ROW_T0))
	# the row that first reached the final peak is where the memory goes
	local hwm
	hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$FL_PID/status" 2>/dev/null || echo 0)
	if ((hwm > PEAK_KB)); then PEAK_KB=$hwm PEAK_ROW=$ROW PEAK_SPLIT=$(rss_split); fi
}
PEAK_KB=0 PEAK_ROW="" PEAK_SPLIT=""
cpu() { # cpu ROW [RUNS]: flocon CPU seconds of ROW, per run
	[[ -n ${CPU[$1]:-} ]] || { echo "—"; return; }
	awk -v t="${CPU[$1]}" -v hz="$CLK_TCK" -v n="${2:-1}" 'BEGIN { printf "%.2f s", t / hz / n }'
}

# ng_ticks / ng_add ROW T0: nginx's CPU time (master and workers) spent on
# its direct measurements, in NGCPU[ROW]
declare -A NGCPU
ng_ticks() {
	local p t=0
	for p in "$NG_PID" $(pgrep -P "$NG_PID"); do
		[[ -r /proc/$p/stat ]] && t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
	done
	echo "$t"
}
ng_add() { NGCPU[$1]=$((${NGCPU[$1]:-0} + $(ng_ticks) - $2)); }
ngcpu() { # ngcpu ROW [RUNS]: " (CPU x s)" per run, or nothing
	[[ -n ${NGCPU[$1]:-} ]] || return 0
	awk -v t="${NGCPU[$1]}" -v hz="$CLK_TCK" -v n="${2:-1}" 'BEGIN { printf " (CPU %.2f s)", t / hz / n }'
}

# Each row measures nginx direct right beside flocon, so both see the same
# load on this shared machine; warm rows alternate the two, median of N.
if start_flocon; then FL_UP=1; else fail "flocon did not start"; fi
cat "$PKGDIR"/* >/dev/null # page cache: nginx and flocon's upstream read from memory
R1_NG=err R1_FL=err R1_FIRST=err R1_UP=err R2_NG=err R2_FL=err
R3_NG=err R3_FL=err R3_UP=err R4_NG=err R4_FL=err R4_INFLIGHT=err R4_UP=err
R5_NG=err R5A_FL=err R5A_UP=err R5A_FAILED=err R5B_FL=err SHA=err HWM=err RSS=err

if row_on 1; then
log "row 1: cold ${BIG_MB} MiB"
t=$(ng_ticks)
R1_NG=$(curl_time "$NGINX_URL/$BIG" "$BIG_SIZE" | cut -d' ' -f1)
ng_add 1 "$t"
if ((FL_UP)); then
	row_start 1-cold
	read -r R1_FL R1_FIRST <<<"$(curl_time "$FL_URL/$BIG" "$BIG_SIZE")"
	row_end
fi
fi

if row_on 2; then
log "row 2: warm ${BIG_MB} MiB, $WARM_RUNS runs each"
row_start 2-warm
for ((i = 0; i < WARM_RUNS; i++)); do
	t=$(ng_ticks)
	curl_time "$NGINX_URL/$BIG" "$BIG_SIZE" | cut -d' ' -f1 >>"$TMP/r2-ng"
	ng_add 2 "$t"
	((FL_UP)) && curl_time "$FL_URL/$BIG" "$BIG_SIZE" | cut -d' ' -f1 >>"$TMP/r2-fl"
done
row_end
R2_NG=$(median <"$TMP/r2-ng")
((FL_UP)) && R2_FL=$(median <"$TMP/r2-fl")
((FL_UP)) && R1_UP=$(upstream_fetches "$BIG")
fi

if row_on 3; then
log "row 3: $CLIENTS clients on one cold ${BIG_MB} MiB file"
t=$(ng_ticks)
line=$(hb concurrent -n "$CLIENTS" -size "$C8_SIZE" "$NGINX_URL/$C8")
log "row 3, nginx: $line"
R3_NG=$(kv wall "$line")
ng_add 3 "$t"
if ((FL_UP)); then
	row_start 3-concurrent
	line=$(hb concurrent -n "$CLIENTS" -size "$C8_SIZE" "$FL_URL/$C8")
	log "row 3, flocon: $line"
	R3_FL=$(kv wall "$line")
	row_end
	R3_UP=$(upstream_fetches "$C8")
fi
fi

if row_on 4; then
log "row 4: a client joining a download in flight"
line=$(hb join -after $((JOIN_SIZE / 8)) -size "$JOIN_SIZE" -joiners "$JOINERS" "$NGINX_URL/$JOIN")
log "row 4, nginx: $line"
R4_NG=$(kv firstbyte "$line")
if ((FL_UP)); then
	row_start 4-join
	line=$(hb join -after $((JOIN_SIZE / 8)) -size "$JOIN_SIZE" -joiners "$JOINERS" "$FL_URL/$JOIN")
	row_end
	log "row 4, flocon: $line"
	R4_FL=$(kv firstbyte "$line")
	R4_INFLIGHT=$(kv inflight "$line")
	R4_UP=$(upstream_fetches "$JOIN")
fi
fi

if row_on 5; then
log "row 5: $SMALL_N x $SMALL_KB KiB over one keep-alive connection"
if ((FL_UP)); then
	row_start 5a-small-cold
	line=$(hb seq -base "$FL_URL" -list "$TMP/small.txt")
	row_end
	R5A_FL=$(kv wall "$line")
	R5A_FAILED=$(kv failed "$line")
	R5A_UP=0
	while read -r f; do R5A_UP=$((R5A_UP + $(upstream_fetches "$f"))); done <"$TMP/small.txt"
fi
row_start 5b-small-warm
for ((i = 0; i < WARM_RUNS; i++)); do
	t=$(ng_ticks)
	kv wall "$(hb seq -base "$NGINX_URL" -list "$TMP/small.txt")" >>"$TMP/r5-ng"
	ng_add 5 "$t"
	((FL_UP)) && kv wall "$(hb seq -base "$FL_URL" -list "$TMP/small.txt")" >>"$TMP/r5-fl"
done
row_end
R5_NG=$(median <"$TMP/r5-ng")
((FL_UP)) && R5B_FL=$(median <"$TMP/r5-fl")
fi

if ((FL_UP)); then
	SHA=ok
	sha_ok "$FL_URL/$BIG" "$PKGDIR/$BIG" || SHA=MISMATCH
fi
if [[ -n $FL_PID && -r /proc/$FL_PID/status ]]; then
	HWM=$(awk '/^VmHWM:/ {printf "%.1f", $2 / 1024}' "/proc/$FL_PID/status")
	sleep "$IDLE_WAIT" # idle: what the daemon keeps between upgrades
	RSS=$(rss_split)
fi

# ------------------------------------------------------------------ peer path
P2P_RATIO=err P2P_FIRST=err P2P_LINE="not run (BENCH_P2P=0)"
if [[ $BENCH_P2P != 0 ]]; then
	log "peer path: scripts/bench-p2p.sh"
	if P2P_OUT=$("$ROOT/scripts/bench-p2p.sh" 2>"$TMP/bench-p2p.err"); then
		P2P_RATIO=$(awk '/ratio libp2p/ {print $NF}' <<<"$P2P_OUT")
		P2P_FIRST=$(awk '/time to first byte from a peer/ {print $(NF-1) / 1000}' <<<"$P2P_OUT")
		P2P_LINE=$(awk '/\(1\) (200 MiB|same file)/ {printf "%s%s %s", sep, $(NF-1), $NF; sep = " vs "}' <<<"$P2P_OUT")
	else
		tail -n 5 "$TMP/bench-p2p.err" >&2
		fail "scripts/bench-p2p.sh failed"
	fi
fi

# ------------------------------------------------------------------ verdicts
# measured VAR ROW: VAR must hold a figure when ROW ran (BENCH_ROWS)
measured() { ! row_on "$2" || [[ ${!1} != err ]] || fail "no measurement for $1"; }
for v in R1 R2 R3 R4 R5; do
	measured "${v}_NG" "${v#R}"
done
if ((FL_UP)); then
	for v in R1 R2 R3 R4; do
		measured "${v}_FL" "${v#R}"
	done
	measured R5A_FL 5
	measured R5B_FL 5
	[[ $HWM != err ]] || fail "no measurement for HWM"
	[[ $SHA == ok ]] || fail "bytes through flocon differ from the mirror's ($SHA)"
	if row_on 1; then
		[[ $R1_UP == 1 ]] || fail "row 1-2: $R1_UP upstream fetches of $BIG, want 1"
	fi
	if row_on 3; then
		[[ $R3_UP == 1 ]] || fail "row 3: $R3_UP upstream fetches of $C8, want 1"
	fi
	if row_on 4; then
		[[ $R4_UP == 1 ]] || fail "row 4: $R4_UP upstream fetches of $JOIN, want 1"
		[[ $R4_INFLIGHT == true ]] || fail "row 4: the second client did not join the download in flight"
	fi
	if row_on 5; then
		[[ $R5A_FAILED == 0 ]] || fail "row 5a: $R5A_FAILED of $SMALL_N cold small files failed"
		[[ $R5A_UP == "$SMALL_N" ]] || fail "row 5a: $R5A_UP upstream fetches for $SMALL_N files"
	fi
fi

# ------------------------------------------------------------------ table
# ratio A B: A / B as "1.23x"; goal VALUE OP LIMIT: "met" or "NOT met"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "err" || b == "err" || a == "" || b == "" || b == 0) print "err"; else printf "%.2fx", a / b }'; }
goal() {
	awk -v v="${1%x}" -v op="$2" -v lim="$3" 'BEGIN {
		if (v == "err" || v == "") { print "no data"; exit }
		ok = (op == "<=") ? (v + 0 <= lim + 0) : (v + 0 >= lim + 0)
		print ok ? "met" : "NOT met"
	}'
}
mib() { if [[ $1 == err ]]; then echo err; else echo "$1 MiB"; fi; }
R1_RATIO=$(ratio "$R1_FL" "$R1_NG")
R2_RATIO=$(ratio "$R2_FL" "$R2_NG")
R3_RATIO=$(ratio "$R3_FL" "$R3_NG")
R5A_RATIO=$(ratio "$R5A_FL" "$R5_NG")
R5B_RATIO=$(ratio "$R5B_FL" "$R5_NG")
R3_GOAL=$(goal "$R3_RATIO" "<=" 1.0)
[[ $R3_UP == 1 ]] || R3_GOAL="NOT met ($R3_UP fetches)"
TABLE=$(cat <<EOF
## flocon beside nginx — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')

| row | flocon | nginx direct | ratio | goal (issue #11) | | flocon CPU |
|---|---|---|---|---|---|---|
| 1. cold ${BIG_MB} MiB (first byte; upstream fetches over rows 1–2) | $(sec "$R1_FL") ($(ms "$R1_FIRST"); $R1_UP) | $(sec "$R1_NG")$(ngcpu 1) | $R1_RATIO | ≤ 1.8x | $(goal "$R1_RATIO" "<=" 1.8) | $(cpu 1-cold) |
| 2. warm ${BIG_MB} MiB, median of $WARM_RUNS | $(sec "$R2_FL") | $(sec "$R2_NG")$(ngcpu 2 "$WARM_RUNS") | $R2_RATIO | (≤ 1.0x) | $(goal "$R2_RATIO" "<=" 1.0) | $(cpu 2-warm "$WARM_RUNS") |
| 3. $CLIENTS clients, one cold ${BIG_MB} MiB file: wall (upstream fetches) | $(sec "$R3_FL") ($R3_UP) | $(sec "$R3_NG")$(ngcpu 3) | $R3_RATIO | ≤ 1.0x, 1 fetch | $R3_GOAL | $(cpu 3-concurrent) |
| 4. clients joining a download in flight: first byte, median of $JOINERS (in flight; upstream fetches) | $(ms "$R4_FL") ($R4_INFLIGHT; $R4_UP) | $(ms "$R4_NG") | — | ≤ 1 ms | $(goal "$R4_FL" "<=" 0.001) | $(cpu 4-join) |
| 5a. $SMALL_N x ${SMALL_KB} KiB, one keep-alive connection, cold (upstream fetches; failed) | $(sec "$R5A_FL") ($R5A_UP; $R5A_FAILED) | $(sec "$R5_NG") | $R5A_RATIO | ≤ 3.5x | $(goal "$R5A_RATIO" "<=" 3.5) | $(cpu 5a-small-cold) |
| 5b. $SMALL_N x ${SMALL_KB} KiB, one keep-alive connection, warm, median of $WARM_RUNS | $(sec "$R5B_FL") | $(sec "$R5_NG")$(ngcpu 5 "$WARM_RUNS") | $R5B_RATIO | ≤ 1.0x | $(goal "$R5B_RATIO" "<=" 1.0) | $(cpu 5b-small-warm "$WARM_RUNS") |
| 6. flocon peak RSS over rows 1–5, p2p on (row that set it; RSS at that row's end) | $(mib "$HWM") (${PEAK_ROW:-?}; ${PEAK_SPLIT:-?}) | — | — | ≤ 24 MiB | $(goal "$HWM" "<=" 24) | — |
| 6b. flocon idle RSS: after start + db; after the rows and ${IDLE_WAIT} s of rest | $START_RSS; $RSS | — | — | (reported) | | — |
| 7. peer path: 200 MiB blob, libp2p stream vs plain HTTP, same hosts | $P2P_LINE | — | ${P2P_RATIO}x | ≥ 0.7x | $(goal "$P2P_RATIO" ">=" 0.7) | — |
| 7b. peer path: first byte from a peer (lookup + stream) | $(ms "$P2P_FIRST") | — | — | ≤ 2 ms | $(goal "$P2P_FIRST" "<=" 0.002) | — |

flocon: \`serve --no-mdns --p2p-listen /ip4/127.0.0.1/tcp/0${FLOCON_ARGS:+ $FLOCON_ARGS}\` (p2p on, no peers), db fetched first (${DB_T}); nginx ${NGINX_VERSION:-$(nginx -v 2>&1 | cut -d/ -f2)} with sendfile, also flocon's upstream. Ratio: flocon / nginx direct measured beside it in this run (warm rows: medians).
Checks: warm body through flocon byte-identical to the mirror's: $SHA. flocon CPU: user + system time of the daemon over the row, per run; nginx's in parentheses. Rows 7 and 7b: scripts/bench-p2p.sh (two processes on loopback).
EOF
)
if ((${#FAILS[@]})); then
	TABLE+=$'\n\n'"FAILED: $(printf '%s; ' "${FAILS[@]}")"
fi

if [[ $BENCH_VERIFY != 0 && -x $ROOT/scripts/bench-verify.sh ]]; then
	log "running scripts/bench-verify.sh"
	# its result lines only (not its build and gpg chatter)
	VERIFY_OUT=$("$ROOT/scripts/bench-verify.sh" 2>&1 | grep -E 'MB/s|bytes,|FAILED') ||
		VERIFY_OUT="bench-verify.sh failed: ${VERIFY_OUT:-no result}"
	TABLE+=$'\n\n### verify throughput (scripts/bench-verify.sh)\n\n```\n'"$VERIFY_OUT"$'\n```'
fi

# perf_summary DATA: the hottest symbols by self time, then by inclusive time
perf_summary() {
	echo "== self time"
	perf report -i "$1" --stdio --no-children --sort symbol -g none 2>/dev/null |
		grep '%' | grep -v '^#' | head -n 25 || true
	echo "== inclusive time of flocon's own (user space) functions"
	perf report -i "$1" --stdio --children --sort symbol -g none 2>/dev/null |
		grep -F '[.]' | head -n 40 || true
}
if [[ -n $BENCH_OUT ]]; then
	mkdir -p "$BENCH_OUT"
	echo "$TABLE" >"$BENCH_OUT/table.md"
	cp "$TMP/flocon.log" "$NG/upstream.log" "$BENCH_OUT/" 2>/dev/null || true
	[[ ! -s $TMP/httpbench.err ]] || cp "$TMP/httpbench.err" "$BENCH_OUT/"
fi
if [[ -n $BENCH_PROFILE ]]; then
	for d in "$TMP"/perf-*.data; do
		[[ -f $d ]] || continue
		row=${d##*/perf-}; row=${row%.data}
		if [[ -n $BENCH_OUT ]]; then
			perf_summary "$d" >"$BENCH_OUT/perf-$row.txt"
			cp "$d" "$BENCH_OUT/"
		else
			{ echo "### flocon CPU profile, row $row"; perf_summary "$d" | head -n 30; } >&2
		fi
	done
	[[ -z $BENCH_OUT ]] || log "profiles (perf-ROW.txt, perf-ROW.data) in $BENCH_OUT"
fi
for d in "$TMP"/strace-*.txt; do
	[[ -f $d ]] || continue
	if [[ -n $BENCH_OUT ]]; then cp "$d" "$BENCH_OUT/"; else { echo "### ${d##*/}"; head -n 30 "$d"; } >&2; fi
done
[[ ! -s $TMP/httpbench.err ]] || { log "client errors:"; sort -u "$TMP/httpbench.err" | head -n 10 >&2; }

echo
echo "$TABLE"
((${#FAILS[@]} == 0)) || exit 1
