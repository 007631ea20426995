package e2e

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// natNet is an "internet" and sites behind NAT, all in network namespaces
// (nothing of it is in the root namespace, so its public-looking addresses
// shadow nothing on the host):
//
//   - the internet is a bridge in its own namespace, with public-looking
//     addresses (libp2p hole-punches only to public ones); the test's
//     upstream mirror listens there at .1;
//   - a public machine has one veth on that bridge;
//   - a site is a router namespace (WAN veth on the internet bridge, a LAN
//     bridge, nftables masquerade, no inbound connection it did not see go
//     out first) and machines on its LAN, 10.7.SITE.0/24, routed through it.
type natNet struct {
	t    testing.TB
	id   string
	inet string // namespace of the internet bridge
	pub  string // the internet's /24, e.g. 7.12.34
}

// natSite is one site behind its own NAT router.
type natSite struct {
	n      *natNet
	router string // namespace
	lan    string // e.g. 10.7.0
	wanIP  string
}

func newNATNet(t testing.TB) *natNet {
	t.Helper()
	requireNetns(t)
	requireTools(t, "nft")
	b := make([]byte, 2)
	_, _ = rand.Read(b)
	n := &natNet{t: t, id: randomHex(2), pub: fmt.Sprintf("7.%d.%d", b[0], b[1])}
	n.inet = n.netns("inet")
	n.sh("ip", "-n", n.inet, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
	n.sh("ip", "-n", n.inet, "addr", "add", n.pub+".1/24", "dev", "br0")
	n.sh("ip", "-n", n.inet, "link", "set", "br0", "up")
	return n
}

// netns makes a namespace (loopback up), deleted when the test ends.
func (n *natNet) netns(name string) string {
	n.t.Helper()
	ns := fmt.Sprintf("fl%s-%s", n.id, name)
	n.sh("ip", "netns", "add", ns)
	n.t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	n.sh("ip", "-n", ns, "link", "set", "lo", "up")
	return ns
}

// plug links namespace ns (interface dev, address ip/24) to bridge br of
// namespace at.
func (n *natNet) plug(ns, dev, ip, at, br string) {
	n.t.Helper()
	port := "p" + strings.TrimPrefix(ns, "fl"+n.id+"-")
	n.sh("ip", "-n", ns, "link", "add", dev, "type", "veth", "peer", "name", port, "netns", at)
	n.sh("ip", "-n", at, "link", "set", port, "master", br, "up")
	n.sh("ip", "-n", ns, "addr", "add", ip+"/24", "dev", dev)
	n.sh("ip", "-n", ns, "link", "set", dev, "up", "multicast", "on")
}

// public makes a machine on the internet at .host.
func (n *natNet) public(name string, host int) (ns, ip string) {
	n.t.Helper()
	ns, ip = n.netns(name), fmt.Sprintf("%s.%d", n.pub, host)
	n.plug(ns, "eth0", ip, n.inet, "br0")
	return ns, ip
}

// natRules: masquerade what leaves by the WAN, forward what the LAN sends
// (to the WAN or, bridged, to another machine of the LAN: with
// br_netfilter loaded bridged packets go through this chain too) and, from
// the WAN, only what the LAN started; drop new connections from the WAN (a
// home router: no port forward, no RST that would tell a hole-punching
// peer "no").
const natRules = `table ip flnat {
	chain flpost { type nat hook postrouting priority srcnat; policy accept; oifname "wan" masquerade; }
	chain flfwd { type filter hook forward priority filter; policy drop; ct state established,related accept; iifname != "wan" accept; }
	chain flin { type filter hook input priority filter; policy accept; iifname "wan" ct state new drop; }
}
`

// site makes site k: a router at .wanHost of the internet and 10.7.k.1 on
// its LAN.
func (n *natNet) site(k, wanHost int) *natSite {
	n.t.Helper()
	s := &natSite{n: n, lan: fmt.Sprintf("10.7.%d", k)}
	s.router, s.wanIP = n.public(fmt.Sprintf("r%d", k), wanHost)
	n.sh("ip", "-n", s.router, "link", "set", "eth0", "name", "wan")
	n.sh("ip", "-n", s.router, "link", "set", "wan", "up")
	n.sh("ip", "-n", s.router, "link", "add", "lan0", "type", "bridge", "mcast_snooping", "0")
	n.sh("ip", "-n", s.router, "addr", "add", s.lan+".1/24", "dev", "lan0")
	n.sh("ip", "-n", s.router, "link", "set", "lan0", "up", "multicast", "on")
	n.sh("ip", "netns", "exec", s.router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	cmd := exec.Command("ip", "netns", "exec", s.router, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(natRules)
	if out, err := cmd.CombinedOutput(); err != nil {
		n.t.Fatalf("nft in %s: %v: %s", s.router, err, out)
	}
	return s
}

// machine makes machine i of the site at .10+i, its default route through
// the router.
func (s *natSite) machine(i int) (ns, ip string) {
	s.n.t.Helper()
	ns, ip = s.n.netns(fmt.Sprintf("%s-m%d", strings.TrimPrefix(s.router, "fl"+s.n.id+"-"), i)), fmt.Sprintf("%s.%d", s.lan, 10+i)
	s.n.plug(ns, "eth0", ip, s.router, "lan0")
	s.n.sh("ip", "-n", ns, "route", "add", "default", "via", s.lan+".1")
	return ns, ip
}

// blockPeer drops every packet the site's router would forward to or from
// ip (another site's router) until the returned function is called.
func (s *natSite) blockPeer(ip string) (unblock func()) {
	s.n.t.Helper()
	rules := fmt.Sprintf(`table ip flblock {
	chain flblockfwd { type filter hook forward priority filter - 10; policy accept; ip daddr %s drop; ip saddr %s drop; }
}
`, ip, ip)
	cmd := exec.Command("ip", "netns", "exec", s.router, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		s.n.t.Fatalf("nft in %s: %v: %s", s.router, err, out)
	}
	return func() { s.n.sh("ip", "netns", "exec", s.router, "nft", "delete", "table", "ip", "flblock") }
}

func (n *natNet) sh(args ...string) {
	n.t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		n.t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// inNetns runs fn on an OS thread switched into namespace ns: the sockets
// fn opens stay in ns. The thread goes back to its own namespace, or dies
// with the goroutine if it cannot.
func inNetns(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- err
			return
		}
		defer self.Close()
		target, err := os.Open("/run/netns/" + ns)
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns back from %s: %w", ns, err) // the locked thread exits
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// netnsClient is an HTTP client whose connections are made in namespace ns.
func netnsClient(ns string) *http.Client {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := inNetns(ns, func() error {
			var err error
			c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
	return &http.Client{Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true}, Timeout: 60 * time.Second}
}

// netnsReady is a DaemonConfig.Ready for a daemon in namespace ns.
func netnsReady(ns string) func(ctx context.Context, d *Daemon) error {
	c := netnsClient(ns)
	return func(ctx context.Context, d *Daemon) error { return healthzVia(ctx, c, d) }
}
