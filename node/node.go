package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/flocon/flocon/node/p2p"
	"github.com/flocon/flocon/store"
	"github.com/flocon/flocon/verify"
)

// Version is flocon's version, sent in the User-Agent; cmd/flocon may set
// it at link time.
var Version = "dev"

// Sentinel errors.
var (
	// ErrAllSourcesFailed: every source failed for reasons other than "not
	// found" (connection errors, 5xx, stalls, bad bytes).
	ErrAllSourcesFailed = errors.New("all sources failed")
	// ErrStalled: a source sent too little for too long.
	ErrStalled = errors.New("source stalled")
	// ErrBadMirror: a mirror URL or mirrorlist line is unusable.
	ErrBadMirror = errors.New("bad mirror")
	// ErrBadName: a requested name is not a plain file name.
	ErrBadName = errors.New("bad file name")
	// ErrClosed: the node has shut down.
	ErrClosed = errors.New("node closed")
	// ErrBadConfig: New refused the Config.
	ErrBadConfig = errors.New("bad node config")
)

// Defaults of the zero Config.
const (
	DefaultMirrorTimeout = 10 * time.Second
	DefaultMinSpeed      = 1024 // bytes/s
	DefaultStallWindow   = 10 * time.Second
	DefaultHaveTimeout   = 150 * time.Millisecond
	dialTimeout          = 5 * time.Second
	maxSigSize           = 16 << 10 // pacman's limit for a .sig
	maxRedirects         = 10       // pacman's (curl's) limit
)

// Config configures a Node. Store and Keyrings (or Keyring) are required.
type Config struct {
	Store *store.Store
	// Keyrings are the keyrings verification uses, reloadable while the
	// node runs. When nil, Keyring and RepoKeyrings are used, fixed.
	Keyrings *Keyrings
	Keyring  *verify.Keyring
	// RepoKeyrings gives a custom repo its own keyring instead of Keyring.
	RepoKeyrings map[string]*verify.Keyring
	Mirrors      Mirrors      // Default empty: BuiltinMirrors
	Logger       *slog.Logger // default: discard
	UserAgent    string       // default "flocon/<Version>"

	// Peer-to-peer (issue: LAN sharing). P2P false leaves the node mirror-only.
	P2P         bool
	DataDir     string   // identity.key lives here
	ListenAddrs []string // multiaddrs; default /ip4/0.0.0.0/tcp/19432, /ip4/0.0.0.0/udp/19432/quic-v1
	Bootstrap   []string // multiaddrs with /p2p/ID
	MDNS        bool
	ShareDirs   []string // read-only caches to index, verify, announce and serve

	// Peer-to-peer tuning (zero values: defaults).
	PSKFile            string   // private swarm key (/key/swarm/psk/1.0.0/); turns QUIC off
	AllowPeers         []string // when set, only these peer IDs may connect
	BlobStreamsPerPeer int      // blob streams served to one peer at once; default 8
	PeerBytesPerSec    int64    // upload cap per peer (bytes/s); 0: unlimited
	// WANBytesPerSec caps the upload to all remote peers together (a
	// budget for the site's WAN link, bytes/s); 0: unlimited.
	WANBytesPerSec int64
	// SingleSite treats every peer as on this node's LAN, found by mDNS or
	// not (multicast blocked; tests on loopback).
	SingleSite bool
	// HaveTimeout is how long a download waits for lookup answers before
	// it starts on the sources it has; answers after it still join the
	// download (within lookupBound). Default 150ms.
	HaveTimeout time.Duration
	// DisableDHT keeps lookups on the connected peers only: no kad-dht
	// provider records (issue: multi-site).
	DisableDHT bool
	// Relay runs the circuit relay service: machines behind NAT reserve a
	// slot on it and use it to coordinate hole punching (issue: NAT).
	Relay bool

	// MirrorTimeout bounds connecting and the first byte from one source.
	MirrorTimeout time.Duration // default 10s
	// MinSpeed: a transfer slower than this (bytes/s over StallWindow) moves
	// to the next source.
	MinSpeed int64 // default 1 KiB/s
	// StallWindow is the window over which MinSpeed is measured.
	StallWindow time.Duration // default 10s
	// HedgeAfter: a source silent this long after it started, or slower
	// than HedgeSpeed over this long, gets the next source started beside
	// it from the same offset; the first to bring new bytes keeps going.
	HedgeAfter time.Duration // default 2s
	HedgeSpeed int64         // bytes/s; default 64 KiB/s
}

// Node fetches, verifies, shares and announces blobs.
type Node struct {
	cfg    Config
	log    *slog.Logger
	client *http.Client // one client for every mirror: keep-alive, HTTP/2

	mu        sync.Mutex
	closed    bool
	downloads map[*download]struct{} // in flight, aborted on shutdown
	health    *healthBook            // what each source delivered (health.go)
	wg        sync.WaitGroup         // download goroutines

	// Seams to the p2p side: n.peerSources, n.peerSignature and n.banPeer
	// unless a test replaces them.
	peers   func(context.Context, cid.Cid) ([]source, <-chan source)
	peerSig func(context.Context, cid.Cid) ([]byte, peer.ID, error)
	ban     func(peer.ID, string, Evidence)

	// net is the running peer-to-peer side, nil while it is not running
	// (Config.P2P false, before Run has built it, after it stopped).
	net   atomic.Pointer[peerNet]
	ranks *rankHistory // transfer history of peers, to rank them (rank.go)
	// answered: when recent LAN answers came, to set the soft deadline
	// of the next lookups (sourcechoice.go, softDeadline)
	answered answerDelays

	stats *stats // counters for Stats (stats.go)

	started chan struct{} // closed by Run once the node is up (Started)
}

// New validates cfg and builds a Node; nothing listens until Run.
func New(cfg Config) (*Node, error) {
	if cfg.Store == nil {
		return nil, fmt.Errorf("%w: store is required", ErrBadConfig)
	}
	if cfg.Keyrings == nil && cfg.Keyring == nil {
		return nil, fmt.Errorf("%w: keyring is required", ErrBadConfig)
	}
	if cfg.Keyrings == nil {
		cfg.Keyrings = StaticKeyrings(cfg.Keyring, cfg.RepoKeyrings)
	}
	if len(cfg.Mirrors.Default) == 0 {
		cfg.Mirrors.Default = append([]string(nil), BuiltinMirrors...)
	}
	if err := cfg.Check(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadConfig, err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "flocon/" + Version
	}
	if cfg.MirrorTimeout <= 0 {
		cfg.MirrorTimeout = DefaultMirrorTimeout
	}
	if cfg.MinSpeed <= 0 {
		cfg.MinSpeed = DefaultMinSpeed
	}
	if cfg.StallWindow <= 0 {
		cfg.StallWindow = DefaultStallWindow
	}
	if cfg.HaveTimeout <= 0 {
		cfg.HaveTimeout = DefaultHaveTimeout
	}
	if cfg.HedgeAfter <= 0 {
		cfg.HedgeAfter = DefaultHedgeAfter
	}
	if cfg.HedgeSpeed <= 0 {
		cfg.HedgeSpeed = DefaultHedgeSpeed
	}
	n := &Node{
		cfg:       cfg,
		log:       cfg.Logger,
		client:    newHTTPClient(cfg.MirrorTimeout, cfg.UserAgent),
		downloads: make(map[*download]struct{}),
		health:    newHealthBook(),
		ranks:     newRankHistory(),
		stats:     newStats(cfg.Mirrors),
		started:   make(chan struct{}),
	}
	n.client.Transport = statsTransport{RoundTripper: n.client.Transport, s: n.stats}
	n.peers, n.peerSig, n.ban = n.peerSources, n.peerSignature, n.banPeer
	return n, nil
}

// Check validates the settings that need neither store nor keyring: the
// mirrors and every peer-to-peer setting the host will use, so that a bad
// one fails New (before the daemon says it is serving), not Run. New calls
// it; a caller may call it first to fail before slower work.
func (cfg Config) Check() error {
	if err := cfg.Mirrors.validate(); err != nil {
		return err
	}
	if !cfg.P2P {
		return nil
	}
	return p2p.Config{ListenAddrs: cfg.ListenAddrs, Bootstrap: cfg.Bootstrap,
		AllowPeers: cfg.AllowPeers, PSKFile: cfg.PSKFile}.Check()
}

// Run serves until ctx ends: the peer-to-peer side when Config.P2P, else it
// just waits. On return every download in flight has been aborted.
func (n *Node) Run(ctx context.Context) error {
	var err error
	if n.cfg.P2P {
		err = n.runP2P(ctx)
	} else {
		close(n.started)
		<-ctx.Done()
	}
	n.shutdown()
	return err
}

// Started is closed once Run has brought the node up: at once without the
// peer-to-peer side, else when its host is built and listening with its
// services (identify, relay, AutoNAT) started. It stays open if the host
// fails to start. The daemon waits for it to release its start-up memory
// (cmd/flocon, releaseStartPages): the host's set-up runs once.
func (n *Node) Started() <-chan struct{} { return n.started }

// runP2P builds the peer-to-peer side, plugs it into fetching and runs it
// until ctx ends.
func (n *Node) runP2P(ctx context.Context) error {
	c := n.cfg
	h, err := p2p.New(p2p.Config{
		Store: c.Store, Keyring: c.Keyring, CurrentKeyring: func() *verify.Keyring { return n.keyring("") }, Logger: n.log,
		DataDir: c.DataDir, ListenAddrs: c.ListenAddrs, Bootstrap: c.Bootstrap,
		MDNS: c.MDNS, ShareDirs: c.ShareDirs, PSKFile: c.PSKFile, AllowPeers: c.AllowPeers,
		BlobStreamsPerPeer: c.BlobStreamsPerPeer, PeerBytesPerSec: c.PeerBytesPerSec,
		WANBytesPerSec: c.WANBytesPerSec, SingleSite: c.SingleSite,
		DisableDHT: c.DisableDHT, Relay: c.Relay,
		HaveTimeout: lookupBound, // Config.HaveTimeout is the soft deadline (peernet.go)
	})
	if err != nil {
		return err
	}
	n.net.Store(&peerNet{router: h.Router(), blobs: h, bans: h, host: h})
	defer n.net.Store(nil)
	close(n.started)
	return h.Run(ctx)
}

// shutdown refuses new downloads, aborts the running ones and waits for them.
func (n *Node) shutdown() {
	n.mu.Lock()
	n.closed = true
	for d := range n.downloads {
		d.cancel(ErrClosed)
	}
	n.mu.Unlock()
	n.wg.Wait()
	n.client.CloseIdleConnections()
}

// keyring is the keyring that verifies packages of repo ("" for the main
// one), as loaded now: it may change between two downloads (Keyrings.Reload).
func (n *Node) keyring(repo string) *verify.Keyring {
	if n.cfg.Keyrings == nil { // a Node built without New (tests)
		if kr, ok := n.cfg.RepoKeyrings[repo]; ok && kr != nil {
			return kr
		}
		return n.cfg.Keyring
	}
	return n.cfg.Keyrings.For(repo)
}

// newHTTPClient is the one client every mirror request goes through.
func newHTTPClient(timeout time.Duration, userAgent string) *http.Client {
	dial := hedgedDial((&net.Dialer{Timeout: min(dialTimeout, timeout), KeepAlive: 30 * time.Second}).DialContext)
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dial,
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
		ExpectContinueTimeout: time.Second,
		MaxIdleConns:          64,
		MaxIdleConnsPerHost:   8,
		IdleConnTimeout:       90 * time.Second,
	}
	plain := &plainTransport{fallback: tr, dial: dial, proxy: http.ProxyFromEnvironment,
		headerWait: timeout, idleWait: tr.IdleConnTimeout, maxIdle: tr.MaxIdleConnsPerHost}
	return &http.Client{
		Transport:     userAgentTransport{rt: plain, ua: userAgent},
		CheckRedirect: checkRedirect,
	}
}

// checkRedirect follows at most maxRedirects redirects, and only to http(s).
func checkRedirect(req *http.Request, via []*http.Request) error {
	if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
		return fmt.Errorf("redirect to %s scheme: %w", req.URL.Scheme, ErrBadMirror)
	}
	if len(via) >= maxRedirects {
		return fmt.Errorf("stopped after %d redirects: %w", maxRedirects, ErrBadMirror)
	}
	return nil
}

// userAgentTransport sets the User-Agent of every request, redirects too.
type userAgentTransport struct {
	rt *plainTransport
	ua string
}

func (t userAgentTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("User-Agent", t.ua)
	return t.rt.RoundTrip(r)
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the transport.
func (t userAgentTransport) CloseIdleConnections() { t.rt.CloseIdleConnections() }

// Fetch starts, or joins, the download of the package blob exp.CID of repo and
// arch, and returns it at once; the download goes on after ctx ends, since
// other clients may wait on it, until it ends or the node shuts down. Sources:
// peers that have it (best first), then the repo's mirrors; a source that
// fails or stalls hands over to the next at the same offset. Bytes are
// verified as they stream; only verified blobs are committed to the store
// (with the signature that verified them).
// When exp.Signature is nil and the policy checks signatures, the .sig is
// fetched first from the repo's mirrors, or, when they have none and the
// policy requires one, from the peers that have the blob (a peer whose
// signature fails over the right bytes is banned).
//
// When the store already holds exp.CID, Fetch returns (nil, nil): the caller
// serves the stored blob. An early refusal (bad file name, no CID, a
// signature whose key is unknown, untrusted or revoked) is returned as an
// error before anything is downloaded; a failure later aborts the Pending
// (Pending.Err wraps store.ErrNotFound when no source had the file).
func (n *Node) Fetch(ctx context.Context, repo, arch string, exp verify.Expect) (*store.Pending, error) {
	return n.fetch(ctx, repo, arch, exp)
}

// FetchDB does a conditional GET (If-Modified-Since ims, zero: none) of a repo
// database file (core.db, core.db.sig, core.files, ...) on the repo's mirrors,
// in order. It returns the first 200 or 304 response (the caller closes its
// body); when every mirror answered 404 it returns an error wrapping
// store.ErrNotFound, quickly. Databases never come from peers.
func (n *Node) FetchDB(ctx context.Context, repo, arch, name string, ims time.Time) (*http.Response, error) {
	return n.fetchDB(ctx, repo, arch, name, ims)
}

// source is one place the bytes of a blob can come from: a peer or a mirror.
type source interface {
	String() string
	// Peer is the peer behind the source ("" for a mirror): bad bytes ban it.
	Peer() peer.ID
	// Fetch writes the blob's bytes from offset off to w and returns how
	// many it wrote; it returns nil only when it delivered to the end.
	// An error wrapping store.ErrNotFound means the source lacks the blob.
	Fetch(ctx context.Context, c cid.Cid, off int64, w io.Writer) (int64, error)
}
