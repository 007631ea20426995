package p2p

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	ma "github.com/multiformats/go-multiaddr"
	"golang.org/x/sync/errgroup"

	"github.com/flocon/flocon/node/routing"
	"github.com/flocon/flocon/store"
	"github.com/flocon/flocon/verify"
)

// Sentinel errors of the peer-to-peer side.
var (
	ErrBadPeerID     = errors.New("invalid peer id")
	ErrPeerNotFound  = fmt.Errorf("peer does not have the blob: %w", store.ErrNotFound)
	ErrPeerBusy      = errors.New("peer is busy")
	ErrPeerStalled   = errors.New("peer stalled")
	ErrPeerCorrupt   = errors.New("peer found its copy corrupt")
	ErrMisbehaviour  = errors.New("peer misbehaved")
	ErrNotBanned     = errors.New("peer is not banned")
	ErrSelfBan       = errors.New("cannot ban this node itself")
	ErrBadConfig     = errors.New("bad p2p config")
	errProtocolLimit = errors.New("request rejected")
)

// Tunables of the peer-to-peer side; Config fields override some of them.
const (
	defaultHaveTimeout   = 150 * time.Millisecond // bounded lookup: a LAN answers in a few ms
	defaultPeerStreams   = 8                      // concurrent blob streams served to one peer: above pacman's 5 parallel downloads
	stallTimeout         = 5 * time.Second        // no byte for this long: the source gives up
	p2pDialTimeout       = 2 * time.Second
	pingInterval         = 15 * time.Second
	maxPeerSigSize       = 64 << 10
	maxBlobSize          = 1 << 40
	identityFile         = "identity.key"
	banNamespace         = "ban"
	shareNamespace       = "share"
	defaultP2PListenPort = "19432"
)

// Config configures the peer-to-peer side. Store and Keyring (or
// CurrentKeyring) are required.
type Config struct {
	Store   *store.Store
	Keyring *verify.Keyring // verifies the files of ShareDirs
	// CurrentKeyring, when set, is called for each file instead of using
	// Keyring: the keyring as reloaded now (node.Keyrings).
	CurrentKeyring func() *verify.Keyring
	Logger         *slog.Logger // default: discard

	DataDir     string   // identity.key lives here; "" for a throw-away identity
	ListenAddrs []string // multiaddrs; default /ip4/0.0.0.0/tcp/19432, /ip4/0.0.0.0/udp/19432/quic-v1
	Bootstrap   []string // multiaddrs with /p2p/ID
	MDNS        bool
	ShareDirs   []string // read-only caches to index, verify, announce and serve

	PSKFile            string   // private swarm key (/key/swarm/psk/1.0.0/); turns QUIC off
	AllowPeers         []string // when set, only these peer IDs may connect
	BlobStreamsPerPeer int      // blob streams served to one peer at once; default 8
	PeerBytesPerSec    int64    // upload cap per peer (bytes/s); 0: unlimited
	// WANBytesPerSec caps the upload to every remote peer together
	// (bytes/s; one budget for the site's WAN link); 0: unlimited.
	WANBytesPerSec int64
	// SingleSite: every peer is on this node's site, found by mDNS or not
	// (a site where multicast cannot pass; tests on loopback).
	SingleSite  bool
	HaveTimeout time.Duration // bound of a have lookup on peers; default 150ms
	// DisableDHT leaves the node LAN-only: no kad-dht provider records.
	DisableDHT bool
	// Relay runs the circuit relay service for machines behind NAT (nat.go).
	Relay bool

	swarmOpts []swarm.Option // more swarm options (tests, benches)
	plainTLS  bool           // libp2p's TLS without record batching (interop tests)
}

// Host is a running peer-to-peer side: the libp2p host and everything that
// serves, finds, scores and bans peers. It implements the blob transfer
// (FetchBlob, FetchSig) and, through LAN, the LAN router.
type Host struct {
	cfg          Config
	log          *slog.Logger
	h            host.Host
	st           localStore
	bans         *banList
	peers        *peerTable
	sites        *siteSet
	shared       *shareIndex
	announced    *cidSet
	inflight     *startTimes    // when this node's in-flight downloads started
	followers    *followerSet   // peers streaming an in-flight blob from this node
	heard        *heardBook     // when each peer's blob streams last brought a byte
	verified     *verifiedFiles // served files proven whole lately (verified.go)
	heads        *headCache     // first bytes of blobs from have answers (heads.go)
	recent       *recentPeers
	slots        *peerSlots
	limiter      *peerRates
	wan          *peerRates     // one budget shared by every remote peer
	dht          *DHT           // nil when Config.DisableDHT
	relay        *relayv2.Relay // nil unless Config.Relay
	boot         bootPeers      // the peers the bootstrap entries led to
	punchRetried punchRetries   // failed hole punches per peer (nat.go)

	closing     chan struct{} // closed when the host stops
	quic        quicMoves     // LAN peers moved from QUIC to TCP (tcpafterquic.go)
	closeOnce   sync.Once
	haveTimeout time.Duration
	bootstrap   []bootstrapPeer
	loopback    bool // every listen address is loopback (tests): keep loopback peer addrs
}

// Check reads every setting New will use (listen addresses, bootstrap
// peers, allow-list, swarm key) without building anything, so a daemon can
// refuse a bad one before it says it is serving.
func (c Config) Check() error {
	if _, _, err := listenAddrs(c.ListenAddrs, c.PSKFile != ""); err != nil {
		return err
	}
	if _, err := parseBootstrap(c.Bootstrap); err != nil {
		return err
	}
	if _, err := parsePeerIDs(c.AllowPeers); err != nil {
		return fmt.Errorf("allow peers: %w", err)
	}
	if c.PSKFile != "" {
		if _, err := loadPSK(c.PSKFile); err != nil {
			return err
		}
	}
	return nil
}

// New builds and starts the libp2p host (listening, protocol handlers and
// ban gate installed); discovery, bootstrap and sharing start with Run.
func New(cfg Config) (*Host, error) {
	if cfg.Store == nil {
		return nil, fmt.Errorf("%w: store is required", ErrBadConfig)
	}
	return newHost(cfg, newStoreAdapter(cfg.Store))
}

// Run runs discovery, bootstrap, pings and the shared directories until ctx
// ends, then closes the host.
func (s *Host) Run(ctx context.Context) error {
	defer s.Close()
	s.log.Info("p2p host started", "peerID", s.h.ID().String(), "addrs", fmt.Sprint(s.h.Addrs()))
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { s.announceStored(); return nil })
	g.Go(func() error { return s.runDiscovery(ctx) })
	g.Go(func() error { s.runBootstrap(ctx); return nil })
	g.Go(func() error { s.runPeerExchange(ctx); return nil })
	g.Go(func() error { s.runRelayReservations(ctx); return nil })
	g.Go(func() error { s.runPing(ctx); return nil })
	g.Go(func() error { s.runOutsiderSweep(ctx); return nil })
	g.Go(func() error { return s.runShare(ctx) })
	if s.dht != nil {
		g.Go(func() error { s.dht.run(ctx); return nil })
	}
	return g.Wait()
}

// Close stops serving and closes the libp2p host; safe to call more than
// once.
func (s *Host) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.closing)
		if s.dht != nil {
			err = s.dht.close()
		}
		if s.relay != nil {
			err = errors.Join(err, s.relay.Close())
		}
		err = errors.Join(err, s.h.Close())
	})
	return err
}

// Router is the node's router: the LAN lookup first, then the DHT.
func (s *Host) Router() routing.Router {
	if s.dht == nil {
		return routing.Compose(s.LAN())
	}
	return routing.Compose(s.LAN(), s.dht)
}

// ID is this node's peer ID.
func (s *Host) ID() peer.ID { return s.h.ID() }

// Addrs are the addresses peers reach this node on.
func (s *Host) Addrs() []ma.Multiaddr { return s.h.Addrs() }

// IsConnected reports whether this node has a connection to p.
func (s *Host) IsConnected(p peer.ID) bool {
	return s.h.Network().Connectedness(p) == network.Connected
}

// Announced is how many blobs this node offers; Shared how many of them
// are files of the shared directories.
func (s *Host) Announced() int { return s.announced.len() }

// Shared is how many files of the shared directories are offered.
func (s *Host) Shared() int { return s.shared.len() }

// Evidence is why a peer was banned.
type Evidence struct {
	CID        string `json:"cid"`
	WantSHA256 string `json:"wantSha256,omitempty"`
	GotSHA256  string `json:"gotSha256,omitempty"`
	Detail     string `json:"detail,omitempty"`
}

// announceStored offers every blob already in the store at start.
func (s *Host) announceStored() {
	err := s.st.Blobs(func(b store.BlobInfo) error {
		s.announced.add(b.CID)
		return nil
	})
	if err != nil {
		s.log.Warn("announce stored blobs", "err", err)
	}
}
