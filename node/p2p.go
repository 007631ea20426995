package node

import (
	"context"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Hooks between the fetch path (fetch.go) and the peer-to-peer side. When
// Config.P2P is false they are no-ops.
// STUB: the p2p implementation replaces these bodies.

// runP2P starts the libp2p host, discovery, the blob protocol and announcing;
// it blocks until ctx ends.
func (n *Node) runP2P(ctx context.Context) error { <-ctx.Done(); return nil }

// peerSources lists the peers that have (or are downloading) c, best first,
// within a bounded lookup time; nil when none answers.
func (n *Node) peerSources(ctx context.Context, c cid.Cid) []source { return nil }

// banPeer bans p at once (persisted, with reason and evidence) and closes its
// connections.
func (n *Node) banPeer(p peer.ID, reason string, ev Evidence) {}

// announce tells peers that c is available (complete or in flight).
func (n *Node) announce(c cid.Cid) {}

// Evidence is why a peer was banned.
type Evidence struct {
	CID        string `json:"cid"`
	WantSHA256 string `json:"wantSha256,omitempty"`
	GotSHA256  string `json:"gotSha256,omitempty"`
	Detail     string `json:"detail,omitempty"`
}
