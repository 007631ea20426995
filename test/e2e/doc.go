// Package e2e holds black-box tests of flocon: the built binary, a local
// upstream mirror that logs requests and injects faults, and the real pacman
// client; the LAN tests (lan_*_test.go) add several daemons in network
// namespaces. No Internet is used.
//
// Run them with `make test-e2e` (or `go test ./test/e2e/...`). FLOCON_E2E=0
// skips every test, TEST_E2E_KEEP=1 keeps the temp dirs (their paths are
// logged), FLOCON_E2E_BIG_MB sets the size of the big fixture (default 50).
// Tests skip with a message when pacman, gpg, repo-add, bsdtar, zstd or (not
// as root) fakeroot are missing.
//
// # Harness (all in _test.go files of this package)
//
// TestMain builds ./cmd/flocon once per run; Binary returns its path.
//
// LoadFixtures returns the signed test repo made by testdata/make-repo.sh
// (cached in ~/.cache/flocon-e2e/fixtures-<hash> or $FLOCON_E2E_CACHE, built once under a lock):
// Mirror (core with %PGPSIG% in its db, extra without, so the .sig files are
// needed), Keyring (pactest.gpg, -trusted, -revoked) and Files, the rows of
// MANIFEST.tsv with each file's expected verdict (ok, bad-signature,
// bad-checksum, revoked-key, untrusted-key, unknown-key, missing-signature,
// renamed), sha256, size and CID.
//
//	fx := LoadFixtures(t)
//	up := NewUpstream(t, fx.Mirror)                  // 127.0.0.1, logs every request
//	up.SetFaults(Fault{Kind: FaultCorrupt, File: "big-1.0-1-x86_64.pkg.tar.zst"})
//	d := StartDaemon(t, DaemonConfig{Mirrors: []string{DeadMirror(t), up.Mirror()}, Keyring: fx.Keyring})
//	p := NewPacman(t, fx.Keyring, []string{d.Server()})
//	p.Sy()
//	p.Sw("hello")                                     // fails the test if pacman fails
//	sum, _ := FileSHA256(p.CacheFile("hello-2.0-2-x86_64.pkg.tar.zst"))
//	n := up.CountGETs("hello-2.0-2-x86_64.pkg.tar.zst")
//
// Upstream serves a directory with Range/206, If-Modified-Since/304 and
// Last-Modified; faults (500, 404, cut after N bytes, slow, corrupt one
// file) apply to every request or to one file name; Stop/Start make it a dead
// port and back; its RequestLog (Requests, CountGETs, Count, BytesSent,
// LogString) logs each request on arrival, with status and bytes once done.
// DeadMirror is a mirror URL on a closed port. A Tap is a logging reverse
// proxy with the same log API: put it between pacman and a daemon to see what
// pacman asked (Range, If-Modified-Since) and what it got.
//
// Daemon is one `flocon serve` (--listen on a free port, --data-dir,
// --admin-socket, --keyring, --mirror..., --no-p2p unless P2P is set, plus
// Args; always an empty --config file and --share dir and no FLOCON_*
// variables, so the host's settings stay out; Prefix runs it through e.g.
// `ip netns exec`; Ready overrides the GET /healthz wait). Stop (SIGTERM), Kill (SIGKILL), Start, Restart; Logs,
// WaitLog, LogMatches; Blobs, HasBlob, BlobWithSHA256 and TmpFiles look at
// $DATA/blobs and $DATA/tmp. Its log is printed when the test fails.
//
// Pacman is a private pacman environment (own root, db, cache, GnuPG dir
// copied from one made by testdata/pacman-env.sh with FAST_INIT=1 per run;
// fakeroot when not root): Sy, Sw, Run, MustRun, CacheFile.
//
// Helpers: TempDir (short paths, kept with TEST_E2E_KEEP=1), FreeAddr,
// HTTPClient (its connections close with the test, for goleak), Get,
// FileSHA256, Eventually (waiting on another process, never for timing
// assertions).
package e2e
