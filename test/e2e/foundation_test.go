package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The foundation tests run the real pacman and plain HTTP clients against
// one `flocon serve --no-p2p` whose mirror is a logging Upstream.

// rig is one test's setup: fixtures, an upstream, a daemon using it.
type rig struct {
	fx *Fixtures
	up *Upstream
	d  *Daemon
	c  *http.Client
}

func newRig(t *testing.T, faults ...Fault) *rig {
	t.Helper()
	fx := LoadFixtures(t)
	up := NewUpstream(t, fx.Mirror, WithFaults(faults...))
	d := StartDaemon(t, DaemonConfig{Mirrors: []string{up.Mirror()}, Keyring: fx.Keyring})
	return &rig{fx: fx, up: up, d: d, c: HTTPClient(t)}
}

func (b *rig) url(f FixtureFile) string { return b.d.FileURL(f.Repo, b.fx.Arch, f.File) }

// syncDBs has flocon fetch both repo dbs, as pacman -Sy would, so it knows
// every package's sha256 and signature.
func (b *rig) syncDBs(t *testing.T) {
	t.Helper()
	for _, repo := range []string{"core", "extra"} {
		r := Get(t, b.c, b.d.FileURL(repo, b.fx.Arch, repo+".db"))
		if r.Status != http.StatusOK {
			t.Fatalf("GET %s.db through flocon: status %d", repo, r.Status)
		}
	}
}

// okPackages are the valid packages listed in a db.
func (b *rig) okPackages() []FixtureFile { return b.fx.Select(ExpectOK, true) }

func names(files []FixtureFile) []string {
	out := make([]string, len(files))
	for i, f := range files {
		out[i] = f.Name
	}
	return out
}

// assertCached checks that pacman's cache holds the exact fixture bytes.
func assertCached(t *testing.T, p *Pacman, files []FixtureFile) {
	t.Helper()
	for _, f := range files {
		if sum, err := FileSHA256(p.CacheFile(f.File)); err != nil || sum != f.SHA256 {
			t.Errorf("%s in pacman's cache: sha256 %s (%v), want %s", f.File, sum, err, f.SHA256)
		}
	}
}

// assertNotStored checks that no blob holds the file's good bytes or the
// given bad bytes.
func assertNotStored(t *testing.T, d *Daemon, f FixtureFile, badSHA256 ...string) {
	t.Helper()
	if d.HasBlob(f.CID()) {
		t.Errorf("%s: store has a blob named %s", f.File, f.CID())
	}
	for _, sum := range append([]string{f.SHA256}, badSHA256...) {
		if p := d.BlobWithSHA256(sum); p != "" {
			t.Errorf("%s: store holds its bytes (sha256 %s) in %s", f.File, sum, p)
		}
	}
}

// assertRefused checks that a client got no complete copy of the file: an
// error status, or fewer bytes than the file has.
func assertRefused(t *testing.T, what string, f FixtureFile, h Hashed) {
	t.Helper()
	if h.Status == http.StatusOK && h.N >= f.Size {
		t.Errorf("%s: client got all %d bytes of %s with 200 (sha256 %s), want a refusal", what, h.N, f.File, h.SHA256)
	}
}

// TestPacmanThroughFlocon: pacman -Sy/-Sw through flocon gets every valid
// package byte for byte; a second pacman with an empty cache is served from
// flocon's store: the upstream saw each package once.
func TestPacmanThroughFlocon(t *testing.T) {
	t.Parallel()
	b := newRig(t)
	pkgs := b.okPackages()

	first := NewPacman(t, b.fx.Keyring, []string{b.d.Server()})
	first.Sy()
	first.Sw(names(pkgs)...)
	assertCached(t, first, pkgs)

	// pacman sends If-Modified-Since from the db's Last-Modified: flocon must
	// answer 304, which leaves pacman's copy untouched (same inode and ctime)
	before := syncDBStats(t, first)
	first.Sy()
	if after := syncDBStats(t, first); after != before {
		t.Errorf("second pacman -Sy rewrote its sync dbs (%v -> %v): flocon did not answer 304", before, after)
	}

	second := NewPacman(t, b.fx.Keyring, []string{b.d.Server()})
	second.Sy()
	second.Sw(names(pkgs)...)
	assertCached(t, second, pkgs)

	for _, f := range pkgs {
		if n := b.up.CountGETs(f.URLPath(b.fx.Arch)); n != 1 {
			t.Errorf("upstream GETs of %s: %d, want 1", f.File, n)
		}
		if n := b.up.CountGETs(f.URLPath(b.fx.Arch) + ".sig"); n > 1 {
			t.Errorf("upstream GETs of %s.sig: %d, want at most 1", f.File, n)
		}
		if !b.d.HasBlob(f.CID()) {
			t.Errorf("store has no blob %s for %s", f.CID(), f.File)
		}
	}
	if t.Failed() {
		t.Logf("upstream log:\n%s", b.up.LogString())
	}
}

// syncDBStats identifies pacman's copies of the sync dbs (inode, ctime).
func syncDBStats(t *testing.T, p *Pacman) [2][2]int64 {
	t.Helper()
	var out [2][2]int64
	for i, repo := range []string{"core", "extra"} {
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(p.Dir, "db", "sync", repo+".db"), &st); err != nil {
			t.Fatalf("pacman sync db: %v", err)
		}
		out[i] = [2]int64{int64(st.Ino), st.Ctim.Nano()}
	}
	return out
}

// TestConcurrentColdBigFile: 8 clients asking at once for a big package
// flocon does not have cause one upstream fetch, and all get the right bytes.
func TestConcurrentColdBigFile(t *testing.T) {
	t.Parallel()
	b := newRig(t)
	big := b.fx.Package(t, "big")
	b.syncDBs(t)

	const clients = 8
	results := make([]Hashed, clients)
	errs := make([]error, clients)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range clients {
		wg.Go(func() {
			<-start
			results[i], errs[i] = GetHashed(t.Context(), b.c, b.url(big))
		})
	}
	close(start)
	wg.Wait()
	for i := range clients {
		if errs[i] != nil {
			t.Errorf("client %d: %v", i, errs[i])
		} else if !results[i].Complete(big.Size, big.SHA256) {
			t.Errorf("client %d: status %d, %d bytes, sha256 %s, err %v; want 200, %d bytes, %s",
				i, results[i].Status, results[i].N, results[i].SHA256, results[i].Err, big.Size, big.SHA256)
		}
	}
	if n := b.up.CountGETs(big.URLPath(b.fx.Arch)); n != 1 {
		t.Errorf("upstream GETs of %s: %d, want 1\n%s", big.File, n, b.up.LogString())
	}
}

// TestResume: an interrupted download resumes with Range, for a plain client
// and for pacman with a leftover .part in its cache, on a cold daemon.
func TestResume(t *testing.T) {
	t.Parallel()
	fx := LoadFixtures(t)
	big := fx.Package(t, "big")
	orig := fx.ReadFile(t, big)
	const cut = 3 << 20

	t.Run("client drops then asks for the rest", func(t *testing.T) {
		t.Parallel()
		b := newRig(t)
		b.syncDBs(t)
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, b.url(big), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := b.c.Do(req)
		if err != nil {
			t.Fatalf("GET: %v", err)
		}
		head := make([]byte, cut)
		_, err = io.ReadFull(resp.Body, head)
		resp.Body.Close() // drop the connection mid-file
		if err != nil {
			t.Fatalf("status %d, reading the first %d bytes: %v", resp.StatusCode, cut, err)
		}
		if !bytes.Equal(head, orig[:cut]) {
			t.Fatal("first bytes differ from the package")
		}
		rest, err := GetHashed(t.Context(), b.c, b.url(big), "Range", fmt.Sprintf("bytes=%d-", cut))
		if err != nil {
			t.Fatalf("ranged GET: %v", err)
		}
		if rest.Status != http.StatusPartialContent || rest.N != big.Size-cut || rest.SHA256 != SHA256Hex(orig[cut:]) {
			t.Errorf("ranged GET: status %d, %d bytes (err %v); want 206 and the last %d bytes",
				rest.Status, rest.N, rest.Err, big.Size-cut)
		}
		// the download outlives the client that started it
		if n := b.up.CountGETs(big.URLPath(b.fx.Arch)); n != 1 {
			t.Errorf("upstream GETs of %s: %d, want 1\n%s", big.File, n, b.up.LogString())
		}
	})

	t.Run("pacman with a leftover part file", func(t *testing.T) {
		t.Parallel()
		b := newRig(t)
		tap := NewTap(t, b.d.URL()) // shows what pacman asked flocon
		p := NewPacman(t, b.fx.Keyring, []string{tap.Server()})
		p.Sy()
		if err := os.WriteFile(p.CacheFile(big.File+".part"), orig[:cut], 0o644); err != nil {
			t.Fatal(err)
		}
		p.Sw("big")
		assertCached(t, p, []FixtureFile{big})
		resumed := tap.Count(func(r Request) bool {
			return matchPath(r.Path, big.File) && r.Range == fmt.Sprintf("bytes=%d-", cut) &&
				r.Status == http.StatusPartialContent && r.Bytes == big.Size-cut
		})
		if resumed != 1 {
			t.Errorf("pacman's requests for %s: want one Range: bytes=%d- answered 206 with the rest\n%s",
				big.File, cut, tap.LogString())
		}
	})
}

// TestMirrorFailover: with mirrors in the order dead port, always 500, good,
// pacman gets its packages through flocon.
func TestMirrorFailover(t *testing.T) {
	t.Parallel()
	fx := LoadFixtures(t)
	bad := NewUpstream(t, fx.Mirror, WithFaults(Fault{Kind: Fault500}))
	good := NewUpstream(t, fx.Mirror)
	d := StartDaemon(t, DaemonConfig{
		Mirrors: []string{DeadMirror(t), bad.Mirror(), good.Mirror()},
		Keyring: fx.Keyring,
	})
	files := []FixtureFile{fx.Package(t, "hello"), fx.Package(t, "pactest-tool"), fx.Package(t, "epochpkg")}
	p := NewPacman(t, fx.Keyring, []string{d.Server()})
	p.Sy()
	p.Sw(names(files)...)
	assertCached(t, p, files)
	for _, f := range files {
		if n := good.CountGETs(f.File); n != 1 {
			t.Errorf("good mirror GETs of %s: %d, want 1", f.File, n)
		}
	}
	if n := len(bad.Requests()); n == 0 {
		t.Error("the 500 mirror was never tried: mirror order not kept")
	}
}

// TestMissingFile404Fast: a file that exists nowhere gets a 404 quickly
// enough for pacman to move on to its next server (a functional deadline,
// kept generous: 2 s).
func TestMissingFile404Fast(t *testing.T) {
	t.Parallel()
	fx := LoadFixtures(t)
	hello := fx.Package(t, "hello")
	b := newRig(t, Fault{Kind: Fault404, File: hello.File}, Fault{Kind: Fault404, File: hello.File + ".sig"})
	b.syncDBs(t)
	tests := []struct{ name, path string }{
		{"not in any db", "/core/os/x86_64/nosuchpkg-1.0-1-x86_64.pkg.tar.zst"},
		{"signature of a package not in any db", "/core/os/x86_64/nosuchpkg-1.0-1-x86_64.pkg.tar.zst.sig"},
		{"in the db but on no mirror", hello.URLPath(fx.Arch)},
		{"db signature the mirror lacks", "/core/os/x86_64/core.db.sig"},
		{"unknown repo", "/nosuchrepo/os/x86_64/nosuchrepo.db"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			begin := time.Now()
			h, err := GetHashed(t.Context(), b.c, b.d.URL()+tc.path)
			elapsed := time.Since(begin)
			if err != nil {
				t.Fatalf("GET: %v", err)
			}
			if h.Status != http.StatusNotFound {
				t.Errorf("status %d, want 404", h.Status)
			}
			if elapsed > 2*time.Second {
				t.Errorf("404 took %s, want < 2s (pacman gives up on slow servers)", elapsed)
			}
		})
	}
}

// corruptSHA256 is the sha256 of the file as FaultCorrupt serves it.
func corruptSHA256(t *testing.T, fx *Fixtures, f FixtureFile) string {
	t.Helper()
	b := fx.ReadFile(t, f)
	b[len(b)/2] ^= 0xff
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestCorruptUpstreamNotStored: bytes that do not match the db are neither
// stored nor handed out complete, on the first request or a later one, and
// the log says why.
func TestCorruptUpstreamNotStored(t *testing.T) {
	t.Parallel()
	fx := LoadFixtures(t)
	for _, name := range []string{"hello", "big"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := fx.Package(t, name)
			b := newRig(t, Fault{Kind: FaultCorrupt, File: f.File})
			b.syncDBs(t)
			bad := corruptSHA256(t, fx, f)
			for _, attempt := range []string{"first", "later"} {
				h, err := GetHashed(t.Context(), b.c, b.url(f))
				if err == nil {
					assertRefused(t, attempt+" request", f, h)
				}
				assertNotStored(t, b.d, f, bad)
			}
			reason := regexp.MustCompile(`(?i)sha256 does not match|digest|mismatch`)
			// info lines reach the log in batches (at most 100 ms late)
			Eventually(t, 5*time.Second, "a flocon log line saying why it refused, matching "+reason.String(),
				func() bool { return b.d.LogMatches(reason) })
		})
	}
}

// TestKillDuringDownload: a daemon killed with SIGKILL in the middle of a
// download restarts with a clean tmp/ and serves the right bytes.
func TestKillDuringDownload(t *testing.T) {
	t.Parallel()
	fx := LoadFixtures(t)
	big := fx.Package(t, "big")
	b := newRig(t, Fault{Kind: FaultSlow, File: big.File, Chunk: 256 << 10, Delay: 50 * time.Millisecond})
	b.syncDBs(t)

	var received atomic.Int64
	clientDone := make(chan struct{})
	go func() {
		defer close(clientDone)
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, b.url(big), nil)
		if err != nil {
			return
		}
		resp, err := b.c.Do(req)
		if err != nil {
			return
		}
		defer resp.Body.Close()
		buf := make([]byte, 64<<10)
		for {
			n, err := resp.Body.Read(buf)
			received.Add(int64(n))
			if err != nil {
				return
			}
		}
	}()
	Eventually(t, 60*time.Second, "the download to be in flight", func() bool {
		return received.Load() >= 1<<20 || dirSize(b.d.DataDir+"/tmp") >= 1<<20
	})
	b.d.Kill()
	<-clientDone
	if received.Load() >= big.Size {
		t.Fatalf("client got the whole file (%d bytes) before the kill; slow the upstream down", received.Load())
	}

	t.Logf("tmp/ after SIGKILL: %v", b.d.TmpFiles())
	b.up.SetFaults()
	b.d.Start()
	if left := b.d.TmpFiles(); len(left) > 0 {
		t.Errorf("tmp/ after restart holds %v, want it empty", left)
	}
	h, err := GetHashed(t.Context(), b.c, b.url(big))
	if err != nil {
		t.Fatalf("GET after restart: %v", err)
	}
	if !h.Complete(big.Size, big.SHA256) {
		t.Errorf("after restart: status %d, %d bytes, err %v; want the package", h.Status, h.N, h.Err)
	}
	// The client gets its last byte once the bytes are proven; the blob is
	// published just after (fsync, rename, index row).
	Eventually(t, 10*time.Second, "blob "+big.CID()+" in the store after the download", func() bool {
		return b.d.HasBlob(big.CID())
	})
	if err := b.d.Stop(); err != nil {
		t.Errorf("flocon did not exit cleanly on SIGTERM: %v", err)
	}
}

func dirSize(dir string) int64 {
	var n int64
	for _, f := range listFiles(dir) {
		if st, err := os.Stat(dir + "/" + f); err == nil {
			n += st.Size()
		}
	}
	return n
}

// refusalReasons maps a manifest verdict to what flocon's log must say.
var refusalReasons = map[string]*regexp.Regexp{
	"bad-signature":     regexp.MustCompile(`(?i)signature is invalid|sha256 does not match`),
	"bad-checksum":      regexp.MustCompile(`(?i)sha256 does not match|signature is invalid`),
	"revoked-key":       regexp.MustCompile(`(?i)revoked|disabled`),
	"unknown-key":       regexp.MustCompile(`(?i)not in the keyring|unknown key`),
	"untrusted-key":     regexp.MustCompile(`(?i)not trusted|untrusted`),
	"missing-signature": regexp.MustCompile(`(?i)no signature`),
	"renamed":           regexp.MustCompile(`(?i)identity does not match`),
}

// TestTrust: through flocon, the real pacman gets every valid package (see
// TestPacmanThroughFlocon) and none of the bad ones: for each, flocon lets no
// complete file out, stores nothing, and logs the reason next to the file.
func TestTrust(t *testing.T) {
	t.Parallel()
	b := newRig(t)
	p := NewPacman(t, b.fx.Keyring, []string{b.d.Server()})
	p.Sy()
	p.Sw(names(b.okPackages())...)
	assertCached(t, p, b.okPackages())

	for _, f := range b.fx.Files {
		reason, ok := refusalReasons[f.Expect]
		if !ok || !f.InDB {
			continue
		}
		t.Run(f.Name, func(t *testing.T) { //nolint:paralleltest // the subtests share one pacman (its db lock)
			if out, err := p.Run("-Sw", f.Name); err == nil {
				t.Errorf("pacman -Sw %s through flocon succeeded, want a refusal\n%s", f.Name, out)
			}
			if _, err := os.Stat(p.CacheFile(f.File)); err == nil {
				t.Errorf("pacman's cache holds %s", f.File)
			}
			h, err := GetHashed(t.Context(), b.c, b.url(f))
			if err == nil {
				assertRefused(t, "GET", f, h)
			}
			assertNotStored(t, b.d, f)
			// info lines reach the log in batches (at most 100 ms late)
			Eventually(t, 5*time.Second, fmt.Sprintf("a flocon log line naming %s (file, package or CID) and matching %s",
				f.File, reason), func() bool { return logSays(b.d, reason, f) })
		})
	}
}

// logSays reports whether a log line names the file (file name, package
// name or CID) and matches reason.
func logSays(d *Daemon, reason *regexp.Regexp, f FixtureFile) bool {
	names := regexp.MustCompile(regexp.QuoteMeta(f.File) + "|" + regexp.QuoteMeta(f.Name) + "|" + f.CID())
	for _, line := range regexp.MustCompile(`\r?\n`).Split(d.Logs(), -1) {
		if reason.MatchString(line) && names.MatchString(line) {
			return true
		}
	}
	return false
}

// TestMirrorCutMidFile: a mirror that drops the connection in the middle of
// the big package does not fail the client: flocon goes on from the next
// mirror with Range (keeping what it has) and the client gets the exact bytes.
func TestMirrorCutMidFile(t *testing.T) {
	t.Parallel()
	fx := LoadFixtures(t)
	big := fx.Package(t, "big")
	const cut = 5 << 20
	cutting := NewUpstream(t, fx.Mirror, WithFaults(Fault{Kind: FaultCut, File: big.File, Bytes: cut}))
	good := NewUpstream(t, fx.Mirror)
	d := StartDaemon(t, DaemonConfig{Mirrors: []string{cutting.Mirror(), good.Mirror()}, Keyring: fx.Keyring})
	c := HTTPClient(t)
	if r := Get(t, c, d.FileURL("extra", fx.Arch, "extra.db")); r.Status != http.StatusOK {
		t.Fatalf("extra.db through flocon: status %d", r.Status)
	}
	h, err := GetHashed(t.Context(), c, d.FileURL(big.Repo, fx.Arch, big.File))
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	if !h.Complete(big.Size, big.SHA256) {
		t.Errorf("status %d, %d bytes, err %v; want the package", h.Status, h.N, h.Err)
	}
	// what the cutting mirror sent is kept: the good one is asked for the rest
	resumed := good.Count(func(r Request) bool {
		return matchPath(r.Path, big.File) && r.Range == fmt.Sprintf("bytes=%d-", cut)
	})
	if cutting.CountGETs(big.File) == 0 || resumed != 1 {
		t.Errorf("want the cutting mirror tried first, then the good one with Range: bytes=%d-\ncutting:\n%sgood:\n%s",
			cut, cutting.LogString(), good.LogString())
	}
}

// TestHostilePaths: request paths that try to leave the pacman layout get
// 400 or 404, never a file of the host.
func TestHostilePaths(t *testing.T) {
	t.Parallel()
	b := newRig(t)
	paths := []string{
		"/core/os/x86_64/../../../../../../etc/passwd",
		"/core/os/x86_64/..%2f..%2f..%2f..%2fetc%2fpasswd",
		"/core/os/x86_64/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
		"/core/os/x86_64/..",
		"/../../../../etc/passwd",
		"/core/os/..%2f..%2f..%2fetc/passwd",
		"/core/os/x86_64/hello-2.0-2-x86_64.pkg.tar.zst%00.sig",
		"/core/os/x86_64/%2fetc%2fpasswd",
		"/core/os/x86_64/blobs",
		"/core/os/x86_64/tmp",
		"/core/os/x86_64/%252e%252e/%252e%252e/etc/passwd",
		"/core/os/x86_64/%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd",
		"/core/os/x86_64/..;/..;/etc/passwd",
		"/core/os/x86_64/....//....//etc/passwd",
		"/core/os/x86_64/..\\..\\..\\etc\\passwd",
		"/core/os/x86_64/%5c..%5c..%5cetc%5cpasswd",
		"//etc/passwd",
		"/core/os/x86_64//etc/passwd",
		"/core/os/x86_64/.hidden.pkg.tar.zst",
		"/core/os/x86_64/core.db/../../../../etc/passwd",
		"/core/os/%2e%2e/%2e%2e/etc/passwd",
		"/core/os/x86_64/index",
		"/core/os/x86_64/identity.key",
		"/core/os/x86_64/admin.sock",
		"/core/os/x86_64/hello-2.0-2-x86_64.pkg.tar.zst/..",
		"/core/os/x86_64/" + strings.Repeat("a", 4096) + ".pkg.tar.zst",
		"/etc/os/x86_64/passwd",
		"/core/os/../../../../proc/self/environ",
	}
	for _, p := range paths {
		t.Run(p, func(t *testing.T) {
			t.Parallel()
			// Opaque keeps the path exactly as written (no client-side cleaning)
			req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, b.d.URL(), nil)
			if err != nil {
				t.Fatal(err)
			}
			req.URL.Opaque = p
			resp, err := b.c.Do(req)
			if err != nil {
				t.Fatalf("GET %s: %v", p, err)
			}
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
			switch resp.StatusCode {
			case http.StatusBadRequest, http.StatusNotFound:
			default:
				t.Errorf("status %d, want 400 or 404 (after redirects)", resp.StatusCode)
			}
			if bytes.Contains(body, []byte("root:")) || bytes.Contains(body, []byte("PATH=")) {
				t.Errorf("answer holds a file of the host:\n%s", body)
			}
		})
	}
}

// TestMirrorlist: with --mirrorlist instead of --mirror, flocon reads the
// mirrors from a pacman mirrorlist, skips the line that points at itself and
// comments, and serves pacman from the mirror that is listed.
func TestMirrorlist(t *testing.T) {
	t.Parallel()
	fx := LoadFixtures(t)
	up := NewUpstream(t, fx.Mirror)
	listen := FreeAddr(t)
	list := filepath.Join(TempDir(t, "mirrorlist"), "mirrorlist")
	content := "## flocon first, as the README says\n" +
		"Server = http://" + listen + "/$repo/os/$arch\n" +
		"#Server = http://127.0.0.1:1/$repo/os/$arch\n" +
		"Server = " + up.Mirror() + "\n"
	if err := os.WriteFile(list, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	d := StartDaemon(t, DaemonConfig{Listen: listen, Keyring: fx.Keyring, Args: []string{"--mirrorlist", list}})
	hello := fx.Package(t, "hello")
	p := NewPacman(t, fx.Keyring, []string{d.Server()})
	p.Sy()
	p.Sw(hello.Name)
	assertCached(t, p, []FixtureFile{hello})
	if n := up.CountGETs(hello.File); n != 1 {
		t.Errorf("upstream GETs of %s: %d, want 1", hello.File, n)
	}
}
