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
	lan := newLAN(t)
	mirror := "http://" + lan.gateway() + ":" + portOf(t, up.URL()) + "/$repo/os/$arch"
	const machines = 3
	ds := make([]*Daemon, machines)
	ids := make([]string, machines)
	ips := make([]string, machines)
	for i := range machines {
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
	c := &http.Client{}
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
	ds[0].Kill()

	for i := 1; i < machines; i++ {
		h := <-gets[i].done
		if h.Err != nil || h.Status != http.StatusOK || h.SHA256 != big.SHA256 {
			t.Errorf("machine %d: status %d, %d bytes, sha256 %s (%v); want the signed %s",
				i, h.Status, h.N, h.SHA256, h.Err, big.SHA256)
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
