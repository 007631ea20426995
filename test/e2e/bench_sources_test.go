package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The source-choice bench (issue 7): machines in network namespaces behind
// tbf-shaped links run the real pacman (ParallelDownloads = 5) through
// flocon with default flags, and the table says how many bytes crossed the
// Internet (and the WAN), how much slower the slowest machine was than one
// machine alone, and the longest time a pacman download waited for a byte.
// It is a bench, not a test: scripts/bench-sources.sh runs it with
// FLOCON_BENCH_SOURCES=1, and it asserts nothing about the figures.

const envBenchSources = "FLOCON_BENCH_SOURCES"

// Bench package set: 3 big packages and many small ones, as an upgrade has.
const (
	benchBigMB   = 12
	benchSmall   = 24
	benchSmallKB = 600
	mirrorRate   = "100mbit"
	wanRate      = "20mbit"
)

func TestBenchSources(t *testing.T) {
	if os.Getenv(envBenchSources) == "" {
		t.Skip("bench: run scripts/bench-sources.sh (" + envBenchSources + "=1)")
	}
	requireNetns(t)
	requirePacman(t)
	fx := loadBenchFixtures(t)
	var rows []benchRow
	alone := runLAN(t, fx, "one machine alone", 1, 0, false)
	rows = append(rows, alone)
	only := os.Getenv("FLOCON_BENCH_ONLY") // a scenario name prefix, to rerun one
	for _, sc := range []struct {
		name    string
		stagger time.Duration
		kill    bool
	}{
		{"5 machines at once", 0, false},
		{"5 machines, starts 1 s apart", time.Second, false},
		{"5 machines, kill -9 of the first", time.Second, true},
	} {
		if strings.HasPrefix(sc.name, only) {
			rows = append(rows, runLAN(t, fx, sc.name, 5, sc.stagger, sc.kill))
		}
	}
	if strings.HasPrefix("2 sites", only) {
		rows = append(rows, runTwoSites(t, fx))
	}
	fmt.Printf("BENCH %-36s %12s %14s %14s\n", "scenario", "bytes ratio", "slowest/alone", "longest stall")
	for _, r := range rows {
		base := alone.slowest
		if r.base > 0 {
			base = r.base
		}
		fmt.Printf("BENCH %-36s %11.3fx %13.2fx %13.2fs\n", r.name, r.ratio, r.slowest.Seconds()/base.Seconds(), r.stall.Seconds())
	}
}

type benchRow struct {
	name    string
	ratio   float64       // bytes over the set size (upstream, or into site B)
	slowest time.Duration // slowest machine's pacman -Sw
	base    time.Duration // the denominator of slowest when not "alone" (site A's slowest)
	stall   time.Duration // longest wait for a byte seen by a pacman
}

// benchFixtures is the bench repo made by make-repo.sh (BENCH_SMALL), cached
// beside the e2e fixtures.
type benchFixtures struct {
	*Fixtures
	pkgs []FixtureFile
	size int64
}

func loadBenchFixtures(t *testing.T) *benchFixtures {
	t.Helper()
	requireTools(t, "gpg", "gpgconf", "bsdtar", "zstd", "gzip", "repo-add", "sha256sum")
	testdata, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	cache, err := fixtureCacheDir() // per user, never a fixed name in the shared /tmp
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(cache, fmt.Sprintf("bench-sources-%d-%d-%d", benchBigMB, benchSmall, benchSmallKB))
	if _, err := os.Stat(filepath.Join(dir, "MANIFEST.tsv")); err != nil {
		tmp := dir + ".tmp-" + strconv.Itoa(os.Getpid())
		cmd := exec.Command(filepath.Join(testdata, "make-repo.sh"), tmp)
		cmd.Env = append(os.Environ(), "KEYS_DIR="+filepath.Join(testdata, "keys"), fmt.Sprintf("BIG_MB=%d", benchBigMB),
			fmt.Sprintf("BENCH_SMALL=%d", benchSmall), fmt.Sprintf("BENCH_SMALL_KB=%d", benchSmallKB))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("make-repo.sh: %v\n%s", err, out)
		}
		if err := os.Rename(tmp, dir); err != nil {
			t.Fatal(err)
		}
	}
	files, err := readManifest(filepath.Join(dir, "MANIFEST.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	bf := &benchFixtures{Fixtures: &Fixtures{Dir: dir, Mirror: filepath.Join(dir, "mirror"),
		Keyring: filepath.Join(dir, "keyring"), Arch: "x86_64", BigMB: benchBigMB, Files: files}}
	for _, f := range files {
		if f.Repo == "bench" {
			bf.pkgs = append(bf.pkgs, f)
			bf.size += f.Size
		}
	}
	return bf
}

// benchMachine is one daemon in a namespace and the pacman that uses it
// through a proxy measuring stalls.
type benchMachine struct {
	d     *Daemon
	p     *Pacman
	proxy *stallProxy
	took  time.Duration
	err   error
}

func (m *benchMachine) upgrade(pkgs []string) {
	start := time.Now()
	out, err := m.p.Run(append([]string{"-Sw"}, pkgs...)...)
	m.took = time.Since(start)
	if err != nil {
		m.err = fmt.Errorf("pacman -Sw: %v\n%s", err, tail(out, 20))
	}
}

// benchSite is one LAN with its shaped link to the mirror.
type benchSite struct {
	lan      *lanNet
	machines []*benchMachine
}

// newBenchSite makes n machines on a new bridge whose traffic from the
// root namespace (the mirror, and the WAN when routed) is shaped.
func newBenchSite(t *testing.T, fx *benchFixtures, up *Upstream, n int, args ...string) *benchSite {
	t.Helper()
	l := newLAN(t)
	s := &benchSite{lan: l}
	// htb on the bridge: what the root namespace sends into the LAN (the
	// mirror's bytes, class 10) is shaped; bytes between machines of the
	// LAN are bridged and never pass this qdisc.
	l.sh("tc", "qdisc", "add", "dev", l.bridge, "root", "handle", "1:", "htb", "default", "10")
	l.sh("tc", "class", "add", "dev", l.bridge, "parent", "1:", "classid", "1:10", "htb", "rate", mirrorRate, "ceil", mirrorRate)
	l.sh("tc", "class", "add", "dev", l.bridge, "parent", "1:", "classid", "1:20", "htb", "rate", wanRate, "ceil", wanRate)
	mirror := "http://" + l.gateway() + ":" + portOf(t, up.URL()) + "/$repo/os/$arch"
	// The bench repo is a custom one: a [[repo]] table names its mirror.
	conf := filepath.Join(TempDir(t, "benchconf"), "flocon.toml")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("[[repo]]\nname = \"bench\"\nmirrors = [%q]\n", mirror)), 0o644); err != nil {
		t.Fatal(err)
	}
	args = append([]string{"--config", conf}, args...)
	for i := range n {
		ns, ip := l.add(i)
		l.sh("ip", "netns", "exec", ns, "ip", "route", "add", "default", "via", l.gateway())
		d := StartDaemon(t, DaemonConfig{
			Mirrors: []string{mirror}, Keyring: fx.Keyring, P2P: true,
			Listen: ip + ":19433", Prefix: []string{"ip", "netns", "exec", ns},
			Args: append([]string{"--p2p-listen", "/ip4/0.0.0.0/tcp/19432", "--p2p-listen", "/ip4/0.0.0.0/udp/19432/quic-v1"}, args...),
		})
		px := newStallProxy(t, d.URL())
		p := NewPacman(t, fx.Keyring, []string{px.url + "/$repo/os/$arch"}, WithRepos("bench"))
		s.machines = append(s.machines, &benchMachine{d: d, p: p, proxy: px})
	}
	ids := make([]string, n)
	for i, m := range s.machines {
		ids[i] = peerIDOf(t, m.d)
	}
	for i, m := range s.machines {
		others := append(append([]string(nil), ids[:i]...), ids[i+1:]...)
		waitPeers(t, m.d, others...)
		m.p.Sy()
	}
	return s
}

func portOf(t *testing.T, u string) string {
	t.Helper()
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	return pu.Port()
}

// wanLink routes site a and site b through the root namespace, the bytes
// from a into b shaped as the WAN (class 20 of b's bridge), and back.
func wanLink(t *testing.T, a, b *benchSite) {
	t.Helper()
	if out, err := exec.Command("sysctl", "-w", "net.ipv4.ip_forward=1").CombinedOutput(); err != nil {
		t.Fatalf("ip_forward: %v: %s", err, out)
	}
	for _, pair := range [][2]*benchSite{{a, b}, {b, a}} {
		from, to := pair[0], pair[1]
		to.lan.sh("tc", "filter", "add", "dev", to.lan.bridge, "parent", "1:", "protocol", "ip", "u32",
			"match", "ip", "src", from.lan.subnet+".0/24", "flowid", "1:20")
	}
}

// bytesTo sums the body bytes of bench packages the upstream sent to the
// given subnet ("" = everyone), from the request log.
func benchUpstreamBytes(up *Upstream) int64 {
	var n int64
	for _, r := range up.Requests() {
		if strings.Contains(r.Path, "/bench/") && strings.HasSuffix(r.Path, ".pkg.tar.zst") {
			n += r.Bytes
		}
	}
	return n
}

// classBytes reads the bytes sent by an htb class of dev.
func classBytes(t *testing.T, dev, class string) int64 {
	t.Helper()
	out, err := exec.Command("tc", "-s", "class", "show", "dev", dev, "classid", class).CombinedOutput()
	if err != nil {
		t.Fatalf("tc -s class: %v: %s", err, out)
	}
	m := regexp.MustCompile(`Sent (\d+) bytes`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("tc -s class: no byte count in %s", out)
	}
	n, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return n
}

func (fx *benchFixtures) names() []string {
	out := make([]string, len(fx.pkgs))
	for i, f := range fx.pkgs {
		out[i] = f.Name
	}
	return out
}

// runLAN runs one LAN scenario: n machines upgrade, each start stagger
// after the previous; kill: the first machine is killed (SIGKILL) half way
// through the others' upgrade and is left out of the figures.
func runLAN(t *testing.T, fx *benchFixtures, name string, n int, stagger time.Duration, kill bool) benchRow {
	t.Helper()
	up := NewUpstream(t, fx.Mirror, WithAddr("0.0.0.0:0"))
	site := newBenchSite(t, fx, up, n)
	up.ResetLog()
	var wg sync.WaitGroup
	for i, m := range site.machines {
		if i > 0 {
			time.Sleep(stagger)
		}
		wg.Go(func() { m.upgrade(fx.names()) })
	}
	if kill {
		// The first machine is the one the others follow; kill it while
		// they stream from it.
		time.Sleep(2 * time.Second)
		site.machines[0].d.Kill()
	}
	wg.Wait()
	row := benchRow{name: name, ratio: float64(benchUpstreamBytes(up)) / float64(fx.size)}
	for i, m := range site.machines {
		if kill && i == 0 {
			continue
		}
		if m.err != nil {
			t.Errorf("%s: machine %d: %v", name, i, m.err)
		}
		row.slowest = max(row.slowest, m.took)
		row.stall = max(row.stall, m.proxy.longest())
	}
	t.Logf("%s: upstream %d bytes for a set of %d; daemon logs: %s", name, benchUpstreamBytes(up), fx.size, logSummary(site.machines))
	return row
}

// runTwoSites: site A (3 machines) upgrades, then site B (3 machines)
// upgrades at once; B knows A by --bootstrap. Bytes into B are B's mirror
// bytes plus what crossed the WAN into B.
func runTwoSites(t *testing.T, fx *benchFixtures) benchRow {
	t.Helper()
	up := NewUpstream(t, fx.Mirror, WithAddr("0.0.0.0:0"))
	a := newBenchSite(t, fx, up, 3)
	var boot []string
	for _, m := range a.machines {
		boot = append(boot, "--bootstrap", "/ip4/"+strings.Split(m.d.Listen, ":")[0]+"/tcp/19432/p2p/"+peerIDOf(t, m.d))
	}
	b := newBenchSite(t, fx, up, 3, boot...)
	wanLink(t, a, b)
	var wg sync.WaitGroup
	for _, m := range a.machines {
		wg.Go(func() { m.upgrade(fx.names()) })
	}
	wg.Wait()
	var slowA time.Duration
	for _, m := range a.machines {
		slowA = max(slowA, m.took)
	}
	up.ResetLog()
	wanBefore := classBytes(t, b.lan.bridge, "1:20")
	for _, m := range b.machines {
		wg.Go(func() { m.upgrade(fx.names()) })
	}
	wg.Wait()
	wan := classBytes(t, b.lan.bridge, "1:20") - wanBefore
	mirror := benchUpstreamBytes(up)
	row := benchRow{name: "2 sites: site B after A (3+3)", base: slowA, ratio: float64(mirror+wan) / float64(fx.size)}
	for i, m := range append(a.machines, b.machines...) {
		if m.err != nil {
			t.Errorf("two sites: machine %d: %v", i, m.err)
		}
	}
	for _, m := range b.machines {
		row.slowest = max(row.slowest, m.took)
		row.stall = max(row.stall, m.proxy.longest())
	}
	t.Logf("two sites: into B %d mirror + %d WAN bytes (with headers) for a set of %d; A slowest %s", mirror, wan, fx.size, slowA)
	return row
}

// logSummary counts the source-choice events in the daemons' logs: why a
// download went where it went.
func logSummary(ms []*benchMachine) string {
	events := []string{"source failed", "source overtaken", "source slow, hedging", "late lookup answer",
		"lookup ran past its deadline", "peer banned"}
	counts := make([]int, len(events))
	mirrorOnly := 0
	for _, m := range ms {
		for _, line := range strings.Split(m.d.Logs(), "\n") {
			for i, e := range events {
				if strings.Contains(line, `msg="`+e) {
					counts[i]++
				}
			}
			if strings.Contains(line, "msg=download ") && strings.Contains(line, "fromPeers=0 ") {
				mirrorOnly++
			}
		}
	}
	parts := make([]string, 0, len(events)+1)
	for i, e := range events {
		parts = append(parts, fmt.Sprintf("%s %d", e, counts[i]))
	}
	return strings.Join(append(parts, fmt.Sprintf("downloads with no LAN bytes %d", mirrorOnly)), ", ")
}

// stallProxy sits between a pacman and its daemon and records the longest
// time a package response kept pacman waiting for a byte (the first byte
// included).
type stallProxy struct {
	url string
	mu  sync.Mutex
	max time.Duration
}

func newStallProxy(t *testing.T, target string) *stallProxy {
	t.Helper()
	tu, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	sp := &stallProxy{}
	rp := httputil.NewSingleHostReverseProxy(tu)
	rp.FlushInterval = -1
	tr := &http.Transport{MaxIdleConnsPerHost: 8}
	rp.Transport = &stallTransport{sp: sp, rt: tr}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: rp, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		tr.CloseIdleConnections()
	})
	sp.url = "http://" + l.Addr().String()
	return sp
}

func (sp *stallProxy) record(d time.Duration) {
	sp.mu.Lock()
	sp.max = max(sp.max, d)
	sp.mu.Unlock()
}

func (sp *stallProxy) longest() time.Duration {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return sp.max
}

type stallTransport struct {
	sp *stallProxy
	rt http.RoundTripper
}

func (st *stallTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := st.rt.RoundTrip(r)
	if err != nil || !strings.HasSuffix(r.URL.Path, ".pkg.tar.zst") {
		return resp, err
	}
	resp.Body = &stallBody{ReadCloser: resp.Body, sp: st.sp, last: start}
	return resp, nil
}

type stallBody struct {
	io.ReadCloser
	sp   *stallProxy
	last time.Time
}

func (b *stallBody) Read(p []byte) (int, error) {
	k, err := b.ReadCloser.Read(p)
	if k > 0 {
		now := time.Now()
		b.sp.record(now.Sub(b.last))
		b.last = now
	}
	return k, err
}
