#!/usr/bin/env bash
# fuzz.sh: run every fuzz target of the module for FUZZTIME each.
#
#   FUZZTIME [20s]   per target (go test -fuzztime: 20s, 5m, 10000x)
#   FUZZ_MATCH [.]   only targets whose "package Target" matches this regex
#
# Targets are discovered, not listed: `go test -list '^Fuzz'` in every
# package (test/e2e excluded), so a new target anywhere is picked up. Plain
# `go test` already runs every target's seed corpus (testdata/fuzz/...).
# A crash writes its input to PKG/testdata/fuzz/TARGET/: commit it as a
# regression seed with the fix. Exit status 1 when any target failed.
set -uo pipefail
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-20s}
FUZZ_MATCH=${FUZZ_MATCH:-.}
cd "$(dirname "$0")/.." || exit 1

pkgs=$($GO list ./... | grep -v /test/e2e) || exit 1
results=()
failed=0
for pkg in $pkgs; do
	targets=$($GO test -list '^Fuzz' "$pkg" 2>/dev/null | grep '^Fuzz') || continue
	for t in $targets; do
		[[ "$pkg $t" =~ $FUZZ_MATCH ]] || continue
		echo "== fuzz $pkg $t for $FUZZTIME" >&2
		start=$(date +%s)
		log=$(mktemp "${TMPDIR:-/tmp}/flocon-fuzz.XXXXXX")
		if $GO test -run '^$' -fuzz "^${t}\$" -fuzztime "$FUZZTIME" "$pkg" >"$log" 2>&1; then
			status=ok
		else
			status=FAIL
			failed=1
			cat "$log" >&2
		fi
		execs=$(grep -o 'execs: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
		rm -f "$log"
		results+=("$(printf '%-4s %-32s %-28s %8ss %10s' "$status" "${pkg#github.com/flocon/flocon/}" "$t" \
			"$(( $(date +%s) - start ))" "${execs:-?}")")
	done
done
printf '\n%-4s %-32s %-28s %9s %10s\n' STAT PACKAGE TARGET TIME EXECS
printf '%s\n' "${results[@]}"
exit $failed
