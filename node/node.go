package node

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/flocon/flocon/store"
	"github.com/flocon/flocon/verify"
)

// Config configures a Node. Store and Keyring are required.
type Config struct {
	Store   *store.Store
	Keyring *verify.Keyring
	Mirrors Mirrors
	Logger  *slog.Logger // default: discard

	// Peer-to-peer (issue: LAN sharing). P2P false leaves the node mirror-only.
	P2P         bool
	DataDir     string   // identity.key lives here
	ListenAddrs []string // multiaddrs; default /ip4/0.0.0.0/tcp/19432, /ip4/0.0.0.0/udp/19432/quic-v1
	Bootstrap   []string // multiaddrs with /p2p/ID
	MDNS        bool
	ShareDirs   []string // read-only caches to index, verify, announce and serve

	// Peer-to-peer tuning (zero values: defaults).
	PSKFile            string        // private swarm key (/key/swarm/psk/1.0.0/); turns QUIC off
	AllowPeers         []string      // when set, only these peer IDs may connect
	BlobStreamsPerPeer int           // blob streams served to one peer at once; default 4
	PeerBytesPerSec    int64         // upload cap per peer (bytes/s); 0: unlimited
	HaveTimeout        time.Duration // bound of a have lookup on peers; default 150ms

	// MirrorTimeout bounds connecting and the first byte from one mirror.
	MirrorTimeout time.Duration // default 10s
	// MinSpeed: a transfer slower than this (bytes/s over 10 s) moves to the next source.
	MinSpeed int64
}

// Node fetches, verifies, shares and announces blobs.
type Node struct {
	cfg Config
	log *slog.Logger
	// STUB: the node implementation fills the rest in.
	p2p *p2pState
}

// New validates cfg and builds a Node; nothing listens until Run.
func New(cfg Config) (*Node, error) { panic("unimplemented") }

// Run serves until ctx ends.
func (n *Node) Run(ctx context.Context) error { panic("unimplemented") }

// Fetch starts, or joins, the download of the package blob exp.CID of repo and
// arch, and returns it at once; the download goes on after ctx ends, since
// other clients may wait on it. Sources: peers that have it (best first), then
// the repo's mirrors; a source that fails or stalls hands over to the next at
// the same offset. Bytes are verified as they stream; only verified blobs are
// committed to the store (with the signature that verified them).
// When exp.Signature is nil and the policy checks signatures, the .sig is
// fetched first (peers or mirrors).
func (n *Node) Fetch(ctx context.Context, repo, arch string, exp verify.Expect) (*store.Pending, error) {
	panic("unimplemented")
}

// FetchDB does a conditional GET (If-Modified-Since ims, zero: none) of a repo
// database file (core.db, core.db.sig, core.files, ...) on the repo's mirrors,
// in order. It returns the first 200 or 304 response (the caller closes its
// body); when every mirror answered 404 it returns an error wrapping
// store.ErrNotFound, quickly. Databases never come from peers.
func (n *Node) FetchDB(ctx context.Context, repo, arch, name string, ims time.Time) (*http.Response, error) {
	panic("unimplemented")
}

// source is one place the bytes of a blob can come from: a peer or a mirror.
type source interface {
	String() string
	// Peer is the peer behind the source ("" for a mirror): bad bytes ban it.
	Peer() peer.ID
	// Fetch writes the blob's bytes from offset off to w and returns how
	// many it wrote; it returns nil only when it delivered to the end.
	Fetch(ctx context.Context, c cid.Cid, off int64, w io.Writer) (int64, error)
}
