#!/usr/bin/env bash
# test.sh: the whole test suite, as CI runs it: install what the tests need,
# then formatting and vet checks, unit tests with the race detector, and the
# end-to-end tests (real pacman, real daemons, network namespaces as root).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/deps.sh

echo "== gofmt"
unformatted=$(gofmt -l . | grep -v '^vendor/' || true)
if [ -n "$unformatted" ]; then
	echo "gofmt would change:" >&2
	echo "$unformatted" >&2
	exit 1
fi

echo "== go vet"
go vet ./...

echo "== unit tests (-race)"
go test -race -timeout 15m $(go list ./... | grep -v /test/e2e)

echo "== e2e tests"
go test -timeout 20m -v -count=1 ./test/e2e/... 2>&1 | tee /tmp/flocon-e2e.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|SKIP|panic)|skip' || true
test "${PIPESTATUS[0]}" -eq 0
