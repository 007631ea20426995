#!/usr/bin/env bash
# install-check.sh: `make install` into a staging root puts the binary, the
# unit (pointing at the installed binary), the example config and the shell
# completions where a distribution expects them, and the installed binary
# runs. make check runs it; makepkg-check.sh (make package-check) is the
# slower check of the PKGBUILD.
set -euo pipefail
cd "$(dirname "$0")/.."

root=$(mktemp -d -t flocon-install.XXXXXX)
bin=$(mktemp -d -t flocon-install-bin.XXXXXX)
trap 'rm -rf "$root" "$bin"' EXIT

make -s install DESTDIR="$root" PREFIX=/usr UNITDIR=/usr/lib/systemd/system BIN="$bin/flocon" >/dev/null

fail=0
for f in usr/bin/flocon usr/lib/systemd/system/flocon.service usr/share/doc/flocon/flocon.example.toml \
	usr/share/bash-completion/completions/flocon usr/share/zsh/site-functions/_flocon \
	usr/share/fish/vendor_completions.d/flocon.fish; do
	if [ ! -s "$root/$f" ]; then
		echo "install-check: $f is missing or empty" >&2
		fail=1
	fi
done
if ! grep -q '^ExecStart=/usr/bin/flocon ' "$root/usr/lib/systemd/system/flocon.service"; then
	echo "install-check: the unit does not start /usr/bin/flocon" >&2
	fail=1
fi
if ! "$root/usr/bin/flocon" --version >/dev/null; then
	echo "install-check: the installed binary does not run" >&2
	fail=1
fi
[ "$fail" -eq 0 ] || exit 1
echo "install-check: make install lays out binary, unit, example config and completions"
