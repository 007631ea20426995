package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// lanNet is a small LAN of network namespaces, one per machine, each with a
// veth on one bridge in the root namespace (multicast on, IGMP snooping off
// so mDNS floods like on a plain switch). The root namespace is the "router"
// at .1: the test's upstream mirror listens there.
type lanNet struct {
	t      testing.TB
	id     string // short random suffix: parallel runs do not collide
	bridge string
	subnet string // e.g. 10.213.7
}

// requireNetns skips when network namespaces cannot be made here (not root,
// no ip tool, a sandbox without CAP_NET_ADMIN).
func requireNetns(t testing.TB) {
	t.Helper()
	requireE2E(t)
	if os.Geteuid() != 0 {
		// Not forced by FLOCON_E2E_REQUIRE: a sandbox may forbid namespaces.
		t.Skip("LAN e2e test needs root (network namespaces, a bridge, veth pairs)")
	}
	requireTools(t, "ip")
	name := "flprobe" + randomHex(3)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Skipf("LAN e2e test needs `ip netns add` to work: %v: %s", err, out)
	}
	_ = exec.Command("ip", "netns", "del", name).Run()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// newLAN makes the bridge; machines are added with add.
func newLAN(t testing.TB) *lanNet {
	t.Helper()
	requireNetns(t)
	b := make([]byte, 2)
	_, _ = rand.Read(b)
	l := &lanNet{t: t, id: randomHex(2), subnet: fmt.Sprintf("10.%d.%d", 200+int(b[0])%50, b[1])}
	l.bridge = "flb" + l.id
	l.sh("ip", "link", "add", l.bridge, "type", "bridge", "mcast_snooping", "0")
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", l.bridge).Run() })
	l.sh("ip", "addr", "add", l.subnet+".1/24", "dev", l.bridge)
	l.sh("ip", "link", "set", l.bridge, "up", "multicast", "on")
	return l
}

// gateway is the root namespace's address on the LAN.
func (l *lanNet) gateway() string { return l.subnet + ".1" }

// add makes machine i (address .10+i) and returns its namespace name.
func (l *lanNet) add(i int) (ns, ip string) {
	l.t.Helper()
	ns = fmt.Sprintf("fl%s-%d", l.id, i)
	host := fmt.Sprintf("flv%s%d", l.id, i)
	ip = fmt.Sprintf("%s.%d", l.subnet, 10+i)
	l.sh("ip", "netns", "add", ns)
	l.t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	l.sh("ip", "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", ns)
	l.sh("ip", "link", "set", host, "master", l.bridge, "up")
	l.sh("ip", "netns", "exec", ns, "ip", "addr", "add", ip+"/24", "dev", "eth0")
	l.sh("ip", "netns", "exec", ns, "ip", "link", "set", "eth0", "up", "multicast", "on")
	l.sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
	return ns, ip
}

func (l *lanNet) sh(args ...string) {
	l.t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		l.t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// lanDaemon starts `flocon serve` in namespace ns with p2p on, discovery by
// mDNS only, the gateway on ip:19433.
func lanDaemon(t *testing.T, fx *Fixtures, up *Upstream, ns, ip string) *Daemon {
	t.Helper()
	return StartDaemon(t, DaemonConfig{
		Mirrors: []string{up.Mirror()}, Keyring: fx.Keyring, P2P: true,
		Listen: ip + ":19433", Prefix: []string{"ip", "netns", "exec", ns},
		Args: []string{"--p2p-listen", "/ip4/0.0.0.0/tcp/19432", "--p2p-listen", "/ip4/0.0.0.0/udp/19432/quic-v1"},
	})
}

// flocon runs a CLI subcommand against d's admin socket (unix sockets on
// the file system cross namespaces) and returns its output.
func flocon(t *testing.T, d *Daemon, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, Binary(t), append(args, "--admin-socket", d.AdminSocket)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// floconJSON runs a subcommand with --json and decodes its output. Right
// after a (re)start the daemon answers before its p2p side is up: retried.
func floconJSON(t *testing.T, d *Daemon, out any, args ...string) {
	t.Helper()
	s, err := flocon(t, d, append(args, "--json")...)
	for deadline := time.Now().Add(10 * time.Second); err != nil &&
		strings.Contains(s, "peer-to-peer is not running") && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		s, err = flocon(t, d, append(args, "--json")...)
	}
	if err != nil {
		t.Fatalf("flocon %s: %v: %s", strings.Join(args, " "), err, s)
	}
	if err := json.Unmarshal([]byte(s), out); err != nil {
		t.Fatalf("flocon %s: %v: %s", strings.Join(args, " "), err, s)
	}
}

type lanID struct {
	PeerID string `json:"peerId"`
}

type lanPeer struct {
	PeerID string `json:"peerId"`
}

type lanBan struct {
	Peer     string `json:"peer"`
	Reason   string `json:"reason"`
	Evidence struct {
		CID        string `json:"cid"`
		WantSHA256 string `json:"wantSha256"`
		GotSHA256  string `json:"gotSha256"`
	} `json:"evidence"`
}

func peerIDOf(t *testing.T, d *Daemon) string {
	t.Helper()
	var id lanID
	floconJSON(t, d, &id, "id")
	return id.PeerID
}

// waitPeers waits until d is connected to every peer in want.
func waitPeers(t *testing.T, d *Daemon, want ...string) {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for {
		var peers []lanPeer
		floconJSON(t, d, &peers, "peers")
		have := map[string]bool{}
		for _, p := range peers {
			have[p.PeerID] = true
		}
		missing := 0
		for _, w := range want {
			if !have[w] {
				missing++
			}
		}
		if missing == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s found %d of %d peers by mDNS: %+v", d.Listen, len(want)-missing, len(want), peers)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func bansOf(t *testing.T, d *Daemon) []lanBan {
	t.Helper()
	var bans []lanBan
	floconJSON(t, d, &bans, "bans")
	return bans
}

// hostileProc is the lying peer (test/e2e/hostile) running in a namespace.
type hostileProc struct {
	id    string
	mu    sync.Mutex
	lines []string
	cmd   *exec.Cmd
}

// startHostile builds and runs the hostile peer in ns, claiming c; more
// flags (--mode, --file) may follow.
func startHostile(t *testing.T, ns, c string, size int64, flags ...string) *hostileProc {
	t.Helper()
	bin := hostileBinary(t)
	h := &hostileProc{}
	h.cmd = exec.Command("ip", "netns", "exec", ns, bin, "--cid", c, "--size", fmt.Sprint(size))
	h.cmd.Args = append(h.cmd.Args, flags...)
	stdout, err := h.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	h.cmd.Stderr = h.cmd.Stdout
	if err := h.cmd.Start(); err != nil {
		t.Fatalf("start hostile peer: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.read(stdout)
	}()
	t.Cleanup(func() {
		_ = h.cmd.Process.Kill()
		_ = h.cmd.Wait()
		<-done
		if t.Failed() {
			t.Logf("hostile peer output:\n%s", strings.Join(h.output(), "\n"))
		}
	})
	h.id = h.waitLine(t, regexp.MustCompile(`^id (\S+)`), 30*time.Second)[1]
	return h
}

// hostileBin is the hostile peer, built once per test binary.
var hostileBin struct {
	once sync.Once
	path string
	err  error
}

func hostileBinary(t *testing.T) string {
	t.Helper()
	hostileBin.once.Do(func() {
		hostileBin.path = filepath.Join(suite.workDir, "hostile") // removed with the run
		build := exec.Command("go", "build", "-o", hostileBin.path, "./test/e2e/hostile")
		build.Dir = suite.moduleRoot
		if out, err := build.CombinedOutput(); err != nil {
			hostileBin.err = fmt.Errorf("%w\n%s", err, out)
		}
	})
	if hostileBin.err != nil {
		t.Fatalf("build hostile peer: %v", hostileBin.err)
	}
	return hostileBin.path
}

func (h *hostileProc) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		h.mu.Lock()
		h.lines = append(h.lines, sc.Text())
		h.mu.Unlock()
	}
}

func (h *hostileProc) output() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.lines...)
}

// waitLine waits for a line matching re that comes after the first `from`
// lines and returns its submatches.
func (h *hostileProc) waitLineAfter(t *testing.T, from int, re *regexp.Regexp, timeout time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		lines := h.output()
		for _, l := range lines[min(from, len(lines)):] {
			if m := re.FindStringSubmatch(l); m != nil {
				return m
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("hostile peer never printed %s; output:\n%s", re, strings.Join(lines, "\n"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (h *hostileProc) waitLine(t *testing.T, re *regexp.Regexp, timeout time.Duration) []string {
	t.Helper()
	return h.waitLineAfter(t, 0, re, timeout)
}

// assertBlobsIntact checks that every blob file of d holds the bytes its
// name (CID) says: nobody keeps bad bytes.
func assertBlobsIntact(t *testing.T, d *Daemon) {
	t.Helper()
	for _, b := range d.Blobs() {
		sum, err := FileSHA256(filepath.Join(d.DataDir, "blobs", b))
		if err != nil {
			t.Errorf("%s: blob %s: %v", d.Listen, b, err)
			continue
		}
		if CIDOfHex(sum) != filepath.Base(b) {
			t.Errorf("%s: blob %s holds other bytes (sha256 %s)", d.Listen, b, sum)
		}
	}
}
