package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestLAN runs three machines (network namespaces on one bridge, real
// multicast, discovery by mDNS only), each with its own `flocon serve`, and
// an upstream mirror on the bridge:
//
//  1. pacman on A downloads through A; the mirror stops; pacman on B and C
//     get the same packages from the peers, byte-identical;
//  2. a blob in A's store is tampered with on disk: A catches it before
//     sending, or C catches it and bans A; C still completes (from B) and
//     nobody keeps bad bytes;
//  3. a hostile peer sends garbage: C bans it (flocon bans shows reason and
//     evidence), it can no longer connect, the ban survives C's restart,
//     flocon unban lets it back;
//  4. A, B and C ask for the same cold 50 MB package at once: the upstream
//     sends it once.
func TestLAN(t *testing.T) {
	lan := newLAN(t)
	fx := LoadFixtures(t)
	up := NewUpstream(t, fx.Mirror, WithAddr(lan.gateway()+":0"))
	var nodes [3]*Daemon
	for i := range nodes {
		ns, ip := lan.add(i)
		nodes[i] = lanDaemon(t, fx, up, ns, ip)
	}
	a, b, c := nodes[0], nodes[1], nodes[2]
	ids := [3]string{peerIDOf(t, a), peerIDOf(t, b), peerIDOf(t, c)}
	waitPeers(t, a, ids[1], ids[2])
	waitPeers(t, b, ids[0], ids[2])
	waitPeers(t, c, ids[0], ids[1])

	all := fx.Select(ExpectOK, true)
	var pkgs []FixtureFile
	var spare FixtureFile // cold for the hostile peer's lie
	for _, f := range all {
		switch {
		case f.Name == "big":
		case spare.File == "":
			spare = f
		default:
			pkgs = append(pkgs, f)
		}
	}
	if len(pkgs) < 2 || spare.File == "" {
		t.Fatalf("fixture repo has too few valid packages: %d", len(all))
	}
	pacmans := [3]*Pacman{}
	for i, d := range nodes {
		pacmans[i] = NewPacman(t, fx.Keyring, []string{d.Server()})
		pacmans[i].Sy() // databases only ever come from the mirror
	}

	t.Log("step 1: peers serve when the mirror is gone")
	{
		pacmans[0].Sw(names(pkgs)...)
		assertCached(t, pacmans[0], pkgs)
		up.Stop()
		pacmans[1].Sw(names(pkgs)...)
		assertCached(t, pacmans[1], pkgs)
		for _, f := range pkgs {
			if n := up.CountGETs(f.URLPath(fx.Arch)); n != 1 {
				t.Errorf("upstream GETs of %s: %d, want 1 (A's)", f.File, n)
			}
		}
	}

	t.Log("step 2: tampered blob on A")
	{
		victim := pkgs[0]
		tamper(t, filepath.Join(a.DataDir, "blobs", victim.CID()))
		// B is paused so that C must ask A, whose copy is now bad: A must
		// not send it whole (it checks as it sends), or C must ban A.
		b.Signal(syscall.SIGSTOP)
		got, err := GetHashed(t.Context(), HTTPClient(t), c.FileURL(victim.Repo, fx.Arch, victim.File))
		b.Signal(syscall.SIGCONT)
		if err == nil && got.Complete(victim.Size, victim.SHA256) {
			t.Fatalf("C got %s with only a tampered copy on the LAN and no mirror", victim.File)
		}
		// A drops its copy right after resetting the stream: poll briefly.
		caught, bannedA := false, false
		for deadline := time.Now().Add(5 * time.Second); !caught && !bannedA && time.Now().Before(deadline); {
			caught = !a.HasBlob(victim.CID())
			for _, ban := range bansOf(t, c) {
				bannedA = bannedA || ban.Peer == ids[0]
			}
			time.Sleep(100 * time.Millisecond)
		}
		if !caught && !bannedA {
			t.Errorf("A still holds the tampered blob and C did not ban A")
		}
		// With B back, C completes every package (the victim from B).
		pacmans[2].Sw(names(pkgs)...)
		assertCached(t, pacmans[2], pkgs)
		for _, ban := range bansOf(t, c) {
			if ban.Peer == ids[1] {
				t.Errorf("C banned B, an honest peer: %+v", ban)
			}
		}
		for _, d := range nodes {
			assertBlobsIntact(t, d)
		}
	}

	t.Log("step 3: hostile peer banned")
	{
		up.Start()
		ns, _ := lan.add(3)
		h := startHostile(t, ns, spare.CID(), spare.Size)
		waitPeers(t, c, h.id)
		mark := len(h.output())
		// A client reading while the lie streams in is cut (it never gets a
		// whole bad file); the download itself goes on from the mirror, so
		// the client's retry gets the package.
		var got Hashed
		var err error
		for range 3 {
			got, err = GetHashed(t.Context(), HTTPClient(t), c.FileURL(spare.Repo, fx.Arch, spare.File))
			if err == nil && got.Complete(spare.Size, spare.SHA256) {
				break
			}
			if got.Status == 200 && got.N >= spare.Size && got.SHA256 != spare.SHA256 {
				t.Fatalf("C served the hostile peer's bytes whole: %+v", got)
			}
			time.Sleep(500 * time.Millisecond)
		}
		if err != nil || !got.Complete(spare.Size, spare.SHA256) {
			t.Fatalf("C with a hostile peer around: %+v, %v", got, err)
		}
		assertBan(t, c, h.id, spare)
		h.waitLineAfter(t, mark, regexp.MustCompile(`^reach `+regexp.QuoteMeta(ids[2])+` fail`), 30*time.Second)

		c.Restart()
		assertBan(t, c, h.id, spare)
		time.Sleep(2 * time.Second) // the hostile peer keeps trying
		for _, l := range h.output()[mark:] {
			if strings.HasPrefix(l, "reach "+ids[2]+" ok") {
				t.Fatalf("banned peer reached C: %s", l)
			}
		}
		mark = len(h.output())
		if out, err := flocon(t, c, "unban", h.id); err != nil {
			t.Fatalf("flocon unban: %v: %s", err, out)
		}
		h.waitLineAfter(t, mark, regexp.MustCompile(`^reach `+regexp.QuoteMeta(ids[2])+` ok`), 30*time.Second)
		for _, ban := range bansOf(t, c) {
			if ban.Peer == h.id {
				t.Fatalf("ban still listed after unban: %+v", ban)
			}
		}
	}

	t.Log("step 4: concurrent cold download goes upstream once")
	{
		up.Start()
		big := fx.Package(t, "big")
		var wg sync.WaitGroup
		results := make([]Hashed, len(nodes))
		errs := make([]error, len(nodes))
		start := make(chan struct{})
		for i, d := range nodes {
			wg.Go(func() {
				<-start
				results[i], errs[i] = GetHashed(t.Context(), HTTPClient(t), d.FileURL(big.Repo, fx.Arch, big.File))
			})
		}
		close(start)
		wg.Wait()
		for i := range nodes {
			if errs[i] != nil || !results[i].Complete(big.Size, big.SHA256) {
				t.Errorf("node %d: %+v, %v", i, results[i], errs[i])
			}
		}
		if n := up.CountGETs(big.URLPath(fx.Arch)); n != 1 {
			t.Errorf("upstream GETs of %s: %d, want 1\n%s", big.File, n, up.LogString())
		}
	}
}

// tamper flips one byte in the middle of a blob file, keeping its size.
func tamper(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("tamper: %v", err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatalf("tamper: %v", err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatalf("tamper: %v", err)
	}
}

// assertBan checks that d lists p as banned, with the evidence of f.
func assertBan(t *testing.T, d *Daemon, p string, f FixtureFile) {
	t.Helper()
	for _, ban := range bansOf(t, d) {
		if ban.Peer == p {
			if ban.Reason == "" || ban.Evidence.CID != f.CID() || ban.Evidence.WantSHA256 != f.SHA256 ||
				ban.Evidence.GotSHA256 == "" || ban.Evidence.GotSHA256 == f.SHA256 {
				t.Errorf("ban of %s lacks reason or evidence: %+v", p, ban)
			}
			return
		}
	}
	out, _ := flocon(t, d, "bans")
	t.Fatalf("%s not banned; flocon bans:\n%s", p, out)
}
