package e2e

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// natPeer is one entry of `flocon peers --json` as this test reads it.
type natPeer struct {
	PeerID  string   `json:"peerId"`
	Site    string   `json:"site"`
	Relayed bool     `json:"relayed"`
	Addrs   []string `json:"addrs"`
}

// natSwarm is a public bootstrap machine running the relay service and
// three sites of two machines, each site behind its own NAT router
// (nftables masquerade, no port forward), every machine given only the
// bootstrap address; once built, the six are connected directly.
type natSwarm struct {
	inet   *natNet
	fx     *Fixtures
	up     *Upstream
	boot   *Daemon
	bootID string
	// bootAddr is the bootstrap machine's address, over transport (e.g.
	// "tcp/19432").
	bootAddr string
	sites    []*natSite
	m        [3][2]natMachine
}

type natMachine struct {
	d  *Daemon
	ns string
	id string
}

// newNATSwarm starts the bootstrap machine with bootArgs (plus
// --p2p-relay), reached over bootTransport, then machine i of each site
// with args(i, bootstrap address), and waits until every machine has a
// direct connection to every other one and to the bootstrap machine.
func newNATSwarm(t *testing.T, bootTransport string, bootArgs []string, args func(i int, boot string) []string) *natSwarm {
	t.Helper()
	inet := newNATNet(t)
	fx := LoadFixtures(t)
	w := &natSwarm{inet: inet, fx: fx, up: NewUpstream(t, fx.Mirror, WithNetns(inet.inet), WithAddr(inet.pub+".1:0"))}
	bootNS, bootIP := inet.public("boot", 10)
	w.boot = w.start(t, bootNS, bootIP, append(bootArgs, "--p2p-relay")...)
	w.bootID = peerIDOf(t, w.boot)
	w.bootAddr = "/ip4/" + bootIP + "/" + bootTransport + "/p2p/" + w.bootID
	w.sites = []*natSite{inet.site(0, 20), inet.site(1, 21), inet.site(2, 22)}
	for k, s := range w.sites {
		for i := range 2 {
			w.m[k][i].ns, _ = s.machine(i)
		}
	}
	began := time.Now()
	for k, s := range w.sites {
		for i := range 2 {
			w.m[k][i].d = w.start(t, w.m[k][i].ns, s.lan+fmt.Sprintf(".%d", 10+i), args(i, w.bootAddr)...)
		}
	}
	started := time.Since(began)
	all := []string{w.bootID}
	for k := range w.m {
		for i := range w.m[k] {
			w.m[k][i].id = peerIDOf(t, w.m[k][i].d)
			all = append(all, w.m[k][i].id)
		}
	}
	for k := range w.m {
		for i := range w.m[k] {
			waitDirect(t, w.m[k][i].d, slices.DeleteFunc(slices.Clone(all), func(p string) bool { return p == w.m[k][i].id }))
		}
	}
	t.Logf("the six machines behind NAT are connected directly to each other %s after the first started (starting them took %s)",
		time.Since(began).Round(100*time.Millisecond), started.Round(100*time.Millisecond))
	for k := range w.m {
		for i := range w.m[k] {
			for _, p := range natPeers(t, w.m[k][i].d) {
				if want := map[bool]string{true: "lan", false: "remote"}[p.PeerID == w.m[k][1-i].id]; p.Site != want {
					t.Errorf("site %d machine %d sees %s as %q, want %q", k, i, p.PeerID, p.Site, want)
				}
			}
		}
	}
	return w
}

// start runs a daemon in namespace ns, its gateway on ip:19433.
func (w *natSwarm) start(t *testing.T, ns, ip string, args ...string) *Daemon {
	t.Helper()
	return StartDaemon(t, DaemonConfig{
		Mirrors: []string{w.up.Mirror()}, Keyring: w.fx.Keyring, P2P: true,
		Listen: ip + ":19433", Prefix: []string{"ip", "netns", "exec", ns},
		Ready: netnsReady(ns), Args: args,
	})
}

// TestNATSites: a private swarm (one key) of three sites behind NAT and a
// public relay (natSwarm), the first machine of each site on default flags
// but the key and the bootstrap address (mDNS on, TCP and QUIC listen
// addresses: the key turns QUIC off), so holes are punched for TCP. A
// package fetched at site A is found at site C through its DHT provider
// record and at C's other machine by asking its own LAN; machines with no
// key or another key never connect and never get a byte; the mirror sends
// the package once.
//
// The second machine of each site listens on another port: two machines
// behind one NAT that both use 19432 cannot both keep their port when they
// talk to the same peer, and a machine whose NAT changes its port cannot
// be hole-punched (README: Several sites).
func TestNATSites(t *testing.T) {
	key := writeSwarmKey(t)
	w := newNATSwarm(t, "tcp/19432", []string{"--psk-file", key}, func(i int, boot string) []string {
		args := []string{"--psk-file", key, "--bootstrap", boot}
		if i == 1 {
			args = append(args, "--p2p-listen", "/ip4/0.0.0.0/tcp/19442", "--log-level", "debug")
		}
		return args
	})
	fx, up, m, bootID, bootAddr := w.fx, w.up, w.m, w.bootID, w.bootAddr
	start := func(ns, ip string, args ...string) *Daemon { return w.start(t, ns, ip, args...) }
	type machine = natMachine
	boot, inet, sites := w.boot, w.inet, w.sites

	pkg := fx.Select(ExpectOK, true)[0]
	syncDBs := func(d *Daemon, ns string) { t.Helper(); w.syncDBs(t, d, ns) }
	fetch := func(d *Daemon, ns string) Hashed { t.Helper(); return w.fetch(t, d, ns, pkg) }
	// Outsiders: one with no key on site A's LAN (mDNS finds it), one
	// with another key on the internet; both know the bootstrap address.
	outNS, outIP := sites[0].machine(2)
	wrongNS, wrongIP := inet.public("wrong", 30)
	outsiders := []machine{
		{d: start(outNS, outIP, "--bootstrap", bootAddr, "--log-level", "debug"), ns: outNS},
		{d: start(wrongNS, wrongIP, "--psk-file", writeSwarmKey(t), "--bootstrap", bootAddr, "--log-level", "debug"), ns: wrongNS},
	}
	for i := range outsiders {
		syncDBs(outsiders[i].d, outsiders[i].ns)
		outsiders[i].id = peerIDOf(t, outsiders[i].d)
	}
	a, c1, c2 := m[0][1], m[2][0], m[2][1]
	for _, x := range []machine{a, c1, c2} {
		syncDBs(x.d, x.ns)
	}
	if h := fetch(a.d, a.ns); !h.Complete(pkg.Size, pkg.SHA256) {
		t.Fatalf("site A: GET %s: %+v", pkg.File, h)
	}
	a.d.WaitLog(regexp.MustCompile(`provider record published.*`+regexp.QuoteMeta(pkg.CID())), 30*time.Second)
	up.Stop() // from now on only peers can serve it

	if h := fetch(c1.d, c1.ns); !h.Complete(pkg.Size, pkg.SHA256) {
		t.Fatalf("site C: GET %s with the mirror gone: %+v", pkg.File, h)
	}
	// Site A is no LAN peer of site C's: only its provider record leads there.
	c1.d.WaitLog(downloadFrom(pkg, a.id, "remote via dht"), 10*time.Second)
	// The first machine of site C (default flags) shares it with the
	// second, which finds it by asking its LAN (or by the record, which
	// ever answers first).
	if h := fetch(c2.d, c2.ns); !h.Complete(pkg.Size, pkg.SHA256) {
		t.Fatalf("site C, second machine: GET %s with the mirror gone: %+v", pkg.File, h)
	}
	c2.d.WaitLog(downloadFrom(pkg, c1.id, "lan via (lan|dht)"), 10*time.Second)

	// Each outsider has dialled the bootstrap machine twice (at start,
	// then after the backoff), and the one on site A's LAN the two
	// machines mDNS found there.
	dialFailed := func(o *Daemon, p string, times int) {
		t.Helper()
		re := regexp.MustCompile(`peer connect failed.*peer=` + p)
		Eventually(t, 30*time.Second, fmt.Sprintf("%d failed dials to %s in the log of %s", times, p, o.Listen), func() bool {
			n := 0
			for line := range strings.SplitSeq(o.Logs(), "\n") {
				if re.MatchString(line) {
					n++
				}
			}
			return n >= times
		})
	}
	for _, o := range outsiders {
		dialFailed(o.d, bootID, 2)
	}
	dialFailed(outsiders[0].d, m[0][0].id, 1)
	dialFailed(outsiders[0].d, m[0][1].id, 1)
	for i, o := range outsiders {
		if h := fetch(o.d, o.ns); h.Status == http.StatusOK || h.SHA256 == pkg.SHA256 || o.d.HasBlob(pkg.CID()) {
			t.Errorf("outsider %d got %s with the mirror gone: %+v", i, pkg.File, h)
		}
		if peers := natPeers(t, o.d); len(peers) != 0 {
			t.Errorf("outsider %d is connected to %+v", i, peers)
		}
	}
	for _, d := range []*Daemon{boot, m[0][0].d, m[0][1].d} {
		for _, p := range natPeers(t, d) {
			if p.PeerID == outsiders[0].id || p.PeerID == outsiders[1].id {
				t.Errorf("outsider %s connected to %s", p.PeerID, d.Listen)
			}
		}
	}
	if n, b := up.CountGETs(pkg.URLPath(fx.Arch)), up.BytesSent(pkg.URLPath(fx.Arch)); n != 1 || b != pkg.Size {
		t.Errorf("upstream sent %s %d times, %d bytes; want once (site A), %d bytes", pkg.File, n, b, pkg.Size)
	}
}

// syncDBs has d fetch both repo dbs, as pacman -Sy would.
func (w *natSwarm) syncDBs(t *testing.T, d *Daemon, ns string) {
	t.Helper()
	for _, repo := range []string{"core", "extra"} {
		if r := Get(t, netnsClient(ns), d.FileURL(repo, w.fx.Arch, repo+".db")); r.Status != http.StatusOK {
			t.Fatalf("GET %s.db from %s: status %d", repo, d.Listen, r.Status)
		}
	}
}

// fetch GETs pkg through d (in namespace ns).
func (w *natSwarm) fetch(t *testing.T, d *Daemon, ns string, pkg FixtureFile) Hashed {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	h, err := GetHashed(ctx, netnsClient(ns), d.FileURL(pkg.Repo, w.fx.Arch, pkg.File))
	if err != nil {
		return Hashed{Err: err}
	}
	return h
}

// downloadFrom matches the download log line of pkg with peer p as its
// source, found as kind ("remote via dht", ...; a regexp).
func downloadFrom(pkg FixtureFile, p, kind string) *regexp.Regexp {
	return regexp.MustCompile(`msg=download .*file=` + regexp.QuoteMeta(pkg.File) + `.*sources="peer ` + p + ` \(` + kind + `\)=`)
}

// TestNATSitesQUIC: the same sites with no swarm key and QUIC alone, so
// the holes are punched for UDP through the same NATs. Every connection
// between machines of different sites is QUIC and direct; a package
// fetched at site A is found at site C through its provider record.
func TestNATSitesQUIC(t *testing.T) {
	quic := func(port int) string { return fmt.Sprintf("/ip4/0.0.0.0/udp/%d/quic-v1", port) }
	w := newNATSwarm(t, "udp/19432/quic-v1", []string{"--p2p-listen", quic(19432)}, func(i int, boot string) []string {
		args := []string{"--p2p-listen", quic(19432 + 10*i), "--bootstrap", boot}
		if i == 1 {
			args = append(args, "--log-level", "debug")
		}
		return args
	})
	for k := range w.m {
		for i := range w.m[k] {
			for _, p := range natPeers(t, w.m[k][i].d) {
				direct := slices.ContainsFunc(p.Addrs, func(a string) bool {
					return strings.Contains(a, "/quic-v1") && !strings.Contains(a, "p2p-circuit")
				})
				if p.Relayed || !direct {
					t.Errorf("site %d machine %d: peer %s over %v (relayed %v), want a direct QUIC connection", k, i, p.PeerID, p.Addrs, p.Relayed)
				}
			}
		}
	}
	pkg := w.fx.Select(ExpectOK, true)[0]
	a, c := w.m[0][1], w.m[2][0]
	w.syncDBs(t, a.d, a.ns)
	w.syncDBs(t, c.d, c.ns)
	if h := w.fetch(t, a.d, a.ns, pkg); !h.Complete(pkg.Size, pkg.SHA256) {
		t.Fatalf("site A: GET %s: %+v", pkg.File, h)
	}
	a.d.WaitLog(regexp.MustCompile(`provider record published.*`+regexp.QuoteMeta(pkg.CID())), 30*time.Second)
	w.up.Stop()
	if h := w.fetch(t, c.d, c.ns, pkg); !h.Complete(pkg.Size, pkg.SHA256) {
		t.Fatalf("site C: GET %s with the mirror gone: %+v", pkg.File, h)
	}
	c.d.WaitLog(downloadFrom(pkg, a.id, "remote via dht"), 10*time.Second)
}

func natPeers(t *testing.T, d *Daemon) []natPeer {
	t.Helper()
	var peers []natPeer
	floconJSON(t, d, &peers, "peers")
	return peers
}

// waitDirect waits until d has a direct (not relayed) connection to every
// peer in want.
func waitDirect(t *testing.T, d *Daemon, want []string) {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for {
		direct := map[string]bool{}
		peers := natPeers(t, d)
		for _, p := range peers {
			direct[p.PeerID] = !p.Relayed
		}
		var missing []string
		for _, w := range want {
			if !direct[w] {
				missing = append(missing, w)
			}
		}
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has no direct connection to %d of %d peers %v; peers: %+v", d.Listen, len(missing), len(want), missing, peers)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestNATHolePunchRetried: two sites behind NAT and a public relay, one
// machine each on default flags but the bootstrap address, with every
// packet between the two sites' routers dropped at site B's router while
// they first meet (the relay still carries their relayed connection), so
// the hole punch of that connection fails. Once the block is lifted, they
// get a direct connection: a machine gives the failed punch up (logs it),
// closes the relayed connection and dials again, and the new relayed
// connection's punch gets through. Without the retry the peers stayed
// relayed until the relay cut the connection (relayLimit, 2 min).
func TestNATHolePunchRetried(t *testing.T) {
	inet := newNATNet(t)
	fx := LoadFixtures(t)
	w := &natSwarm{inet: inet, fx: fx, up: NewUpstream(t, fx.Mirror, WithNetns(inet.inet), WithAddr(inet.pub+".1:0"))}
	bootNS, bootIP := inet.public("boot", 10)
	boot := w.start(t, bootNS, bootIP, "--p2p-relay")
	bootAddr := "/ip4/" + bootIP + "/tcp/19432/p2p/" + peerIDOf(t, boot)
	siteA, siteB := inet.site(0, 20), inet.site(1, 21)
	unblock := siteB.blockPeer(siteA.wanIP)
	aNS, aIP := siteA.machine(0)
	bNS, bIP := siteB.machine(0)
	a := w.start(t, aNS, aIP, "--bootstrap", bootAddr)
	b := w.start(t, bNS, bIP, "--bootstrap", bootAddr)
	aID, bID := peerIDOf(t, a), peerIDOf(t, b)
	relayedTo := func(d *Daemon, p string) bool {
		return slices.ContainsFunc(natPeers(t, d), func(x natPeer) bool { return x.PeerID == p && x.Relayed })
	}
	Eventually(t, 30*time.Second, "a relayed connection between the sites", func() bool {
		return relayedTo(a, bID) || relayedTo(b, aID)
	})
	gaveUp := regexp.MustCompile(`msg="hole punch failed: the relayed connection is closed and the peer dialled again" .*peer=(` + aID + `|` + bID + `)`)
	Eventually(t, 60*time.Second, "a failed hole punch given up and dialled again", func() bool {
		return gaveUp.MatchString(a.Logs()) || gaveUp.MatchString(b.Logs())
	})
	direct := func(d *Daemon, p string) bool {
		return slices.ContainsFunc(natPeers(t, d), func(x natPeer) bool { return x.PeerID == p && !x.Relayed })
	}
	if direct(a, bID) || direct(b, aID) {
		t.Fatal("a direct connection between the sites through the block")
	}
	unblock()
	Eventually(t, 90*time.Second, "a direct connection between the sites after the block", func() bool {
		return direct(a, bID) && direct(b, aID)
	})
}
