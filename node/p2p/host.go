package p2p

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/pnet"
	"github.com/libp2p/go-libp2p/core/protocol"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// defaultListenAddrs are TCP and QUIC on every IPv4 interface, port 19432.
var defaultListenAddrs = []string{
	"/ip4/0.0.0.0/tcp/" + defaultP2PListenPort,
	"/ip4/0.0.0.0/udp/" + defaultP2PListenPort + "/quic-v1",
}

// newHost builds the host over st (not yet discovering) with the ban gate
// and the protocol handlers installed.
func newHost(cfg Config, st localStore) (*Host, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	allow, err := parsePeerIDs(cfg.AllowPeers)
	if err != nil {
		return nil, fmt.Errorf("allow peers: %w", err)
	}
	bans, err := loadBans(st, allow)
	if err != nil {
		return nil, err
	}
	bans.outsiders = newOutsiders(cfg.Logger, cfg.PSKFile != "")
	boot, err := parseBootstrap(cfg.Bootstrap)
	if err != nil {
		return nil, err
	}
	s := &Host{
		cfg: cfg, log: cfg.Logger, st: st, bans: bans, bootstrap: boot,
		peers:       newPeerTable(),
		sites:       &siteSet{lan: make(map[peer.ID]bool), all: cfg.SingleSite},
		shared:      newShareIndex(),
		announced:   newCIDSet(),
		inflight:    newStartTimes(),
		followers:   newFollowerSet(),
		heard:       newHeardBook(),
		verified:    newVerifiedFiles(),
		heads:       newHeadCache(),
		recent:      newRecentPeers(),
		slots:       newPeerSlots(orDefault(cfg.BlobStreamsPerPeer, defaultPeerStreams)),
		limiter:     newPeerRates(cfg.PeerBytesPerSec),
		wan:         newPeerRates(cfg.WANBytesPerSec),
		haveTimeout: orDefault(cfg.HaveTimeout, defaultHaveTimeout),
		closing:     make(chan struct{}),
	}
	h, loopback, err := newLibp2p(cfg, bans)
	if err != nil {
		return nil, err
	}
	s.h, s.loopback = h, loopback
	if err := s.startRelay(); err != nil {
		_ = h.Close()
		return nil, fmt.Errorf("relay service: %w", err)
	}
	if !cfg.DisableDHT {
		if s.dht, err = newDHT(s); err != nil {
			_ = h.Close()
			return nil, fmt.Errorf("dht: %w", err)
		}
	}
	h.Network().Notify(&network.NotifyBundle{
		ConnectedF: func(_ network.Network, c network.Conn) {
			s.recent.connected(c.RemotePeer())
			s.connectedOver(c) // tcpafterquic.go
		},
		DisconnectedF: func(nw network.Network, c network.Conn) {
			if nw.Connectedness(c.RemotePeer()) != network.Connected {
				s.recent.mark(c.RemotePeer(), time.Now())
			}
		},
	})
	h.SetStreamHandler(haveProto, s.handleHave)
	h.SetStreamHandler(haveProtoHead, s.handleHave)
	h.SetStreamHandler(blobProto, s.handleBlob)
	h.SetStreamHandler(blobProtoLive, s.handleBlob)
	h.SetStreamHandler(peersProto, s.handlePeers)
	if s.dht != nil {
		h.SetStreamHandler(recordsProto, s.handleRecords)
	}
	return s, nil
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// newLibp2p builds the libp2p host: TCP (+ QUIC unless a PSK is set: QUIC
// cannot run in a private network), TLS then Noise (TLS first: AES-GCM,
// in hardware, measured 20% faster than Noise's ChaCha20 on the blob
// stream; its records batched, recordbatch.go), yamux, explicit resource
// limits, the ban gate and the NAT traversal of nat.go. loopback reports that every listen address is a
// loopback one, in which case loopback addresses are advertised (tests).
func newLibp2p(cfg Config, gate *banList) (h host.Host, loopback bool, err error) {
	key, err := loadIdentity(cfg.DataDir)
	if err != nil {
		return nil, false, err
	}
	listen, dropped, err := listenAddrs(cfg.ListenAddrs, cfg.PSKFile != "")
	if err != nil {
		return nil, false, err
	}
	if len(dropped) > 0 {
		cfg.Logger.Info("private swarm key set: quic turned off, libp2p cannot combine them", "dropped", fmt.Sprint(dropped))
	}
	rm, err := newResourceManager(orDefault(cfg.BlobStreamsPerPeer, defaultPeerStreams))
	if err != nil {
		return nil, false, fmt.Errorf("resource manager: %w", err)
	}
	loopback = allLoopback(listen)
	sp := hostSpec{
		key: key, listen: listen, gate: gate, rm: rm, plainTLS: cfg.plainTLS,
		relays: staticRelays(cfg.Bootstrap), swarmOpts: cfg.swarmOpts,
	}
	if cfg.PSKFile != "" {
		if sp.psk, err = loadPSK(cfg.PSKFile); err != nil {
			_ = rm.Close()
			return nil, false, err
		}
	}
	h, err = buildHost(sp) // libp2phost.go
	if err != nil {
		return nil, false, fmt.Errorf("libp2p host: %w", err)
	}
	return h, loopback, nil
}

// newResourceManager is libp2p's scaled defaults plus explicit limits for
// flocon's protocols. The blob limit per peer is twice the served slots: the
// node answers "busy" itself first, the resource manager is the backstop.
func newResourceManager(streamsPerPeer int) (network.ResourceManager, error) {
	cfg := rcmgr.DefaultLimits
	setServiceLimits(&cfg)
	perPeer := 2 * streamsPerPeer
	for _, proto := range []protocol.ID{blobProto, blobProtoLive} {
		cfg.AddProtocolPeerLimit(proto, rcmgr.BaseLimit{
			Streams: 2 * perPeer, StreamsInbound: perPeer, StreamsOutbound: perPeer,
			Memory: 64 << 20,
		}, rcmgr.BaseLimitIncrease{})
		cfg.AddProtocolLimit(proto, rcmgr.BaseLimit{
			Streams: 1024, StreamsInbound: 512, StreamsOutbound: 512, Memory: 512 << 20,
		}, rcmgr.BaseLimitIncrease{})
	}
	for _, proto := range []protocol.ID{haveProto, haveProtoHead} {
		cfg.AddProtocolPeerLimit(proto, rcmgr.BaseLimit{
			Streams: 64, StreamsInbound: 32, StreamsOutbound: 32, Memory: 4 << 20,
		}, rcmgr.BaseLimitIncrease{})
	}
	// Without WithMetricsDisabled the manager reports every stream and
	// memory reservation to Prometheus' default registry, which nothing
	// here serves (libp2p.DisableMetrics does not reach a manager built
	// here): 13% of the CPU of a DHT lookup at 100 nodes (BenchmarkRoutingScale).
	return rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(cfg.AutoScale()), rcmgr.WithMetricsDisabled())
}

// dropLoopback hides loopback addresses from peers (they would dial
// themselves), unless the node listens on loopback only (tests).
func dropLoopback(addrs []ma.Multiaddr) []ma.Multiaddr {
	out := make([]ma.Multiaddr, 0, len(addrs))
	for _, a := range addrs {
		if !manet.IsIPLoopback(a) {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return addrs
	}
	return out
}

func allLoopback(addrs []ma.Multiaddr) bool {
	for _, a := range addrs {
		if !manet.IsIPLoopback(a) {
			return false
		}
	}
	return len(addrs) > 0
}

// listenAddrs parses the configured addresses (default: TCP and QUIC on
// 19432). With a PSK, QUIC addresses are dropped (libp2p cannot run QUIC in
// a private network); dropped lists them so the caller can say so.
func listenAddrs(in []string, psk bool) (out, dropped []ma.Multiaddr, err error) {
	if len(in) == 0 {
		in = defaultListenAddrs
	}
	for _, s := range in {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return nil, nil, fmt.Errorf("listen address %q: %w", s, err)
		}
		if _, err := a.ValueForProtocol(ma.P_QUIC_V1); err == nil && psk {
			dropped = append(dropped, a)
			continue
		}
		out = append(out, a)
	}
	if len(out) == 0 {
		return nil, nil, fmt.Errorf("no listen address left: quic cannot be used with a private network key, add a tcp one")
	}
	return out, dropped, nil
}

// loadIdentity reads $DATA/identity.key, creating it (0600) on first start,
// so the peer ID, and every ban other nodes hold against it, is stable.
func loadIdentity(dataDir string) (crypto.PrivKey, error) {
	if dataDir == "" {
		k, _, err := crypto.GenerateEd25519Key(rand.Reader)
		return k, err
	}
	path := filepath.Join(dataDir, identityFile)
	b, err := os.ReadFile(path)
	if err == nil {
		k, err := crypto.UnmarshalPrivateKey(b)
		if err != nil {
			return nil, fmt.Errorf("identity %s: %w", path, err)
		}
		return k, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("identity %s: %w", path, err)
	}
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	b, err = crypto.MarshalPrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("identity %s: %w", path, err)
	}
	if err := writeFileAtomic(path, b, 0o600); err != nil {
		return nil, fmt.Errorf("identity %s: %w", path, err)
	}
	return k, nil
}

// writeFileAtomic writes a new file by temp file, fsync and rename.
func writeFileAtomic(path string, b []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// loadPSK reads an IPFS-style swarm key (/key/swarm/psk/1.0.0/).
func loadPSK(path string) (pnet.PSK, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("psk %s: %w", path, err)
	}
	defer f.Close()
	psk, err := pnet.DecodeV1PSK(f)
	if err != nil {
		return nil, fmt.Errorf("psk %s: %w", path, err)
	}
	return psk, nil
}

func parsePeerIDs(in []string) ([]peer.ID, error) {
	out := make([]peer.ID, 0, len(in))
	for _, s := range in {
		p, err := peer.Decode(s)
		if err != nil {
			return nil, fmt.Errorf("peer %q: %w", s, ErrBadPeerID)
		}
		out = append(out, p)
	}
	return out, nil
}
