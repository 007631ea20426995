#!/usr/bin/env bash
# makepkg-check.sh: build cmd/flocon/dist/PKGBUILD with the real makepkg in a
# scratch copy of this tree and check the package: the binary (with its
# version), the systemd unit, the example config and the completions.
#
# makepkg refuses to run as root: as root, the build runs as `nobody` with a
# vendor/ directory made from root's module cache (no network needed).
# Everything lives in one mktemp dir, removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in makepkg fakeroot bsdtar go; do
	if ! command -v "$tool" >/dev/null; then
		echo "makepkg-check: $tool is missing (scripts/deps.sh installs it)" >&2
		exit 2
	fi
done

work=$(mktemp -d -t flocon-makepkg.XXXXXX)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"
tree="$work/flocon"
mkdir -p "$tree" "$work/home" "$work/out"
# The tree as committed plus local changes (not ignored files).
git ls-files -z -co --exclude-standard | tar -c --null -T - | tar -x -C "$tree"

run_as=()
if [ "$(id -u)" -eq 0 ]; then
	(cd "$tree" && go mod vendor)
	chown -R nobody:nogroup "$work"
	run_as=(setpriv --reuid=nobody --regid=nogroup --clear-groups --)
fi

start=$(date +%s)
(
	cd "$tree/cmd/flocon/dist"
	env -i PATH="$(dirname "$(command -v go)"):/usr/local/bin:/usr/bin:/bin" HOME="$work/home" \
		GOCACHE="$work/home/gocache" GOPATH="$work/home/go" GOTOOLCHAIN=local GOPROXY=off \
		BUILDDIR="$work/build" PKGDEST="$work/out" SRCDEST="$work/build" LOGDEST="$work/build" \
		"${run_as[@]}" makepkg --nodeps --noconfirm --cleanbuild
)
echo "makepkg-check: makepkg took $(($(date +%s) - start)) s"

pkg=$(ls "$work"/out/flocon-*.pkg.tar.*)
listing=$(bsdtar -tf "$pkg")
fail=0
for want in usr/bin/flocon usr/lib/systemd/system/flocon.service usr/share/doc/flocon/flocon.example.toml \
	usr/share/bash-completion/completions/flocon usr/share/zsh/site-functions/_flocon \
	usr/share/fish/vendor_completions.d/flocon.fish .PKGINFO; do
	if ! grep -qx "$want" <<<"$listing"; then
		echo "makepkg-check: $pkg lacks $want" >&2
		fail=1
	fi
done
bsdtar -xf "$pkg" -C "$work" usr/bin/flocon usr/lib/systemd/system/flocon.service .PKGINFO
pkgver=$(sed -n 's/^pkgver = //p' "$work/.PKGINFO")
version=$("$work/usr/bin/flocon" --version)
if [ "$version" != "flocon $pkgver" ]; then
	echo "makepkg-check: flocon --version says '$version', the package is $pkgver" >&2
	fail=1
fi
if ! grep -qx 'ExecStart=/usr/bin/flocon serve' "$work/usr/lib/systemd/system/flocon.service"; then
	echo "makepkg-check: the unit does not start /usr/bin/flocon" >&2
	fail=1
fi
[ "$fail" -eq 0 ] && echo "makepkg-check: ok: $(basename "$pkg") ($version)"
exit "$fail"
