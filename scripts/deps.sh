#!/usr/bin/env bash
# deps.sh: install the Debian packages the test suite needs when they are
# missing (the real pacman client, the Arch keyring, gpg, makepkg tooling,
# nginx for the benchmark, iproute2 and nftables (NAT routers) for the
# network-namespace tests, chromium to render the status page).
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have pacman     || need+=(pacman-package-manager)
have makepkg    || need+=(makepkg)
[ -f /usr/share/keyrings/archlinux.gpg ] || [ -d /usr/share/pacman/keyrings ] || need+=(archlinux-keyring)
have gpg        || need+=(gnupg)
have gpgv       || need+=(gpgv)
have zstd       || need+=(zstd)
have bsdtar     || need+=(libarchive-tools)
have fakeroot   || need+=(fakeroot)
have xz         || need+=(xz-utils)
have bzip2      || need+=(bzip2)
have ip         || need+=(iproute2)
have nft        || need+=(nftables)
have nginx      || need+=(nginx)
have curl       || need+=(curl)
have chromium   || need+=(chromium)
have systemd-analyze || need+=(systemd)

if ((${#need[@]} == 0)); then
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "deps.sh: missing Debian packages: ${need[*]} (run as root, or install them; tests needing them will skip)" >&2
	exit 0
fi
echo "deps.sh: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
