package node

import (
	"fmt"
	"sort"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/flocon/flocon/store"
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
	s := n.state()
	if s == nil {
		return Identity{}, ErrP2PDisabled
	}
	id := Identity{PeerID: s.h.ID().String(), Announced: s.announced.len(), Shared: s.shared.len()}
	for _, a := range s.h.Addrs() {
		id.Addrs = append(id.Addrs, fmt.Sprintf("%s/p2p/%s", a, s.h.ID()))
	}
	return id, nil
}

// Peers lists the connected peers, lowest latency first.
func (n *Node) Peers() ([]PeerInfo, error) {
	s := n.state()
	if s == nil {
		return nil, ErrP2PDisabled
	}
	out := make([]PeerInfo, 0)
	for _, p := range s.h.Network().Peers() {
		st := s.peers.get(p)
		pi := PeerInfo{
			PeerID: p.String(), Latency: s.h.Peerstore().LatencyEWMA(p),
			BytesSent: st.BytesSent, BytesRecv: st.BytesRecv, BlobsServed: st.BlobsServed,
			Successes: st.Successes, Failures: st.Failures,
		}
		for _, c := range s.h.Network().ConnsToPeer(p) {
			pi.Addrs = append(pi.Addrs, c.RemoteMultiaddr().String())
		}
		out = append(out, pi)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Latency < out[j].Latency })
	return out, nil
}

// Ban bans a peer by hand (reason from the operator), persisted and enforced
// at once.
func (n *Node) Ban(peerID, reason string) error {
	s := n.state()
	if s == nil {
		return ErrP2PDisabled
	}
	p, err := peer.Decode(peerID)
	if err != nil {
		return fmt.Errorf("ban %q: %w", peerID, ErrBadPeerID)
	}
	if reason == "" {
		reason = "banned by operator"
	}
	return s.ban(p, reason, Evidence{Detail: "manual"})
}

// Unban lifts a ban; the peer may connect again (discovery or bootstrap).
func (n *Node) Unban(peerID string) error {
	s := n.state()
	if s == nil {
		return ErrP2PDisabled
	}
	p, err := peer.Decode(peerID)
	if err != nil {
		return fmt.Errorf("unban %q: %w", peerID, ErrBadPeerID)
	}
	if err := s.bans.remove(p); err != nil {
		return err
	}
	n.log.Info("peer unbanned", "peer", p.String())
	return nil
}

// Bans lists the banned peers with reason and evidence, oldest first.
func (n *Node) Bans() ([]Ban, error) {
	s := n.state()
	if s == nil {
		return nil, ErrP2PDisabled
	}
	return s.bans.list(), nil
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

// ban persists and enforces a ban, then cuts the peer's connections.
func (s *p2pState) ban(p peer.ID, reason string, ev Evidence) error {
	if p == s.h.ID() {
		return ErrSelfBan
	}
	err := s.bans.add(p, Ban{Peer: p.String(), Reason: reason, Evidence: ev, Time: time.Now().UTC()})
	// Enforced even if persisting failed: the gate reads memory first.
	_ = s.h.Network().ClosePeer(p)
	s.n.log.Warn("peer banned", "peer", p.String(), "reason", reason, "cid", ev.CID,
		"wantSha256", ev.WantSHA256, "gotSha256", ev.GotSHA256, "detail", ev.Detail)
	return err
}

// announceStored offers every blob already in the store at start.
func (s *p2pState) announceStored() {
	err := s.st.Blobs(func(b store.BlobInfo) error {
		s.announced.add(b.CID)
		return nil
	})
	if err != nil {
		s.n.log.Warn("announce stored blobs", "err", err)
	}
}
