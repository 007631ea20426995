#!/usr/bin/env bash
# make-repo.sh OUTDIR
#
# Build a throwaway, signed pacman mirror for flocon's e2e tests, offline, with
# the real Debian tools (bookworm: pacman-package-manager 6.0.2, gnupg 2.2.40,
# libarchive-tools, zstd).  Runs as root or as an ordinary user.  The Go
# harness (test/e2e/fixtures_test.go) runs it once per cache key with
# KEYS_DIR=test/e2e/testdata/keys so the output is the same run to run.
#
# Refusal fixtures (MANIFEST.tsv "expect" column): corrupt-sig (db sums match
# the corrupted bytes, signature does not), corrupt-sum (bytes changed after
# repo-add), revokedpkg, untrustedpkg, unknownkeypkg, unsignedpkg and
# renamedpkg: the validly signed bytes of hello-1.0-1 published under another
# package name, with a db entry whose sums and %PGPSIG% match those bytes, so
# only a .PKGINFO identity check can refuse it.
#
# Result (see OUTDIR/MANIFEST.tsv and OUTDIR/README.txt):
#   OUTDIR/keyring/$KEYRING_NAME.gpg            armored public keys (like archlinux.gpg)
#   OUTDIR/keyring/$KEYRING_NAME-trusted        "FPR:4:" lines for the master keys
#   OUTDIR/keyring/$KEYRING_NAME-revoked        fingerprints pacman-key must disable
#   OUTDIR/keys/                                exported SECRET keys (+ revocation cert),
#                                               reusable with KEYS_DIR=... for byte-identical output
#   OUTDIR/mirror/{core,extra}/os/$ARCH/        packages, .sig files, repo-add databases
#   OUTDIR/snapshots/core/<n>-<ver>/core.{db,files}   older states of core (retention tests)
#   OUTDIR/MANIFEST.tsv                         one row per package file, with expected verdict
#
# Environment knobs (defaults in brackets):
#   ARCH [x86_64]   BIG_MB [50] (0 = no big package)   ALGO [ed25519] (rsa2048|rsa4096 ...)
#   MASTERS [3]     KEYRING_NAME [pactest]            EPOCH [1704153600] (SOURCE_DATE_EPOCH)
#   KEYS_DIR []     reuse OUTDIR/keys of an earlier run (full determinism)
#   DB_EXT [.tar.gz]  NOSIG_REPOS [extra]: repos whose db has no %PGPSIG% (pacman must GET .sig)
#   SIGN_DB_REPOS [extra]: repos whose .db/.files get a detached .sig by the packager key
#   VERBOSE []: print step timings to stderr
#   BENCH_SMALL [0]: also make repo 'bench' for benchmarks: big, c8big, joinbig (BIG_MB each)
#                    and BENCH_SMALL packages of BENCH_SMALL_KB [50] KiB, all signed, in its db
#   DETERMINISTIC [1]: re-pack repo-add's databases with fixed mtimes/owner/order
#   PKG_ZSTD []: more zstd flags for the packages; "--ultra -20" as makepkg does
#                (its frames then declare a 32 MiB window, as every Arch package's)
set -euo pipefail
export LC_ALL=C TZ=UTC

OUTDIR=${1:?usage: make-repo.sh OUTDIR}
ARCH=${ARCH:-x86_64}
BIG_MB=${BIG_MB:-50}
ALGO=${ALGO:-ed25519}
MASTERS=${MASTERS:-3}
KEYRING_NAME=${KEYRING_NAME:-pactest}
EPOCH=${EPOCH:-1704153600}            # 2024-01-02T00:00:00Z: builddate, mtimes, signature time
KEY_TIME=$(( EPOCH - 86400 ))         # keys created one day earlier
REV_TIME=$(( EPOCH + 86400 ))         # revoked key is revoked one day later
KEYS_DIR=${KEYS_DIR:-}
DB_EXT=${DB_EXT:-.tar.gz}
NOSIG_REPOS=${NOSIG_REPOS-extra}
SIGN_DB_REPOS=${SIGN_DB_REPOS-extra}
DETERMINISTIC=${DETERMINISTIC:-1}
BENCH_SMALL=${BENCH_SMALL:-0}
BENCH_SMALL_KB=${BENCH_SMALL_KB:-50}
PKG_ZSTD=${PKG_ZSTD:-}
read -ra ZSTD_FLAGS <<<"$PKG_ZSTD"
PACKAGER="Pactest Packager <packager@${KEYRING_NAME}.invalid>"
T0=$(date +%s%N)
step() { [[ -z ${VERBOSE:-} ]] || echo "make-repo.sh: +$(( ($(date +%s%N) - T0) / 1000000 ))ms $*" >&2; }

for t in gpg bsdtar zstd gzip repo-add sha256sum base64 od dd; do
	command -v "$t" >/dev/null || { echo "make-repo.sh: missing tool: $t" >&2; exit 1; }
done

mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
rm -rf "$OUTDIR/mirror" "$OUTDIR/snapshots" "$OUTDIR/keyring" "$OUTDIR/keys" "$OUTDIR/MANIFEST.tsv"
mkdir -p "$OUTDIR/keyring" "$OUTDIR/keys" "$OUTDIR/mirror" "$OUTDIR/snapshots"

# GnuPG home in a SHORT path: gpg-agent's socket lives in the homedir when
# /run/user/$UID is missing, and unix socket paths are limited to ~107 bytes.
WORK=$(mktemp -d /tmp/pactest.XXXXXX)
export GNUPGHOME=$WORK/g
mkdir -m 700 "$GNUPGHOME"
cleanup() {
	gpgconf --homedir "$GNUPGHOME" --kill all >/dev/null 2>&1 || true
	rm -rf "$WORK"
}
trap cleanup EXIT

gpgt() { # gpg at a frozen fake time: gpgt EPOCHSECONDS args...  (stderr shown on failure only)
	local t=$1 rc=0; shift
	gpg --batch --quiet --no-tty --pinentry-mode loopback --passphrase '' \
		--faked-system-time "${t}!" "$@" 2>"$WORK/gpg.err" || rc=$?
	(( rc == 0 )) || grep -v 'faked system time' "$WORK/gpg.err" >&2
	return $rc
}
fpr_of() { gpg --batch --quiet --with-colons --list-keys "$1" 2>/dev/null | awk -F: '$1=="fpr"{print $10; exit}'; }

# ---------------------------------------------------------------- keys
step keys
uid_master() { echo "Pactest Master Key $1 <master$1@${KEYRING_NAME}.invalid>"; }
UID_PACKAGER=$PACKAGER
UID_REVOKED="Pactest Revoked Packager <revoked@${KEYRING_NAME}.invalid>"
UID_UNTRUSTED="Pactest Untrusted Packager <untrusted@${KEYRING_NAME}.invalid>"
UID_STRANGER="Pactest Stranger <stranger@${KEYRING_NAME}.invalid>"

if [[ -n $KEYS_DIR ]]; then
	gpg --batch --quiet --import "$KEYS_DIR"/secret-keys.gpg
	cp "$KEYS_DIR"/revoked.rev "$WORK/revoked.rev"
else
	for i in $(seq 1 "$MASTERS"); do
		gpgt "$KEY_TIME" --quick-gen-key "$(uid_master "$i")" "$ALGO" cert never
	done
	gpgt "$KEY_TIME" --quick-gen-key "$UID_PACKAGER" "$ALGO" sign never
	gpgt "$KEY_TIME" --quick-gen-key "$UID_REVOKED" "$ALGO" sign never
	gpgt "$KEY_TIME" --quick-gen-key "$UID_UNTRUSTED" "$ALGO" sign never
	gpgt "$KEY_TIME" --quick-gen-key "$UID_STRANGER" "$ALGO" sign never
fi

MASTER_FPRS=()
for i in $(seq 1 "$MASTERS"); do MASTER_FPRS+=("$(fpr_of "=$(uid_master "$i")")"); done
FPR_PACKAGER=$(fpr_of "=$UID_PACKAGER")
FPR_REVOKED=$(fpr_of "=$UID_REVOKED")
FPR_UNTRUSTED=$(fpr_of "=$UID_UNTRUSTED")
FPR_STRANGER=$(fpr_of "=$UID_STRANGER")

if [[ -z $KEYS_DIR ]]; then
	# every master certifies the packager and the (later revoked) packager,
	# like Arch's main keys certify packager keys (3 marginal = valid)
	for m in "${MASTER_FPRS[@]}"; do
		gpgt "$KEY_TIME" -u "$m!" --quick-sign-key "$FPR_PACKAGER" >/dev/null
		gpgt "$KEY_TIME" -u "$m!" --quick-sign-key "$FPR_REVOKED" >/dev/null
	done
	# revocation certificate for the revoked key, dated REV_TIME
	# (--gen-revoke refuses --batch; answer its prompts on --command-fd)
	printf 'y\n0\nrevoked by make-repo.sh for tests\n\ny\n' |
		gpg --no-tty --quiet --pinentry-mode loopback --passphrase '' \
			--faked-system-time "${REV_TIME}!" --command-fd 0 --yes --armor \
			--output "$WORK/revoked.rev" --gen-revoke "$FPR_REVOKED" 2>"$WORK/gpg.err" ||
		{ cat "$WORK/gpg.err" >&2; exit 1; }
	gpg --batch --export-secret-keys "${MASTER_FPRS[@]}" "$FPR_PACKAGER" \
		"$FPR_REVOKED" "$FPR_UNTRUSTED" "$FPR_STRANGER" > "$OUTDIR/keys/secret-keys.gpg"
else
	cp "$KEYS_DIR"/secret-keys.gpg "$OUTDIR/keys/secret-keys.gpg"
fi
cp "$WORK/revoked.rev" "$OUTDIR/keys/revoked.rev"
{
	for i in "${!MASTER_FPRS[@]}"; do echo "master$((i+1)) ${MASTER_FPRS[$i]}"; done
	echo "packager $FPR_PACKAGER"
	echo "revoked $FPR_REVOKED"
	echo "untrusted $FPR_UNTRUSTED"
	echo "stranger $FPR_STRANGER"
} > "$OUTDIR/keys/fingerprints.txt"

# ---------------------------------------------------------------- packages
step packages
list_package_files() { # exactly makepkg's ordering (.BUILDINFO .MTREE .PKGINFO first)
	( export LC_COLLATE=C; shopt -s dotglob globstar; printf '%s\0' **/* )
}

payload_bytes() { # deterministic incompressible bytes: payload_bytes N SEED
	local n=$1 seed=$2
	if command -v openssl >/dev/null; then
		local key; key=$(printf '%s' "$seed" | sha256sum | cut -c1-32)
		openssl enc -aes-128-ctr -nosalt -K "$key" -iv 00000000000000000000000000000000 \
			-in /dev/zero 2>/dev/null | head -c "$n"
	else
		python3 -c 'import random,sys; r=random.Random(sys.argv[2]); n=int(sys.argv[1])
w=sys.stdout.buffer
while n>0:
    k=min(n,1<<20); w.write(r.randbytes(k)); n-=k' "$n" "$seed"
	fi
}

# build_pkg NAME FULLVER PKGARCH PAYLOAD(small|big) [depend...]  -> prints path
build_pkg() {
	local name=$1 ver=$2 parch=$3 payload=$4; shift 4
	local deps=("$@")
	local root=$WORK/root/$name-$ver
	rm -rf "$root"; mkdir -p "$root/usr/share/$name" "$root/usr/bin"
	printf '%s %s\nbuilt by make-repo.sh for pacman gateway tests\n' "$name" "$ver" \
		> "$root/usr/share/$name/README"
	printf '#!/bin/sh\necho "%s %s"\n' "$name" "$ver" > "$root/usr/bin/$name"
	chmod 755 "$root/usr/bin/$name"
	if [[ $payload == big ]]; then
		payload_bytes $(( BIG_MB * 1048576 )) "$name-$ver" > "$root/usr/share/$name/blob.bin"
	elif [[ $payload == kb:* ]]; then
		payload_bytes $(( ${payload#kb:} * 1024 )) "$name-$ver" > "$root/usr/share/$name/blob.bin"
	fi
	(
		cd "$root"
		local size; size=$(find . -type f -links 1 -exec cat {} + | wc -c)
		{
			echo "# Generated by make-repo.sh (modelled on makepkg 6.0.2)"
			echo "# using fakeroot version 1.31"
			echo "pkgname = $name"
			echo "pkgbase = $name"
			echo "pkgver = $ver"
			echo "pkgdesc = Test package $name for pacman gateway tests"
			echo "url = https://example.invalid/$name"
			echo "builddate = $EPOCH"
			echo "packager = $PACKAGER"
			echo "size = $size"
			echo "arch = $parch"
			echo "license = MIT"
			for d in "${deps[@]}"; do echo "depend = $d"; done
		} > .PKGINFO
		{
			echo "format = 2"
			echo "pkgname = $name"
			echo "pkgbase = $name"
			echo "pkgver = $ver"
			echo "pkgarch = $parch"
			echo "pkgbuild_sha256sum = $(printf '%s' "$name-$ver" | sha256sum | cut -d' ' -f1)"
			echo "packager = $PACKAGER"
			echo "builddate = $EPOCH"
			echo "builddir = /build"
			echo "startdir = /startdir"
			echo "buildtool = make-repo.sh"
			echo "buildtoolver = 1"
		} > .BUILDINFO
		find . -type d -exec chmod 755 {} +
		find . -exec touch -h -d "@$EPOCH" {} +
		list_package_files | bsdtar --uid 0 --gid 0 --uname root --gname root \
			-cnf - --format=mtree \
			--options='!all,use-set,type,uid,gid,mode,time,size,md5,sha256,link' \
			--null --files-from - --exclude .MTREE | gzip -c -f -n > .MTREE
		touch -d "@$EPOCH" .MTREE
		list_package_files | bsdtar --uid 0 --gid 0 --uname root --gname root \
			--no-fflags --no-read-sparse -cnf - --null --files-from - |
			zstd -c -z -q "${ZSTD_FLAGS[@]}" - > "$WORK/$name-$ver-$parch.pkg.tar.zst"
	)
	rm -rf "$root"
	echo "$WORK/$name-$ver-$parch.pkg.tar.zst"
}

sign_with() { # sign_with FPR FILE   -> FILE.sig (binary detached, like makepkg --sign)
	gpgt "$EPOCH" -u "$1!" --detach-sign --no-armor --output "$2.sig" "$2"
}

flip_byte() { # flip_byte FILE: invert the byte in the middle of FILE
	local f=$1 size off b
	size=$(stat -c %s "$f"); off=$(( size / 2 ))
	b=$(od -An -tu1 -j "$off" -N1 "$f" | tr -d ' ')
	printf "\\$(printf '%03o' $(( b ^ 255 )))" | dd of="$f" bs=1 seek="$off" conv=notrunc status=none
}

MANIFEST=$OUTDIR/MANIFEST.tsv
printf 'repo\tfile\tname\tversion\tin_db\tsigner\texpect\tsha256\tsize\n' > "$MANIFEST"
manifest() { # repo file name ver in_db signer expect
	local p=$OUTDIR/mirror/$1/os/$ARCH/$2
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "$6" "$7" \
		"$(sha256sum < "$p" | cut -d' ' -f1)" "$(stat -c %s "$p")" >> "$MANIFEST"
}

# place REPO NAME VER PKGARCH PAYLOAD SIGNER(fpr|none) [deps...] -> file name in mirror
place() {
	local repo=$1 name=$2 ver=$3 parch=$4 payload=$5 signer=$6; shift 6
	local dir=$OUTDIR/mirror/$repo/os/$ARCH pkg
	mkdir -p "$dir"
	pkg=$(build_pkg "$name" "$ver" "$parch" "$payload" "$@")
	mv "$pkg" "$dir/"
	pkg=$dir/${pkg##*/}
	if [[ $signer != none ]]; then sign_with "$signer" "$pkg"; fi
	echo "${pkg##*/}"
}

declare -A DBPKGS   # repo -> space separated file names that go into the db
addb() { DBPKGS[$1]+="$2 "; }

# core: several versions of hello (db lists only the newest), and edge cases
HELLO_VERS=(1.0-1 1.1-1 2.0-1 2.0-2)
HELLO_FILES=()
for v in "${HELLO_VERS[@]}"; do
	f=$(place core hello "$v" "$ARCH" small "$FPR_PACKAGER"); HELLO_FILES+=("$f")
done
addb core "${HELLO_FILES[-1]}"
f=$(place core libpactest 1.0-1 "$ARCH" small "$FPR_PACKAGER"); addb core "$f"
f=$(place core pactest-filesystem 1.0-1 any small "$FPR_PACKAGER"); addb core "$f"
f=$(place core 'libxx++' 3.1-1 "$ARCH" small "$FPR_PACKAGER"); addb core "$f"
f=$(place core epochpkg 1:2.0-1 "$ARCH" small "$FPR_PACKAGER"); addb core "$f"
# signed, then corrupted BEFORE repo-add: db checksum matches, signature does not
# (repo-add rejects a broken archive, so the db entry is made from the good file and
#  its %MD5SUM%/%SHA256SUM% are then rewritten to the corrupted bytes' sums)
declare -A FIX_MD5 FIX_SHA
f=$(place core corrupt-sig 1.0-1 "$ARCH" small "$FPR_PACKAGER"); addb core "$f"; CORRUPT_SIG=$f
cp "$OUTDIR/mirror/core/os/$ARCH/$f" "$WORK/corrupt-sig.bad"; flip_byte "$WORK/corrupt-sig.bad"
FIX_MD5[$f]=$(md5sum < "$WORK/corrupt-sig.bad" | cut -d' ' -f1)
FIX_SHA[$f]=$(sha256sum < "$WORK/corrupt-sig.bad" | cut -d' ' -f1)
# signed, repo-added, THEN corrupted: checksum and signature both fail
f=$(place core corrupt-sum 1.0-1 "$ARCH" small "$FPR_PACKAGER"); addb core "$f"; CORRUPT_SUM=$f
f=$(place core revokedpkg 1.0-1 "$ARCH" small "$FPR_REVOKED"); addb core "$f"
f=$(place core untrustedpkg 1.0-1 "$ARCH" small "$FPR_UNTRUSTED"); addb core "$f"
f=$(place core unknownkeypkg 1.0-1 "$ARCH" small "$FPR_STRANGER"); addb core "$f"
f=$(place core unsignedpkg 1.0-1 "$ARCH" small none); addb core "$f"
# renamed: hello-1.0-1's signed bytes under the name renamedpkg.  repo-add names
# db entries after .PKGINFO, so the entry is made in a scratch db and renamed.
RENAMED=renamedpkg-1.0-1-$ARCH.pkg.tar.zst
cp "$OUTDIR/mirror/core/os/$ARCH/${HELLO_FILES[0]}" "$OUTDIR/mirror/core/os/$ARCH/$RENAMED"
cp "$OUTDIR/mirror/core/os/$ARCH/${HELLO_FILES[0]}.sig" "$OUTDIR/mirror/core/os/$ARCH/$RENAMED.sig"
declare -A EXTRA_ENTRIES   # repo -> dir holding extra db entries (per db kind)
make_renamed_entry() {
	local s=$WORK/renamed k
	rm -rf "$s"; mkdir -p "$s"
	cp "$OUTDIR/mirror/core/os/$ARCH/$RENAMED" "$OUTDIR/mirror/core/os/$ARCH/$RENAMED.sig" "$s/"
	(cd "$s" && repo-add -q scratch.db.tar.gz "$RENAMED" >/dev/null 2>&1)
	for k in db files; do
		mkdir -p "$s/$k"
		bsdtar -xf "$s/scratch.$k.tar.gz" -C "$s/$k"
		mv "$s/$k/hello-1.0-1" "$s/$k/renamedpkg-1.0-1"
		awk 'r{print "renamedpkg"; r=0; next} /^%(NAME|BASE)%$/{r=1} {print}' \
			"$s/$k/renamedpkg-1.0-1/desc" > "$s/$k/desc.new"
		mv "$s/$k/desc.new" "$s/$k/renamedpkg-1.0-1/desc"
	done
	EXTRA_ENTRIES[core]=$s
}
make_renamed_entry
# extra: a dependency across repos, and the big one
f=$(place extra pactest-tool 1.0-1 "$ARCH" small "$FPR_PACKAGER" 'libpactest>=1.0'); addb extra "$f"
if (( BIG_MB > 0 )); then
	step "big package ($BIG_MB MiB)"
	f=$(place extra big 1.0-1 "$ARCH" big "$FPR_PACKAGER"); addb extra "$f"
fi

BENCH_REPOS=""
if (( BENCH_SMALL > 0 && BIG_MB > 0 )); then
	step "bench repo: 3 x $BIG_MB MiB + $BENCH_SMALL x $BENCH_SMALL_KB KiB"
	BENCH_REPOS=bench
	for n in big c8big joinbig; do f=$(place bench "$n" 1.0-1 "$ARCH" big "$FPR_PACKAGER"); addb bench "$f"; done
	for ((i = 0; i < BENCH_SMALL; i++)); do
		f=$(place bench "$(printf 'small%03d' "$i")" 1.0-1 "$ARCH" "kb:$BENCH_SMALL_KB" "$FPR_PACKAGER"); addb bench "$f"
	done
fi

# ---------------------------------------------------------------- databases
step databases
compress_db() {
	case $DB_EXT in
		.tar.gz) gzip -c -f -n ;; .tar.zst) zstd -c -z -q - ;; .tar.xz) xz -c -z - ;;
		.tar) cat ;; *) echo "bad DB_EXT $DB_EXT" >&2; return 1 ;;
	esac
}

# repack DBFILE STRIP(0|1) [EXTRADIR]: deterministic re-pack, optionally dropping
# %PGPSIG%, adding the entries found in EXTRADIR
repack() {
	local db=$1 strip=$2 extra=${3:-} t=$WORK/repack
	rm -rf "$t"; mkdir -p "$t"
	bsdtar -xf "$db" -C "$t"
	if [[ -n $extra ]]; then cp -r "$extra"/. "$t/"; fi
	local d fn edited=0
	for d in "$t"/*/desc; do
		[[ -f $d ]] || continue
		if (( strip )); then
			awk 'BEGIN{skip=0} /^%PGPSIG%$/{skip=1; next} skip&&/^$/{skip=0; next} !skip' "$d" > "$d.new"
			mv "$d.new" "$d"; edited=1
		fi
		fn=$(awk 'p{print; exit} /^%FILENAME%$/{p=1}' "$d")
		if [[ -n ${FIX_SHA[$fn]:-} ]]; then
			awk -v m="${FIX_MD5[$fn]}" -v s="${FIX_SHA[$fn]}" \
				'r=="m"{print m; r=""; next} r=="s"{print s; r=""; next}
				 /^%MD5SUM%$/{r="m"} /^%SHA256SUM%$/{r="s"} {print}' "$d" > "$d.new"
			mv "$d.new" "$d"; edited=1
		fi
	done
	[[ -z $extra ]] || edited=1
	(( DETERMINISTIC || edited )) || return 0
	find "$t" -mindepth 1 -exec touch -h -d "@$EPOCH" {} +
	(cd "$t" && find . -mindepth 1 -printf '%P\0' | sort -z |
		bsdtar --uid 0 --gid 0 --uname root --gname root -cnf - --null -T - |
		compress_db) > "$db.new"
	mv "$db.new" "$db"
}

# make_db DIR REPO FILE...: repo-add, then post-process
make_db() {
	local dir=$1 repo=$2; shift 2
	local strip=0 sign=0 r
	for r in $NOSIG_REPOS; do [[ $r == "$repo" ]] && strip=1; done
	for r in $SIGN_DB_REPOS; do [[ $r == "$repo" ]] && sign=1; done
	(
		cd "$dir"
		repo-add -q "$repo.db$DB_EXT" "$@" >/dev/null 2>"$WORK/repo-add.err" ||
			{ cat "$WORK/repo-add.err" >&2; exit 1; }
		grep -v -e 'A newer version' -e 'already existed' "$WORK/repo-add.err" >&2 || true
		local x=${EXTRA_ENTRIES[$repo]:-}
		repack "$repo.db$DB_EXT" "$strip" "${x:+$x/db}"
		repack "$repo.files$DB_EXT" "$strip" "${x:+$x/files}"
		rm -f "$repo.db$DB_EXT.old" "$repo.files$DB_EXT.old"
		if (( sign )); then
			for k in db files; do
				rm -f "$repo.$k$DB_EXT.sig" "$repo.$k.sig"
				sign_with "$FPR_PACKAGER" "$repo.$k$DB_EXT"
				ln -sf "$repo.$k$DB_EXT.sig" "$repo.$k.sig"
			done
		fi
	)
}

for repo in core extra $BENCH_REPOS; do
	dir=$OUTDIR/mirror/$repo/os/$ARCH
	# shellcheck disable=SC2086
	make_db "$dir" "$repo" ${DBPKGS[$repo]}
done
# snapshots of core with each older hello version (same other packages)
step snapshots
# (start from the finished core db and let repo-add swap in the older hello)
n=0
for i in "${!HELLO_VERS[@]}"; do
	n=$((n+1)); sd=$OUTDIR/snapshots/core/$n-${HELLO_VERS[$i]}
	mkdir -p "$sd"
	src=$OUTDIR/mirror/core/os/$ARCH
	cp "$src/core.db$DB_EXT" "$src/core.files$DB_EXT" "$sd/"
	ln -sf "$src/${HELLO_FILES[$i]}" "$sd/${HELLO_FILES[$i]}"
	ln -sf "$src/${HELLO_FILES[$i]}.sig" "$sd/${HELLO_FILES[$i]}.sig"
	make_db "$sd" core "${HELLO_FILES[$i]}"
	find "$sd" -name '*.pkg.tar*' -delete
done

# corrupt AFTER repo-add (and after the snapshots were made)
cp "$WORK/corrupt-sig.bad" "$OUTDIR/mirror/core/os/$ARCH/$CORRUPT_SIG"
flip_byte "$OUTDIR/mirror/core/os/$ARCH/$CORRUPT_SUM"

# ---------------------------------------------------------------- keyring
step keyring
gpg --batch --armor --export "${MASTER_FPRS[@]}" "$FPR_PACKAGER" "$FPR_UNTRUSTED" "$FPR_REVOKED" \
	> "$WORK/pub.asc"
# apply the revocation to an export-only copy so the published key carries it
mkdir -m 700 "$WORK/g2"
gpg --homedir "$WORK/g2" --batch --quiet --import "$WORK/pub.asc" "$WORK/revoked.rev" 2>/dev/null
gpg --homedir "$WORK/g2" --batch --armor --export "${MASTER_FPRS[@]}" "$FPR_PACKAGER" \
	"$FPR_UNTRUSTED" "$FPR_REVOKED" > "$OUTDIR/keyring/$KEYRING_NAME.gpg"
gpgconf --homedir "$WORK/g2" --kill all >/dev/null 2>&1 || true
for m in "${MASTER_FPRS[@]}"; do echo "$m:4:"; done > "$OUTDIR/keyring/$KEYRING_NAME-trusted"
echo "$FPR_REVOKED" > "$OUTDIR/keyring/$KEYRING_NAME-revoked"
# single-file keyrings handy for gpgv / Go tests
gpg --batch --export "$FPR_PACKAGER" > "$OUTDIR/keyring/packager.pub.gpg"
gpg --batch --export "$FPR_STRANGER" > "$OUTDIR/keyring/stranger.pub.gpg"

# ---------------------------------------------------------------- manifest
for repo in core extra $BENCH_REPOS; do
	dir=$OUTDIR/mirror/$repo/os/$ARCH
	for p in "$dir"/*.pkg.tar.zst; do
		f=${p##*/}
		name=$(bsdtar -xOqf "$p" .PKGINFO 2>/dev/null | awk -F' = ' '$1=="pkgname"{print $2}') || true
		[[ -z $name ]] && name=${f%-*-*-*}
		ver=${f#"$name"-}; ver=${ver%-*}
		in_db=no; [[ " ${DBPKGS[$repo]} " == *" $f "* ]] && in_db=yes
		signer=packager; expect=ok
		case $f in
			corrupt-sig-*) expect=bad-signature ;;
			corrupt-sum-*) expect=bad-checksum ;;
			revokedpkg-*) signer=revoked; expect=revoked-key ;;
			untrustedpkg-*) signer=untrusted; expect=untrusted-key ;;
			unknownkeypkg-*) signer=stranger; expect=unknown-key ;;
			unsignedpkg-*) signer=none; expect=missing-signature ;;
			renamedpkg-*) name=renamedpkg; ver=1.0-1; in_db=yes; expect=renamed ;;
		esac
		manifest "$repo" "$f" "$name" "$ver" "$in_db" "$signer" "$expect"
	done
done

cat > "$OUTDIR/README.txt" <<EOF
Generated by make-repo.sh: ARCH=$ARCH ALGO=$ALGO MASTERS=$MASTERS BIG_MB=$BIG_MB EPOCH=$EPOCH
KEYRING_NAME=$KEYRING_NAME DB_EXT=$DB_EXT NOSIG_REPOS='$NOSIG_REPOS' SIGN_DB_REPOS='$SIGN_DB_REPOS'
Serve OUTDIR/mirror and use  Server = http://HOST:PORT/\$repo/os/\$arch
Keys: keys/fingerprints.txt.  Verdicts: MANIFEST.tsv (expect column).
EOF
step done
echo "make-repo.sh: wrote $OUTDIR ($(wc -l < "$MANIFEST") manifest lines)"
