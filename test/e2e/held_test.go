package e2e

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"
)

// What held when issue 10 attacked flocon from outside, kept as tests:
// kill -9 at random points, a full disk, 200 concurrent clients (hostile
// paths: TestHostilePaths).

// TestKillAtRandomPoints: SIGKILL at random moments of downloads in flight
// (seed logged) never leaves a blob that is not its CID's bytes, a temp
// file, or an index that points at the wrong bytes: after each restart both
// packages are served whole and exact.
func TestKillAtRandomPoints(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rnd := rand.New(rand.NewPCG(seed, seed>>1))
	fx := LoadFixtures(t)
	big, hello := fx.Package(t, "big"), fx.Package(t, "hello")
	b := newRig(t, Fault{Kind: FaultSlow, File: big.File, Chunk: 1 << 20, Delay: 40 * time.Millisecond})
	b.syncDBs(t)
	for round := range 3 {
		var wg sync.WaitGroup
		for _, f := range []FixtureFile{big, hello} {
			wg.Go(func() { _, _ = GetHashed(t.Context(), b.c, b.url(f)) })
		}
		time.Sleep(time.Duration(rnd.Int64N(int64(2 * time.Second)))) // a random point of the download
		b.d.Kill()
		wg.Wait()
		b.d.Start()
		if left := b.d.TmpFiles(); len(left) > 0 {
			t.Errorf("round %d: tmp/ after restart holds %v", round, left)
		}
		assertBlobsIntact(t, b.d)
	}
	b.up.SetFaults()
	for _, f := range []FixtureFile{big, hello} {
		h, err := GetHashed(t.Context(), b.c, b.url(f))
		if err != nil || !h.Complete(f.Size, f.SHA256) {
			t.Errorf("%s after the kills: status %d, %d bytes, err %v/%v; want it whole", f.File, h.Status, h.N, err, h.Err)
		}
	}
}

// TestManyClients: 200 clients at once, each asking a cold package whole and
// a part of the cold big one (so they all share downloads in flight), get
// exactly the right bytes, and the mirror sends each package once.
func TestManyClients(t *testing.T) {
	t.Parallel()
	b := newRig(t)
	big, hello := b.fx.Package(t, "big"), b.fx.Package(t, "hello")
	orig := b.fx.ReadFile(t, big)
	b.syncDBs(t)
	const clients = 200
	errs := make(chan error, clients)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			<-start
			h, err := GetHashed(t.Context(), b.c, b.url(hello))
			if err != nil || !h.Complete(hello.Size, hello.SHA256) {
				errs <- fmt.Errorf("client %d, %s: status %d, %d bytes, %v/%v", i, hello.File, h.Status, h.N, err, h.Err)
				return
			}
			first := int64(i) * (big.Size / clients)
			last := min(first+256<<10, big.Size) - 1
			h, err = GetHashed(t.Context(), b.c, b.url(big), "Range", fmt.Sprintf("bytes=%d-%d", first, last))
			if err != nil || h.Status != http.StatusPartialContent || h.SHA256 != SHA256Hex(orig[first:last+1]) {
				errs <- fmt.Errorf("client %d, %s bytes %d-%d: status %d, %d bytes, %v/%v", i, big.File, first, last, h.Status, h.N, err, h.Err)
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, f := range []FixtureFile{big, hello} {
		if n := b.up.CountGETs(f.URLPath(b.fx.Arch)); n != 1 {
			t.Errorf("upstream GETs of %s: %d, want 1", f.File, n)
		}
	}
}

// TestDiskFull: with the data dir on a small tmpfs, a package bigger than
// the free space fails cleanly (no complete body, nothing stored, tmp/
// emptied) and the daemon goes on serving what fits.
func TestDiskFull(t *testing.T) {
	t.Parallel()
	fx := LoadFixtures(t)
	big, hello := fx.Package(t, "big"), fx.Package(t, "hello")
	dir := TempDir(t, "full")
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", dir).CombinedOutput(); err != nil {
		// Like network namespaces, a sandbox may forbid mounts even to root.
		t.Skipf("cannot mount a small tmpfs for a full disk (%v): %s", err, out)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	up := NewUpstream(t, fx.Mirror)
	d := StartDaemon(t, DaemonConfig{Mirrors: []string{up.Mirror()}, Keyring: fx.Keyring, DataDir: data})
	c := HTTPClient(t)
	if r := Get(t, c, d.FileURL("extra", fx.Arch, "extra.db")); r.Status != http.StatusOK {
		t.Fatalf("extra.db: status %d", r.Status)
	}
	if r := Get(t, c, d.FileURL("core", fx.Arch, "core.db")); r.Status != http.StatusOK {
		t.Fatalf("core.db: status %d", r.Status)
	}
	h, err := GetHashed(t.Context(), c, d.FileURL(big.Repo, fx.Arch, big.File))
	if err == nil && h.Status == http.StatusOK && h.N >= big.Size {
		t.Fatalf("%s (%d bytes) served whole from a 40 MB disk", big.File, big.Size)
	}
	d.WaitLog(regexpNoSpace, 5*time.Second) // info lines come in batches, at most 100 ms late
	Eventually(t, 10*time.Second, "tmp/ emptied after the failed download", func() bool { return len(d.TmpFiles()) == 0 })
	if d.HasBlob(big.CID()) {
		t.Errorf("%s stored though it did not fit", big.File)
	}
	assertBlobsIntact(t, d)
	h, err = GetHashed(t.Context(), c, d.FileURL(hello.Repo, fx.Arch, hello.File))
	if err != nil || !h.Complete(hello.Size, hello.SHA256) {
		t.Errorf("%s after the full disk: status %d, %d bytes, %v/%v", hello.File, h.Status, h.N, err, h.Err)
	}
}

var regexpNoSpace = regexp.MustCompile(`(?i)no space left on device`)
