#!/usr/bin/env bash
# pacman-env.sh KEYRINGDIR TESTDIR SERVER [SERVER...]
#
# flocon's e2e harness (test/e2e/pacman_test.go) runs this once per test
# binary with FAST_INIT=1 to make an initialized GnuPG dir, then copies that
# dir for every pacman it starts (pacman-key --init is the slow part).
#
# Make a self-contained pacman client environment under TESTDIR that trusts the
# keyring folder KEYRINGDIR (from make-repo.sh: NAME.gpg, NAME-trusted, NAME-revoked)
# and uses the given Server URLs (each may contain $repo and $arch) for [core] and [extra].
#
#   TESTDIR/pacman.conf  root/  db/  cache/  gnupg/  hooks/  pacman.log  bin/pacman-key
#
# Then:  $(pacman-env.sh ... ) prints the pacman command prefix to use, e.g.
#   pacman --config TESTDIR/pacman.conf --noconfirm -Sy
# As non-root every pacman / pacman-key call must go through fakeroot (pacman
# refuses -Sy/-Sw otherwise: "you cannot perform this operation unless you are root").
#
# Env: SIGLEVEL ["Required DatabaseOptional"]  PARALLEL [5]  REPOS ["core extra"]
#      FAKE_TIME []: gpg "faked-system-time" for the pacman keyring (real repos with expired keys)
#      KEYRING_NAME [derived from KEYRINGDIR/*.gpg]  FAST_INIT [0]: 1 = use an ed25519
#      local master key instead of pacman-key --init's RSA-4096 one (much faster)
set -euo pipefail
KEYRINGDIR=$(cd "${1:?usage: pacman-env.sh KEYRINGDIR TESTDIR SERVER...}" && pwd)
TESTDIR=${2:?}; shift 2
(( $# )) || { echo "pacman-env.sh: need at least one SERVER url" >&2; exit 1; }
SIGLEVEL=${SIGLEVEL:-Required DatabaseOptional}
PARALLEL=${PARALLEL:-5}
REPOS=${REPOS:-core extra}
FAST_INIT=${FAST_INIT:-0}
if [[ -z ${KEYRING_NAME:-} ]]; then
	k=$(ls "$KEYRINGDIR"/*-trusted | head -1); k=${k##*/}; KEYRING_NAME=${k%-trusted}
fi

mkdir -p "$TESTDIR"
TESTDIR=$(cd "$TESTDIR" && pwd)
mkdir -p "$TESTDIR"/{root,db,cache,hooks,bin}
# gnupg dir: short path for the agent socket if TESTDIR is long
if (( ${#TESTDIR} > 60 )); then
	g=$(mktemp -d /tmp/pacgpg.XXXXXX); rm -rf "$TESTDIR/gnupg"; ln -s "$g" "$TESTDIR/gnupg"
	GPGDIR=$g
else
	GPGDIR=$TESTDIR/gnupg; mkdir -p "$GPGDIR"
fi

{
	echo "[options]"
	echo "RootDir     = $TESTDIR/root"
	echo "DBPath      = $TESTDIR/db/"
	echo "CacheDir    = $TESTDIR/cache/"
	echo "LogFile     = $TESTDIR/pacman.log"
	echo "GPGDir      = $GPGDIR/"
	echo "HookDir     = $TESTDIR/hooks/"
	echo "Architecture = x86_64"
	echo "SigLevel    = $SIGLEVEL"
	echo "LocalFileSigLevel = Optional"
	echo "ParallelDownloads = $PARALLEL"
	for repo in $REPOS; do
		echo
		echo "[$repo]"
		for s in "$@"; do echo "Server = $s"; done
	done
} > "$TESTDIR/pacman.conf"

# pacman-key --populate only reads /usr/share/keyrings (Debian; Arch: /usr/share/pacman/keyrings),
# hard-coded.  Use a copy whose import dir comes from $KEYRING_IMPORT_DIR.
sed "s|local KEYRING_IMPORT_DIR='/usr/share/keyrings'|local KEYRING_IMPORT_DIR=\"\${KEYRING_IMPORT_DIR:-/usr/share/keyrings}\"|; s|local KEYRING_IMPORT_DIR='/usr/share/pacman/keyrings'|local KEYRING_IMPORT_DIR=\"\${KEYRING_IMPORT_DIR:-/usr/share/pacman/keyrings}\"|" \
	"$(command -v pacman-key)" > "$TESTDIR/bin/pacman-key"
chmod +x "$TESTDIR/bin/pacman-key"
grep -q 'KEYRING_IMPORT_DIR:-' "$TESTDIR/bin/pacman-key" ||
	{ echo "pacman-env.sh: could not patch pacman-key" >&2; exit 1; }

ROOTWRAP=()
(( EUID == 0 )) || ROOTWRAP=(fakeroot)
PK=("${ROOTWRAP[@]}" "$TESTDIR/bin/pacman-key" --config "$TESTDIR/pacman.conf")

if [[ -n ${FAKE_TIME:-} ]]; then
	# verify as if "now" were FAKE_TIME (e.g. 20250501T000000): needed for real-world
	# repos whose keys have expired since.  Must be set before --init so that the local
	# master key and its lsigs are not "created in the future".
	chmod 700 "$GPGDIR"
	echo "faked-system-time $FAKE_TIME" >> "$GPGDIR/gpg.conf"
fi
if (( FAST_INIT )); then
	# pre-seed an ed25519 local master key: --init then skips its slow RSA-4096 keygen
	chmod 700 "$GPGDIR"
	gpg --homedir "$GPGDIR" --batch --quiet --pinentry-mode loopback --passphrase '' \
		--quick-gen-key "Pacman Keyring Master Key <pacman@localhost>" ed25519 sign never 2>/dev/null
fi
"${PK[@]}" --init >&2
KEYRING_IMPORT_DIR=$KEYRINGDIR "${PK[@]}" --populate "$KEYRING_NAME" >&2
gpgconf --homedir "$GPGDIR" --kill all >/dev/null 2>&1 || true
echo "${ROOTWRAP[*]}${ROOTWRAP[*]:+ }pacman --config $TESTDIR/pacman.conf"
