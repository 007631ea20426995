#!/usr/bin/env bash
# bench-verify.sh [MB]: time one verification of a big signed package, side by side:
#   sha256sum (the floor), gpgv (what pacman's gpgme does), flocon verify (sha256 +
#   signature + trust + .PKGINFO identity, in one pass), for SHA-512 and SHA-256 signatures.
# Everything (key, keyring folder, package) is generated in a temp dir; needs gpg, gpgv, zstd, go.
set -euo pipefail
MB=${1:-200}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
T=$(mktemp -d /tmp/fbv.XXXXXX) # short: gpg-agent sockets break on long paths
export GNUPGHOME=$T/g
cleanup() { gpgconf --homedir "$GNUPGHOME" --kill all >/dev/null 2>&1 || true; rm -rf "$T"; }
trap cleanup EXIT
mkdir -m 700 "$GNUPGHOME"

echo "building flocon..." >&2
(cd "$ROOT" && go build -o /tmp/flocon ./cmd/flocon)

echo "generating key and a ${MB} MiB package..." >&2
gpg --batch --quiet --pinentry-mode loopback --passphrase '' \
	--quick-gen-key "Bench Packager <bench@example.org>" ed25519 sign never 2>/dev/null
FPR=$(gpg --with-colons --list-keys bench@example.org | awk -F: '/^fpr/ {print $10; exit}')
mkdir "$T/keyring" "$T/pkg"
gpg --armor --export "$FPR" > "$T/keyring/bench.gpg"
echo "$FPR:4:" > "$T/keyring/bench-trusted" # a master: valid without certifications
: > "$T/keyring/bench-revoked"
gpg --dearmor < "$T/keyring/bench.gpg" > "$T/kr.gpg" # gpgv wants a binary keyring

PKG=$T/big-1.0-1-any.pkg.tar.zst
printf 'pkgname = big\npkgbase = big\npkgver = 1.0-1\narch = any\nsize = %d\n' $((MB << 20)) > "$T/pkg/.PKGINFO"
head -c "${MB}M" /dev/urandom > "$T/pkg/payload"
(cd "$T/pkg" && tar -cf - .PKGINFO payload) | zstd -q -1 -T0 -o "$PKG"
rm "$T/pkg/payload"
gpg --batch --quiet --digest-algo SHA512 --detach-sign -o "$T/sig512" "$PKG"
gpg --batch --quiet --digest-algo SHA256 --detach-sign -o "$T/sig256" "$PKG"
cat "$PKG" > /dev/null # page cache: measure CPU, not the disk
SIZE=$(stat -c %s "$PKG")

run() { # label command...: best of 3 wall-clock seconds
	local best=999999 s e t
	for _ in 1 2 3; do
		s=$(date +%s.%N)
		"${@:2}" > /dev/null 2>&1 || { echo "$1: FAILED: ${*:2}" >&2; return 1; }
		e=$(date +%s.%N)
		t=$(echo "$e - $s" | bc -l)
		if (($(echo "$t < $best" | bc -l))); then best=$t; fi
	done
	printf '%-34s %8.3f s %9.1f MB/s\n' "$1" "$best" "$(echo "$SIZE / $best / 1000000" | bc -l)"
}

printf '%s: %d bytes, %s\n' "$(basename "$PKG")" "$SIZE" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
run "sha256sum" sha256sum "$PKG"
run "gpgv (SHA-512 sig)" gpgv --keyring "$T/kr.gpg" "$T/sig512" "$PKG"
run "flocon verify (SHA-512 sig)" /tmp/flocon verify --keyring "$T/keyring" --sig "$T/sig512" "$PKG"
run "gpgv (SHA-256 sig)" gpgv --keyring "$T/kr.gpg" "$T/sig256" "$PKG"
run "flocon verify (SHA-256 sig)" /tmp/flocon verify --keyring "$T/keyring" --sig "$T/sig256" "$PKG"
