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

// TestNATSites: three sites of two machines, each site behind its own NAT
// router (nftables masquerade, no port forward), and one public bootstrap
// machine running the relay service. Every machine is given only the
// bootstrap address and the swarm key, the first of each site otherwise
// default flags (mDNS on, TCP and QUIC listen addresses: the key turns QUIC
// off). The machines reach each other directly, through holes DCUtR
// punched in the NATs over relayed connections; a package fetched at site
// A is found at site C through its DHT provider record and at C's other
// machine by asking its own LAN; machines with no key or another key never
// connect and never get a byte; the mirror sends the package once.
//
// The second machine of each site listens on another port: two machines
// behind one NAT that both use 19432 cannot both keep their port when they
// talk to the same peer, and a machine whose NAT changes its port cannot
// be hole-punched (README: Several sites).
func TestNATSites(t *testing.T) {
	inet := newNATNet(t)
	fx := LoadFixtures(t)
	up := NewUpstream(t, fx.Mirror, WithNetns(inet.inet), WithAddr(inet.pub+".1:0"))
	key := writeSwarmKey(t)
	start := func(ns, ip string, args ...string) *Daemon {
		return StartDaemon(t, DaemonConfig{
			Mirrors: []string{up.Mirror()}, Keyring: fx.Keyring, P2P: true,
			Listen: ip + ":19433", Prefix: []string{"ip", "netns", "exec", ns},
			Ready: netnsReady(ns), Args: args,
		})
	}
	client := func(ns string) *http.Client { return netnsClient(ns) }

	bootNS, bootIP := inet.public("boot", 10)
	boot := start(bootNS, bootIP, "--psk-file", key, "--p2p-relay")
	bootID := peerIDOf(t, boot)
	bootAddr := "/ip4/" + bootIP + "/tcp/19432/p2p/" + bootID

	sites := []*natSite{inet.site(0, 20), inet.site(1, 21), inet.site(2, 22)}
	type machine struct {
		d  *Daemon
		ns string
		id string
	}
	var m [3][2]machine
	for k, s := range sites {
		for i := range 2 {
			m[k][i].ns, _ = s.machine(i)
		}
	}
	began := time.Now()
	for k, s := range sites {
		for i := range 2 {
			args := []string{"--psk-file", key, "--bootstrap", bootAddr}
			if i == 1 {
				args = append(args, "--p2p-listen", "/ip4/0.0.0.0/tcp/19442", "--log-level", "debug")
			}
			m[k][i].d = start(m[k][i].ns, s.lan+fmt.Sprintf(".%d", 10+i), args...)
		}
	}
	started := time.Since(began)
	all := []string{bootID}
	for k := range m {
		for i := range m[k] {
			m[k][i].id = peerIDOf(t, m[k][i].d)
			all = append(all, m[k][i].id)
		}
	}
	for k := range m {
		for i := range m[k] {
			waitDirect(t, m[k][i].d, slices.DeleteFunc(slices.Clone(all), func(p string) bool { return p == m[k][i].id }))
		}
	}
	t.Logf("the six machines behind NAT are connected directly to each other %s after the first started (starting them took %s)",
		time.Since(began).Round(100*time.Millisecond), started.Round(100*time.Millisecond))
	for k := range m {
		for i := range m[k] {
			for _, p := range natPeers(t, m[k][i].d) {
				if want := map[bool]string{true: "lan", false: "remote"}[p.PeerID == m[k][1-i].id]; p.Site != want {
					t.Errorf("site %d machine %d sees %s as %q, want %q", k, i, p.PeerID, p.Site, want)
				}
			}
		}
	}

	pkg := fx.Select(ExpectOK, true)[0]
	syncDBs := func(d *Daemon, ns string) {
		t.Helper()
		for _, repo := range []string{"core", "extra"} {
			if r := Get(t, client(ns), d.FileURL(repo, fx.Arch, repo+".db")); r.Status != http.StatusOK {
				t.Fatalf("GET %s.db: status %d", repo, r.Status)
			}
		}
	}
	fetch := func(d *Daemon, ns string) Hashed {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
		defer cancel()
		h, err := GetHashed(ctx, client(ns), d.FileURL(pkg.Repo, fx.Arch, pkg.File))
		if err != nil {
			return Hashed{Err: err}
		}
		return h
	}
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

	downloadFrom := func(p, kind string) *regexp.Regexp {
		return regexp.MustCompile(`msg=download .*file=` + regexp.QuoteMeta(pkg.File) + `.*sources="peer ` + p + ` \(` + kind + `\)=`)
	}
	if h := fetch(c1.d, c1.ns); !h.Complete(pkg.Size, pkg.SHA256) {
		t.Fatalf("site C: GET %s with the mirror gone: %+v", pkg.File, h)
	}
	// Site A is no LAN peer of site C's: only its provider record leads there.
	c1.d.WaitLog(downloadFrom(a.id, "remote via dht"), 10*time.Second)
	// The first machine of site C (default flags) shares it with the
	// second, which finds it by asking its LAN (or by the record, which
	// ever answers first).
	if h := fetch(c2.d, c2.ns); !h.Complete(pkg.Size, pkg.SHA256) {
		t.Fatalf("site C, second machine: GET %s with the mirror gone: %+v", pkg.File, h)
	}
	c2.d.WaitLog(downloadFrom(c1.id, "lan via (lan|dht)"), 10*time.Second)

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
