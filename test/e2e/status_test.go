package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"html"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// TestStatusPage runs two daemons on loopback that find each other by
// --bootstrap. A downloads packages from its mirror, B gets the same ones
// from A, B bans a peer, and B has a slow download in flight. Then:
//
//   - headless Chromium renders B's status page: a screenshot goes to the
//     test's artifact dir (go test -artifacts keeps it), and the DOM it
//     built (--dump-dom) must show A as a peer, the ban, the bytes by
//     source and the download's progress;
//   - /metrics of A and B must say what the test did;
//   - a refused package gets its reason in X-Flocon-Refusal and the body.
func TestStatusPage(t *testing.T) {
	requireTools(t, "chromium")
	fx := LoadFixtures(t)
	var pkgs []FixtureFile
	var big FixtureFile
	var total int64
	for _, f := range fx.Select(ExpectOK, true) {
		if f.Name == "big" {
			big = f
		} else if len(pkgs) < 3 {
			pkgs = append(pkgs, f)
			total += f.Size
		}
	}
	// B's mirror does not have the packages (yet): B must take them from
	// A, a peer at "another site" (found by --bootstrap, not mDNS), which
	// it would otherwise rank after its mirror.
	var notYet []Fault
	for _, f := range pkgs {
		notYet = append(notYet, Fault{Kind: Fault404, File: f.File})
	}
	up := NewUpstream(t, fx.Mirror)
	upB := NewUpstream(t, fx.Mirror, WithFaults(notYet...))
	a := statusDaemon(t, fx, up, "--log-level", "debug") // debug: "provider record published"
	idA := peerIDOf(t, a)
	b := statusDaemon(t, fx, upB, "--bootstrap", p2pAddrOf(t, a)+"/p2p/"+idA)
	idB := peerIDOf(t, b)
	waitPeers(t, b, idA)
	waitPeers(t, a, idB)
	c := HTTPClient(t)
	for _, d := range []*Daemon{a, b} {
		for _, repo := range []string{"core", "extra"} {
			if r := Get(t, c, d.FileURL(repo, fx.Arch, repo+".db")); r.Status != http.StatusOK {
				t.Fatalf("GET %s.db: %d", repo, r.Status)
			}
		}
	}

	for _, d := range []*Daemon{a, b} { // A from the mirror, then B from A
		for _, f := range pkgs {
			if got, err := GetHashed(t.Context(), c, d.FileURL(f.Repo, fx.Arch, f.File)); err != nil || !got.Complete(f.Size, f.SHA256) {
				t.Fatalf("GET %s through %s: %+v %v", f.File, d.Listen, got, err)
			}
		}
		if d == a {
			// B is at another site: it finds A's copies through A's DHT
			// provider records, published in batches each second.
			for _, f := range pkgs {
				a.WaitLog(regexp.MustCompile(`provider record published.*`+regexp.QuoteMeta(f.CID())), 30*time.Second)
			}
		}
	}
	for _, f := range pkgs {
		if n := up.CountGETs(f.URLPath(fx.Arch)); n != 1 {
			t.Fatalf("upstream GETs of %s: %d, want 1 (A's; B's copy comes from A)", f.File, n)
		}
	}

	banned, reason := randomPeerID(t), "sent bad bytes (status page test)"
	if out, err := flocon(t, b, "ban", banned, "--reason", reason); err != nil {
		t.Fatalf("flocon ban: %v: %s", err, out)
	}
	refused := assertReadableRefusal(t, c, a, fx)

	// A download in flight on B: its mirror trickles the big package.
	upB.SetFaults(Fault{Kind: FaultSlow, File: big.File, Chunk: 64 << 10, Delay: 200 * time.Millisecond})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() { _, _ = GetHashed(ctx, c, b.FileURL(big.Repo, fx.Arch, big.File)) }()
	waitMetric(t, c, b, `flocon_downloads_inflight_bytes`, func(v float64) bool { return v > 0 })

	waitMetric(t, c, b, `flocon_served_bytes_total{source="download"}`, func(v float64) bool { return v == float64(total) })
	dom := renderStatusPage(t, b)
	assertPage(t, dom, pageWant{peer: idA, minRecv: total, banned: banned, reason: reason,
		peerBytes: total, servedBytes: total, inflight: big})

	waitMetric(t, c, a, `flocon_served_bytes_total{source="download"}`, func(v float64) bool { return v == float64(total) })
	assertMetrics(t, c, a, map[string]float64{
		`flocon_download_bytes_total{source="mirror"}`:                         float64(total),
		`flocon_download_bytes_total{source="peer"}`:                           0,
		`flocon_downloads_total{verdict="verified"}`:                           float64(len(pkgs)),
		`flocon_refusals_total{reason="` + refused + `"}`:                      1,
		`flocon_mirror_up{mirror="` + strings.TrimSuffix(up.URL(), "/") + `"}`: 1,
		`flocon_peers`: 1,
	})
	assertMetrics(t, c, b, map[string]float64{
		`flocon_download_bytes_total{source="peer"}`:   float64(total),
		`flocon_download_bytes_total{source="mirror"}`: 0,
		`flocon_downloads_total{verdict="verified"}`:   float64(len(pkgs)),
		`flocon_served_bytes_total{source="download"}`: float64(total),
		`flocon_saved_bytes`:                           float64(total),
		`flocon_downloads_inflight`:                    1,
		`flocon_bans`:                                  1,
		`flocon_peers`:                                 1,
	})
	cancel()
}

// statusDaemon is a p2p daemon on loopback, found only by --bootstrap.
func statusDaemon(t *testing.T, fx *Fixtures, up *Upstream, args ...string) *Daemon {
	t.Helper()
	_, port, _ := strings.Cut(FreeAddr(t), ":")
	return StartDaemon(t, DaemonConfig{
		Mirrors: []string{up.Mirror()}, Keyring: fx.Keyring, P2P: true,
		Args: append([]string{"--p2p-listen", "/ip4/127.0.0.1/tcp/" + port, "--no-mdns"}, args...),
	})
}

// p2pAddrOf is the --p2p-listen address of d.
func p2pAddrOf(t *testing.T, d *Daemon) string {
	t.Helper()
	args := d.Config.Args
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "--p2p-listen" {
			return args[i+1]
		}
	}
	t.Fatal("daemon has no --p2p-listen")
	return ""
}

func randomPeerID(t *testing.T) string {
	t.Helper()
	_, pub, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return id.String()
}

// assertReadableRefusal asks d for a package signed by a key the keyring
// lacks and checks that the answer says so; it returns the reason.
func assertReadableRefusal(t *testing.T, c *http.Client, d *Daemon, fx *Fixtures) string {
	t.Helper()
	for _, f := range fx.Select("unknown-key", true) {
		r := Get(t, c, d.FileURL(f.Repo, fx.Arch, f.File))
		reason := r.Header.Get("X-Flocon-Refusal")
		if r.Status != http.StatusBadGateway || reason != "unknown-key" ||
			!strings.Contains(string(r.Body), "not in the keyring") {
			t.Fatalf("GET %s (unknown key): %d, X-Flocon-Refusal %q, body %q", f.File, r.Status, reason, r.Body)
		}
		return reason
	}
	t.Fatal("fixtures have no package signed by an unknown key")
	return ""
}

// chromiumFlags start a hermetic headless Chromium (no network of its own).
func chromiumFlags(t *testing.T) []string {
	return []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + TempDir(t, "chromium"), "--window-size=1280,1400"}
}

// renderStatusPage has Chromium render d's status page: a screenshot into
// the artifact dir, and the DOM Chromium built, returned.
func renderStatusPage(t *testing.T, d *Daemon) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	shot := filepath.Join(t.ArtifactDir(), "status-page.png")
	out, err := exec.CommandContext(ctx, "chromium", append(chromiumFlags(t), "--screenshot="+shot, d.URL()+"/")...).CombinedOutput()
	if fi, serr := os.Stat(shot); err != nil || serr != nil || fi.Size() == 0 {
		t.Fatalf("chromium --screenshot: %v %v\n%s", err, serr, out)
	}
	t.Logf("status page screenshot: %s", shot)
	dom, err := exec.CommandContext(ctx, "chromium", append(chromiumFlags(t), "--dump-dom", d.URL()+"/")...).Output()
	if err != nil {
		t.Fatalf("chromium --dump-dom: %v", err)
	}
	if err := os.WriteFile(filepath.Join(t.ArtifactDir(), "status-page.html"), dom, 0o644); err != nil {
		t.Fatal(err)
	}
	return string(dom)
}

type pageWant struct {
	peer        string
	minRecv     int64
	banned      string
	reason      string
	peerBytes   int64
	servedBytes int64
	inflight    FixtureFile
}

// tagRE and attrRE take an HTML start tag and its attributes apart (the
// page's attribute values never hold a '>' or a '"': Chromium escapes them).
var (
	tagRE  = regexp.MustCompile(`<[a-z][a-z0-9]*(\s[^>]*)?>`)
	attrRE = regexp.MustCompile(`([a-z][a-z0-9-]*)(?:="([^"]*)")?`)
)

// elements finds the elements of dom that carry attribute attr, each as
// its attributes (unescaped).
func elements(dom, attr string) []map[string]string {
	var out []map[string]string
	for _, m := range tagRE.FindAllStringSubmatch(dom, -1) {
		attrs := map[string]string{}
		for _, a := range attrRE.FindAllStringSubmatch(m[1], -1) {
			attrs[a[1]] = html.UnescapeString(a[2])
		}
		if _, ok := attrs[attr]; ok {
			out = append(out, attrs)
		}
	}
	return out
}

func assertPage(t *testing.T, dom string, want pageWant) {
	t.Helper()
	one := func(attr string) map[string]string {
		els := elements(dom, attr)
		if len(els) != 1 {
			t.Fatalf("page has %d elements with %s, want 1", len(els), attr)
		}
		return els[0]
	}
	num := func(el map[string]string, attr string) int64 {
		v, err := strconv.ParseInt(el[attr], 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", attr, el[attr], err)
		}
		return v
	}
	peers := elements(dom, "data-peer")
	if len(peers) != 1 || peers[0]["data-peer"] != want.peer || num(peers[0], "data-recv") < want.minRecv ||
		num(peers[0], "data-score") <= 0 || peers[0]["data-site"] != "remote" {
		t.Errorf("peers on the page = %v, want %s (remote) having sent at least %d bytes, with a score", peers, want.peer, want.minRecv)
	}
	bans := elements(dom, "data-ban")
	if len(bans) != 1 || bans[0]["data-ban"] != want.banned || bans[0]["data-reason"] != want.reason {
		t.Errorf("bans on the page = %v, want %s: %q", bans, want.banned, want.reason)
	}
	if got := num(one("data-peer-bytes"), "data-peer-bytes"); got != want.peerBytes {
		t.Errorf("bytes from peers on the page = %d, want %d", got, want.peerBytes)
	}
	if got := num(one("data-mirror-bytes"), "data-mirror-bytes"); got != 0 {
		t.Errorf("bytes from mirrors on the page = %d, want 0 (the download in flight is not done)", got)
	}
	if got := num(one("data-served-bytes"), "data-served-bytes"); got != want.servedBytes {
		t.Errorf("bytes served on the page = %d, want %d", got, want.servedBytes)
	}
	in := elements(dom, "data-inflight")
	if len(in) != 1 || in[0]["data-inflight"] != want.inflight.File || in[0]["data-source-kind"] != "mirror" ||
		num(in[0], "data-size") != want.inflight.Size || num(in[0], "data-have") <= 0 ||
		num(in[0], "data-have") >= want.inflight.Size {
		t.Errorf("downloads in flight on the page = %v, want %s part way from the mirror", in, want.inflight.File)
	}
	if p := elements(dom, "max"); len(p) != 1 || p[0]["max"] != strconv.FormatInt(want.inflight.Size, 10) {
		t.Errorf("progress bars = %v", p)
	}
}

// scrape reads d's /metrics into series → value.
func scrape(t *testing.T, c *http.Client, d *Daemon) map[string]float64 {
	t.Helper()
	r := Get(t, c, d.URL()+"/metrics")
	if r.Status != http.StatusOK {
		t.Fatalf("GET /metrics: %d", r.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(string(r.Body)))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

func assertMetrics(t *testing.T, c *http.Client, d *Daemon, want map[string]float64) {
	t.Helper()
	got := scrape(t, c, d)
	for series, v := range want {
		if g, ok := got[series]; !ok || g != v {
			t.Errorf("%s: %s = %v (present %v), want %v", d.Listen, series, g, ok, v)
		}
	}
}

// waitMetric waits until d's series satisfies ok (counters of a request are
// updated once its handler returns, after the client has its bytes).
func waitMetric(t *testing.T, c *http.Client, d *Daemon, series string, ok func(float64) bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		v, present := scrape(t, c, d)[series]
		if present && ok(v) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s = %v (present %v) after 20s", d.Listen, series, v, present)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
