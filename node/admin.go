package node

import (
	"fmt"
	"sort"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Identity is this node's peer ID and the addresses peers reach it on.
type Identity struct {
	PeerID    string   `json:"peerId"`
	Addrs     []string `json:"addrs"` // full multiaddrs with /p2p/ID
	Announced int      `json:"announced"`
	Shared    int      `json:"shared"` // files of the shared directories
}

// PeerInfo is one connected peer as `flocon peers` shows it.
type PeerInfo struct {
	PeerID      string        `json:"peerId"`
	Addrs       []string      `json:"addrs"`
	Latency     time.Duration `json:"latencyNs"`
	BytesSent   int64         `json:"bytesSent"`
	BytesRecv   int64         `json:"bytesRecv"`
	BlobsServed int64         `json:"blobsServed"`
	Successes   int64         `json:"successes"`
	Failures    int64         `json:"failures"`
}

// ID returns this node's identity (ErrP2PDisabled when p2p is not running).
func (n *Node) ID() (Identity, error) {
	pn := n.side()
	if pn == nil {
		return Identity{}, ErrP2PDisabled
	}
	h := pn.host
	id := Identity{PeerID: h.ID().String(), Announced: h.Announced(), Shared: h.Shared()}
	for _, a := range h.Addrs() {
		id.Addrs = append(id.Addrs, fmt.Sprintf("%s/p2p/%s", a, h.ID()))
	}
	return id, nil
}

// Peers lists the connected peers, lowest latency first.
func (n *Node) Peers() ([]PeerInfo, error) {
	pn := n.side()
	if pn == nil {
		return nil, ErrP2PDisabled
	}
	out := make([]PeerInfo, 0)
	for _, ps := range pn.host.Connected() {
		h := n.ranks.get(ps.ID)
		out = append(out, PeerInfo{
			PeerID: ps.ID.String(), Addrs: ps.Addrs, Latency: ps.Latency,
			BytesSent: ps.BytesSent, BytesRecv: ps.BytesRecv, BlobsServed: ps.BlobsServed,
			Successes: h.Successes, Failures: h.Failures,
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Latency < out[j].Latency })
	return out, nil
}

// Ban bans a peer by hand (reason from the operator), persisted and enforced
// at once.
func (n *Node) Ban(peerID, reason string) error {
	pn := n.side()
	if pn == nil {
		return ErrP2PDisabled
	}
	p, err := peer.Decode(peerID)
	if err != nil {
		return fmt.Errorf("ban %q: %w", peerID, ErrBadPeerID)
	}
	if reason == "" {
		reason = "banned by operator"
	}
	return pn.host.Ban(p, reason, Evidence{Detail: "manual"})
}

// Unban lifts a ban; the peer may connect again (discovery or bootstrap).
func (n *Node) Unban(peerID string) error {
	pn := n.side()
	if pn == nil {
		return ErrP2PDisabled
	}
	p, err := peer.Decode(peerID)
	if err != nil {
		return fmt.Errorf("unban %q: %w", peerID, ErrBadPeerID)
	}
	return pn.host.Unban(p)
}

// Bans lists the banned peers with reason and evidence, oldest first.
func (n *Node) Bans() ([]Ban, error) {
	pn := n.side()
	if pn == nil {
		return nil, ErrP2PDisabled
	}
	return pn.host.Bans(), nil
}

// LogPeers writes the peer table to the log (cmd/flocon calls it on SIGUSR1).
func (n *Node) LogPeers() {
	peers, err := n.Peers()
	if err != nil {
		n.log.Info("peer table unavailable", "err", err)
		return
	}
	n.log.Info("peer table", "peers", len(peers))
	for _, p := range peers {
		n.log.Info("peer", "peer", p.PeerID, "addrs", p.Addrs, "latency", p.Latency,
			"bytesSent", p.BytesSent, "bytesRecv", p.BytesRecv, "blobsServed", p.BlobsServed,
			"successes", p.Successes, "failures", p.Failures)
	}
}
