#!/usr/bin/env bash
# test.sh: the whole test suite, as CI runs it: install what the tests need,
# then formatting and vet checks, unit tests with the race detector, and the
# end-to-end tests (real pacman, real daemons, network namespaces as root).
#
# Every step's exit status is the script's: a failing test fails the run.
# scripts/test-selfcheck.sh proves it with a go that fails on purpose.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${FLOCON_SKIP_DEPS:-}" ]; then
	./scripts/deps.sh
fi

echo "== gofmt"
unformatted=$(gofmt -l . | grep -v '^vendor/' || true)
if [ -n "$unformatted" ]; then
	echo "gofmt would change:" >&2
	echo "$unformatted" >&2
	exit 1
fi

echo "== go vet"
go vet ./...

echo "== make install (staging root)"
./scripts/install-check.sh

echo "== unit tests (-race)"
go test -race -timeout 15m $(go list ./... | grep -v /test/e2e)

echo "== e2e tests"
# The full verbose log goes to a file of our own (never a fixed name in the
# shared /tmp); the terminal gets the summary lines. The status is go test's
# own, taken before anything else runs.
e2e_log=$(mktemp -t flocon-e2e.XXXXXX.log)
# What tests keep for people (the status page screenshot, t.ArtifactDir).
e2e_artifacts=${FLOCON_E2E_ARTIFACTS:-$(mktemp -d -t flocon-e2e-artifacts.XXXXXX)}
e2e_status=0
go test -timeout 20m -v -count=1 -artifacts -outputdir "$e2e_artifacts" ./test/e2e/... >"$e2e_log" 2>&1 || e2e_status=$?
grep -E '^(=== RUN|\s*--- |PASS|FAIL|ok|SKIP|panic)|skip' "$e2e_log" || true
if [ "$e2e_status" -ne 0 ]; then
	echo "== e2e tests FAILED (exit $e2e_status); last 80 lines of $e2e_log:" >&2
	tail -n 80 "$e2e_log" >&2
	exit "$e2e_status"
fi
echo "== e2e log: $e2e_log"
echo "== e2e artifacts: $e2e_artifacts/_artifacts"
