package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"path"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestKillSourceMidTransfer (issue 7, churn): three machines on a LAN, p2p
// over QUIC only (a process killed with SIGKILL sends nothing over QUIC),
// fetch the big package; the first machine's download is the one the
// others stream, and it is killed mid-transfer. Every survivor completes
// with the signed bytes, and the mirror sends the package about once: one
// survivor resumes from the mirror at its offset, the other follows it
// instead of each going back to the mirror.
func TestKillSourceMidTransfer(t *testing.T) {
	fx := LoadFixtures(t)
	if fx.BigMB == 0 {
		t.Skip("needs the big fixture package (FLOCON_E2E_BIG_MB > 0)")
	}
	requireNetns(t)
	big := fx.Package(t, "big")
	// About 12 MB/s from the mirror: the transfer lasts a few seconds.
	up := NewUpstream(t, fx.Mirror, WithAddr("0.0.0.0:0"),
		WithFaults(Fault{Kind: FaultSlow, File: big.File, Chunk: 256 << 10, Delay: 20 * time.Millisecond}))
	const machines = 3
	ds, ips := churnLAN(t, fx, up, machines)
	c := HTTPClient(t) // its idle connections close with the test (goleak)
	up.ResetLog()

	gets := make([]*countingGet, machines)
	gets[0] = startGet(t, c, ds[0].FileURL(big.Repo, fx.Arch, big.File))
	gets[0].waitBytes(t, 4<<20) // machine 0 is in flight
	for i := 1; i < machines; i++ {
		gets[i] = startGet(t, c, ds[i].FileURL(big.Repo, fx.Arch, big.File)) // they follow it (or one another)
	}
	for i := 1; i < machines; i++ {
		gets[i].waitBytes(t, 1<<20)
	}
	gets[0].waitBytes(t, 12<<20) // well under way, far from done
	deadID := peerIDOf(t, ds[0])
	killed := time.Now()
	ds[0].Kill()

	for i := 1; i < machines; i++ {
		h := <-gets[i].done
		if h.Err != nil || h.Status != http.StatusOK || h.SHA256 != big.SHA256 {
			t.Errorf("machine %d: status %d, %d bytes, sha256 %s (%v); want the signed %s",
				i, h.Status, h.N, h.SHA256, h.Err, big.SHA256)
		}
	}
	// How long the survivors took to find the dead peer (figures, not a
	// check: the liveness tests in node/p2p check the rule).
	for i := 1; i < machines; i++ {
		if at, line := firstSourceFailure(ds[i], deadID); !at.IsZero() {
			t.Logf("machine %d gave up the killed peer %s after the kill: %s", i, at.Sub(killed).Round(time.Millisecond), line)
		}
	}
	reqs := mirrorRequestsDone(t, up, big.File)
	var sent int64
	resumed := map[string]bool{}
	for _, r := range reqs {
		sent += r.Bytes
		if ip := strings.Split(r.Remote, ":")[0]; ip != ips[0] {
			resumed[ip] = true
		}
	}
	ratio := float64(sent) / float64(big.Size)
	t.Logf("mirror sent %d bytes of the package (%.3fx); survivors that went to the mirror: %v", sent, ratio, resumed)
	if ratio > 1.10 {
		t.Errorf("mirror sent %.3fx the package; after the kill one survivor should resume and the others follow it", ratio)
	}
	if len(resumed) != 1 {
		t.Errorf("%d survivors went to the mirror (%v), want exactly one", len(resumed), resumed)
	}
	for i := 1; i < machines; i++ {
		assertBlobsIntact(t, ds[i])
	}
}

// TestKillSourceRelist (issue 7, churn): the source list is re-made when
// the source dies. Machine B follows machine A's download from a slow
// mirror; machine C, which has the package complete, comes up only after
// B's lookup, so B's first list is A then the mirror. A is killed: B must
// find C in a fresh lookup and finish from it, not go back to the mirror.
func TestKillSourceRelist(t *testing.T) {
	fx := LoadFixtures(t)
	if fx.BigMB == 0 {
		t.Skip("needs the big fixture package (FLOCON_E2E_BIG_MB > 0)")
	}
	requireNetns(t)
	big := fx.Package(t, "big")
	up := NewUpstream(t, fx.Mirror, WithAddr("0.0.0.0:0"))
	ds, ips := churnLAN(t, fx, up, 3)
	a, b, cm := ds[0], ds[1], ds[2]
	c := HTTPClient(t) // its idle connections close with the test (goleak)
	if h := <-startGet(t, c, cm.FileURL(big.Repo, fx.Arch, big.File)).done; h.SHA256 != big.SHA256 {
		t.Fatalf("C's own copy: status %d, sha256 %s (%v)", h.Status, h.SHA256, h.Err)
	}
	if err := cm.Stop(); err != nil {
		t.Fatalf("stop C: %v", err)
	}
	// About 3 MB/s from now on: A's download lasts well past C's restart
	// (50 MiB: some 17 s).
	up.SetFaults(Fault{Kind: FaultSlow, File: big.File, Chunk: 64 << 10, Delay: 20 * time.Millisecond})
	up.ResetLog()
	getA := startGet(t, c, a.FileURL(big.Repo, fx.Arch, big.File))
	getA.waitBytes(t, 2<<20)
	getB := startGet(t, c, b.FileURL(big.Repo, fx.Arch, big.File)) // follows A
	getB.waitBytes(t, 1<<20)
	// B's lookup listens for late answers for 5 s (node.lookupBound); C
	// comes up after it, so only a fresh lookup can find C.
	time.Sleep(5 * time.Second)
	cm.Start()
	waitPeers(t, b, peerIDOf(t, cm))
	a.Kill()

	if h := <-getB.done; h.Err != nil || h.Status != http.StatusOK || h.SHA256 != big.SHA256 {
		t.Fatalf("B: status %d, %d bytes, sha256 %s (%v); want the signed %s", h.Status, h.N, h.SHA256, h.Err, big.SHA256)
	}
	for _, r := range mirrorRequestsDone(t, up, big.File) {
		if strings.Split(r.Remote, ":")[0] == ips[1] {
			t.Errorf("B asked the mirror for the package (Range %q, %d bytes); C had it complete on the LAN", r.Range, r.Bytes)
		}
	}
	assertBlobsIntact(t, b)
}

// churnLAN starts n machines on a LAN (p2p over QUIC only) that know one
// another and have the repo databases; it returns them and their addresses.
func churnLAN(t *testing.T, fx *Fixtures, up *Upstream, n int) ([]*Daemon, []string) {
	t.Helper()
	lan := newLAN(t)
	mirror := "http://" + lan.gateway() + ":" + portOf(t, up.URL()) + "/$repo/os/$arch"
	ds := make([]*Daemon, n)
	ids := make([]string, n)
	ips := make([]string, n)
	for i := range n {
		ns, ip := lan.add(i)
		ips[i] = ip
		ds[i] = StartDaemon(t, DaemonConfig{
			Mirrors: []string{mirror}, Keyring: fx.Keyring, P2P: true,
			Listen: ip + ":19433", Prefix: []string{"ip", "netns", "exec", ns},
			Args: []string{"--p2p-listen", "/ip4/0.0.0.0/udp/19432/quic-v1"},
		})
	}
	for i, d := range ds {
		ids[i] = peerIDOf(t, d)
	}
	c := HTTPClient(t) // its idle connections close with the test (goleak)
	for i, d := range ds {
		var others []string
		for j, id := range ids {
			if j != i {
				others = append(others, id)
			}
		}
		waitPeers(t, d, others...)
		for _, repo := range []string{"core", "extra"} {
			if r := Get(t, c, d.FileURL(repo, fx.Arch, repo+".db")); r.Status != http.StatusOK {
				t.Fatalf("machine %d: GET %s.db: status %d", i, repo, r.Status)
			}
		}
	}
	return ds, ips
}

// countingGet is a GET whose body bytes are counted as they come.
type countingGet struct {
	n    atomic.Int64
	done chan Hashed
}

func startGet(t *testing.T, c *http.Client, url string) *countingGet {
	g := &countingGet{done: make(chan Hashed, 1)}
	go func() {
		var h Hashed
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
		if err != nil {
			h.Err = err
			g.done <- h
			return
		}
		resp, err := c.Do(req)
		if err != nil {
			h.Err = err
			g.done <- h
			return
		}
		defer resp.Body.Close()
		sum := sha256.New()
		h.Status = resp.StatusCode
		h.N, h.Err = io.Copy(io.MultiWriter(sum, countWriter{&g.n}), resp.Body)
		h.SHA256 = hex.EncodeToString(sum.Sum(nil))
		g.done <- h
	}()
	return g
}

// waitBytes waits until the GET has received n bytes (a hang fails).
func (g *countingGet) waitBytes(t *testing.T, n int64) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); g.n.Load() < n; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the GET got %d bytes, never %d", g.n.Load(), n)
		}
	}
}

type countWriter struct{ n *atomic.Int64 }

func (w countWriter) Write(p []byte) (int, error) {
	w.n.Add(int64(len(p)))
	return len(p), nil
}

// mirrorRequestsDone returns the mirror's requests for file once every one
// has ended (the killed machine's ends when its connection drops).
func mirrorRequestsDone(t *testing.T, up *Upstream, file string) []Request {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var out []Request
		done := true
		for _, r := range up.Requests() {
			if path.Base(r.Path) == file {
				out = append(out, r)
				done = done && !r.Done.IsZero()
			}
		}
		if done || time.Now().After(deadline) {
			return out
		}
	}
}

// firstSourceFailure is the time and error of d's first "source failed"
// log line about peer id (zero when there is none).
func firstSourceFailure(d *Daemon, id string) (time.Time, string) {
	var first time.Time
	var what string
	for line := range strings.SplitSeq(d.Logs(), "\n") {
		if !strings.Contains(line, `msg="source failed"`) || !strings.Contains(line, id) {
			continue
		}
		ts, _, _ := strings.Cut(strings.TrimPrefix(line, "time="), " ")
		at, err := time.Parse(time.RFC3339Nano, ts)
		if err == nil && (first.IsZero() || at.Before(first)) {
			first, what = at, line[strings.Index(line, "err="):]
		}
	}
	return first, what
}
