package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/sync/errgroup"

	"github.com/flocon/flocon/store"
)

// Hooks between the fetch path (fetch.go) and the peer-to-peer side. When
// Config.P2P is false (or before runP2P has built the host) they are no-ops.

// Sentinel errors of the peer-to-peer side.
var (
	ErrP2PDisabled   = errors.New("peer-to-peer is not running")
	ErrBadPeerID     = errors.New("invalid peer id")
	ErrPeerNotFound  = fmt.Errorf("peer does not have the blob: %w", store.ErrNotFound)
	ErrPeerBusy      = errors.New("peer is busy")
	ErrPeerStalled   = errors.New("peer stalled")
	ErrPeerCorrupt   = errors.New("peer found its copy corrupt")
	ErrMisbehaviour  = errors.New("peer misbehaved")
	ErrNotBanned     = errors.New("peer is not banned")
	ErrSelfBan       = errors.New("cannot ban this node itself")
	errProtocolLimit = errors.New("request rejected")
)

// Tunables of the peer-to-peer side; Config fields override some of them.
const (
	defaultHaveTimeout   = 150 * time.Millisecond // bounded lookup: a LAN answers in a few ms
	defaultPeerStreams   = 4                      // concurrent blob streams served to one peer
	stallTimeout         = 5 * time.Second        // no byte for this long: the source gives up
	p2pDialTimeout       = 2 * time.Second
	bootstrapInterval    = 30 * time.Second
	pingInterval         = 15 * time.Second
	maxPeerSigSize       = 64 << 10
	maxBlobSize          = 1 << 40
	identityFile         = "identity.key"
	banNamespace         = "ban"
	shareNamespace       = "share"
	defaultP2PListenPort = "19432"
)

// p2pMu guards Node.p2p, which runP2P sets once the host is up and clears when
// it stops, while fetches and admin calls read it from other goroutines.
var p2pMu sync.RWMutex

// p2pState is the per-node peer-to-peer state: the host and everything that
// serves, finds, scores and bans peers.
type p2pState struct {
	n         *Node
	h         host.Host
	st        localStore
	bans      *banList
	peers     *peerTable
	shared    *shareIndex
	announced *cidSet
	inflight  *startTimes // when this node's in-flight downloads started
	recent    *recentPeers
	slots     *peerSlots
	limiter   *peerRates

	closing     chan struct{} // closed when runP2P stops
	haveTimeout time.Duration
	bootstrap   []peer.AddrInfo
	loopback    bool // every listen address is loopback (tests): keep loopback peer addrs
}

// state returns the running p2p state, or nil.
func (n *Node) state() *p2pState {
	p2pMu.RLock()
	defer p2pMu.RUnlock()
	return n.p2p
}

func (n *Node) setState(s *p2pState) {
	p2pMu.Lock()
	n.p2p = s
	p2pMu.Unlock()
}

// runP2P starts the libp2p host, discovery, the blob protocol and announcing;
// it blocks until ctx ends.
func (n *Node) runP2P(ctx context.Context) error {
	if !n.cfg.P2P {
		<-ctx.Done()
		return nil
	}
	return n.runP2PWith(ctx, newStoreAdapter(n.cfg.Store))
}

// runP2PWith is runP2P over any localStore (tests use a fake one).
func (n *Node) runP2PWith(ctx context.Context, st localStore) error {
	s, err := newP2PState(n, st)
	if err != nil {
		return err
	}
	defer func() {
		n.setState(nil)
		close(s.closing)
		_ = s.h.Close()
	}()
	n.setState(s)
	n.log.Info("p2p host started", "peerID", s.h.ID().String(), "addrs", fmt.Sprint(s.h.Addrs()))
	return s.run(ctx)
}

// run starts the background loops of a built state and waits for ctx.
func (s *p2pState) run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { s.announceStored(); return nil })
	g.Go(func() error { return s.runDiscovery(ctx) })
	g.Go(func() error { s.runBootstrap(ctx); return nil })
	g.Go(func() error { s.runPing(ctx); return nil })
	g.Go(func() error { return s.runShare(ctx) })
	return g.Wait()
}

// peerSources lists the peers that have (or are downloading) c, best first,
// within a bounded lookup time; nil when none answers.
func (n *Node) peerSources(ctx context.Context, c cid.Cid) []source {
	s := n.state()
	if s == nil {
		return nil
	}
	return s.lookup(ctx, c)
}

// banPeer bans p at once (persisted, with reason and evidence) and closes its
// connections.
func (n *Node) banPeer(p peer.ID, reason string, ev Evidence) {
	s := n.state()
	if s == nil {
		n.log.Warn("ban without p2p host", "peer", p.String(), "reason", reason)
		return
	}
	if err := s.ban(p, reason, ev); err != nil {
		n.log.Error("ban peer", "peer", p.String(), "err", err)
	}
}

// announce tells peers that c is available (complete or in flight). Peers
// find it by asking (/flocon/have); the announced set is what this node
// offers and is checked against the store on every answer.
func (n *Node) announce(c cid.Cid) {
	if s := n.state(); s != nil {
		s.announced.add(c)
		if s.st.Has(c) {
			s.inflight.done(c)
		} else {
			s.inflight.start(c, time.Now())
		}
	}
}

// peerSignature asks the peers that have c for the detached signature they
// verified it with (for a blob whose db entry has no %PGPSIG% when the
// mirrors have no .sig). The caller verifies it against the bytes; a
// signature that fails on bytes matching c bans the peer it came from.
func (n *Node) peerSignature(ctx context.Context, c cid.Cid) ([]byte, peer.ID, error) {
	s := n.state()
	if s == nil {
		return nil, "", ErrP2PDisabled
	}
	return s.fetchSig(ctx, c)
}

// Evidence is why a peer was banned.
type Evidence struct {
	CID        string `json:"cid"`
	WantSHA256 string `json:"wantSha256,omitempty"`
	GotSHA256  string `json:"gotSha256,omitempty"`
	Detail     string `json:"detail,omitempty"`
}
