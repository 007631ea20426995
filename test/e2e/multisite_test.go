package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
	"time"
)

// writeSwarmKey writes a private swarm key file (/key/swarm/psk/1.0.0/).
func writeSwarmKey(t *testing.T) string {
	t.Helper()
	path := filepath.Join(TempDir(t, "psk"), "swarm.key")
	if err := os.WriteFile(path, []byte("/key/swarm/psk/1.0.0/\n/base16/\n"+randomHex(32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestMultiSite: one public bootstrap machine and three sites of two
// machines, every one given only the bootstrap address, a private swarm key
// and otherwise default p2p flags (TCP and QUIC listen addresses: the key
// must turn QUIC off by itself). mDNS is off, so the machines can only find
// each other through the bootstrap peer and the DHT. All seven connect to
// each other; a package fetched at site A is served to site C by peers
// when the mirror is gone; machines with no key or another key never
// connect and never get a byte.
//
// The sites share one segment here (no NAT in between): what is tested is
// finding the swarm from one address, the private swarm and the transfer;
// mDNS is off, so no machine is on another's site: site C finds site A's
// copies through the DHT's provider records, as across real sites.
func TestMultiSite(t *testing.T) {
	lan := newLAN(t)
	fx := LoadFixtures(t)
	up := NewUpstream(t, fx.Mirror, WithAddr(lan.gateway()+":0"))
	key := writeSwarmKey(t)
	start := func(i int, args ...string) *Daemon {
		ns, ip := lan.add(i)
		return StartDaemon(t, DaemonConfig{
			Mirrors: []string{up.Mirror()}, Keyring: fx.Keyring, P2P: true,
			Listen: ip + ":19433", Prefix: []string{"ip", "netns", "exec", ns},
			Args: append([]string{"--no-mdns", "--log-level", "debug"}, args...), // debug: "provider record published"
		})
	}
	boot := start(0, "--psk-file", key)
	bootAddr := "/ip4/" + lan.subnet + ".10/tcp/19432/p2p/" + peerIDOf(t, boot)

	began := time.Now()
	var machines []*Daemon
	for i := 1; i <= 6; i++ {
		machines = append(machines, start(i, "--psk-file", key, "--bootstrap", bootAddr))
	}
	ids := []string{peerIDOf(t, boot)}
	for _, m := range machines {
		ids = append(ids, peerIDOf(t, m))
	}
	for i, m := range append([]*Daemon{boot}, machines...) {
		others := slices.Delete(slices.Clone(ids), i, i+1)
		waitPeers(t, m, others...)
	}
	t.Logf("all 7 machines connected to each other %s after the 6 started (one bootstrap address each)",
		time.Since(began).Round(100*time.Millisecond))

	outsiders := []*Daemon{
		start(7, "--bootstrap", bootAddr),                                 // no key
		start(8, "--psk-file", writeSwarmKey(t), "--bootstrap", bootAddr), // another key
	}

	pkgs := fx.Select(ExpectOK, true)
	if len(pkgs) > 3 {
		pkgs = pkgs[:3]
	}
	siteA := NewPacman(t, fx.Keyring, []string{machines[0].Server()})
	siteC := NewPacman(t, fx.Keyring, []string{machines[4].Server()})
	var outPacmans []*Pacman
	for _, d := range outsiders {
		p := NewPacman(t, fx.Keyring, []string{d.Server()})
		p.Sy()
		outPacmans = append(outPacmans, p)
	}
	siteA.Sy()
	siteC.Sy()
	siteA.Sw(names(pkgs)...)
	assertCached(t, siteA, pkgs)
	// Another site finds A's copies through DHT provider records (the LAN
	// lookup asks this site only), which A publishes in batches each second.
	for _, f := range pkgs {
		machines[0].WaitLog(regexp.MustCompile(`provider record published.*`+regexp.QuoteMeta(f.CID())), 30*time.Second)
	}
	up.Stop()
	siteC.Sw(names(pkgs)...)
	assertCached(t, siteC, pkgs)
	machines[4].WaitLog(regexp.MustCompile(`msg=download .*verdict=verified .*via dht`), 5*time.Second)
	for _, f := range pkgs {
		if n := up.CountGETs(f.URLPath(fx.Arch)); n != 1 {
			t.Errorf("upstream GETs of %s: %d, want 1 (site A's)", f.File, n)
		}
	}

	for i, d := range outsiders {
		if out, err := outPacmans[i].Run("-Sw", pkgs[0].Name); err == nil {
			t.Errorf("outsider %d got %s with the mirror gone: %s", i, pkgs[0].Name, out)
		}
		if _, err := os.Stat(outPacmans[i].CacheFile(pkgs[0].File)); err == nil {
			t.Errorf("outsider %d has %s in its cache", i, pkgs[0].File)
		}
		var peers []lanPeer
		floconJSON(t, d, &peers, "peers")
		if len(peers) != 0 {
			t.Errorf("outsider %d is connected to %+v", i, peers)
		}
	}
	var bootPeers []lanPeer
	floconJSON(t, boot, &bootPeers, "peers")
	for _, d := range outsiders {
		id := peerIDOf(t, d)
		for _, p := range bootPeers {
			if p.PeerID == id {
				t.Errorf("outsider %s connected to the bootstrap machine", id)
			}
		}
	}
}
