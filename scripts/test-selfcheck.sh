#!/usr/bin/env bash
# test-selfcheck.sh: proves that scripts/test.sh fails when a test fails.
# A wrapper named `go` stands first on PATH: it passes every call to the real
# go, except `go test` of the package named by FAIL_PKG, where it prints a
# failing test and exits 1. test.sh must then exit non-zero. One run fails
# the unit step, one the e2e step; a control run with no failure must pass
# (with the slow steps replaced by a no-op so the check stays quick).
set -euo pipefail
cd "$(dirname "$0")/.."

real_go=$(command -v go)
work=$(mktemp -d -t flocon-selfcheck.XXXXXX)
trap 'rm -rf "$work"' EXIT

cat >"$work/go" <<WRAP
#!/usr/bin/env bash
# fake go for test-selfcheck.sh
if [ "\$1" = test ]; then
	for a in "\$@"; do
		case "\$a" in
		*"\${FAIL_PKG:-no-such-package}"*)
			echo "--- FAIL: TestDeliberate (0.00s)"
			echo "FAIL"
			exit 1 ;;
		esac
	done
	# Not the failing step: pretend the tests passed, quickly.
	echo "ok  	fake	0.001s"
	exit 0
fi
exec "$real_go" "\$@"
WRAP
chmod +x "$work/go"

run() { # run FAIL_PKG: test.sh's exit status with the fake go
	local status=0
	PATH="$work:$PATH" FLOCON_SKIP_DEPS=1 FAIL_PKG="$1" ./scripts/test.sh >"$work/out" 2>&1 || status=$?
	echo "$status"
}

fail=0
if [ "$(run ./test/e2e/...)" -eq 0 ]; then
	echo "selfcheck: test.sh exited 0 although an e2e test failed" >&2
	fail=1
fi
if [ "$(run /store)" -eq 0 ]; then
	echo "selfcheck: test.sh exited 0 although a unit test failed" >&2
	fail=1
fi
if [ "$(run no-such-package)" -ne 0 ]; then
	echo "selfcheck: test.sh failed although every test passed:" >&2
	cat "$work/out" >&2
	fail=1
fi
if [ "$fail" -ne 0 ]; then
	exit 1
fi
echo "selfcheck: test.sh fails when a unit or e2e test fails, passes otherwise"
