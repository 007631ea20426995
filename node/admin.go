package node

import (
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/flocon/flocon/node/p2p"
	"github.com/flocon/flocon/node/routing"
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
	// Site is "lan" (found by mDNS, or --single-site) or "remote".
	Site string `json:"site"`
	// Relayed: the only connections go through a relay (limited: no
	// lookups or blobs over them, only hole-punch coordination).
	Relayed bool `json:"relayed,omitempty"`
	// Bandwidth is what downloads from the peer measured (bytes/s,
	// moving average; 0: not measured yet).
	Bandwidth float64 `json:"bandwidth"`
	// Score ranks the peer among the others of its kind: lower goes first
	// (latency inflated by failures; see node/sourcechoice.go).
	Score float64 `json:"score"`
	// DemotedUntil: the peer was slow, stalled or failed and is tried
	// after the other sources until then (zero: not demoted).
	DemotedUntil time.Time `json:"demotedUntil,omitzero"`
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
	sites := make(map[peer.ID]routing.Locality)
	for _, pi := range pn.router.Peers() {
		sites[pi.ID] = pi.Site
	}
	now := time.Now()
	out := make([]PeerInfo, 0)
	for _, ps := range pn.host.Connected() {
		h := n.ranks.get(ps.ID)
		health := n.health.get(peerKey(ps.ID))
		pi := PeerInfo{
			PeerID: ps.ID.String(), Addrs: ps.Addrs, Latency: ps.Latency,
			BytesSent: ps.BytesSent, BytesRecv: ps.BytesRecv, BlobsServed: ps.BlobsServed,
			Successes: h.Successes, Failures: h.Failures,
			Site: sites[ps.ID].String(), Relayed: ps.Relayed, Bandwidth: health.Bandwidth, Score: n.ranks.score(ps.ID, ps.Latency, now),
		}
		if health.demoted(now) {
			pi.DemotedUntil = health.DemotedUntil
		}
		out = append(out, pi)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Latency < out[j].Latency })
	return out, nil
}

// Ban bans a peer by hand (reason from the operator), persisted and enforced
// at once. A peer already banned keeps its first ban (ErrAlreadyBanned): the
// evidence of an automatic ban must not be overwritten by accident. Without
// p2p the ban is only persisted; the gate enforces it when p2p starts.
func (n *Node) Ban(peerID, reason string) error {
	p, err := peer.Decode(peerID)
	if err != nil {
		return fmt.Errorf("ban %q: %w", peerID, ErrBadPeerID)
	}
	if reason == "" {
		reason = "banned by operator"
	}
	b, err := n.banEditor()
	if err != nil {
		return err
	}
	if err := b.Ban(p, reason, Evidence{Detail: "manual"}); err != nil {
		if errors.Is(err, ErrAlreadyBanned) {
			return fmt.Errorf("ban %s: %w", p, err)
		}
		return err
	}
	return nil
}

// Unban lifts a ban; the peer may connect again (discovery or bootstrap).
func (n *Node) Unban(peerID string) error {
	p, err := peer.Decode(peerID)
	if err != nil {
		return fmt.Errorf("unban %q: %w", peerID, ErrBadPeerID)
	}
	b, err := n.banEditor()
	if err != nil {
		return err
	}
	return b.Unban(p)
}

// Bans lists the banned peers with reason and evidence, oldest first. They
// are read from the store when p2p is off (bans are kept on disk).
func (n *Node) Bans() ([]Ban, error) {
	b, err := n.banEditor()
	if err != nil {
		return nil, err
	}
	return b.Bans(), nil
}

// ErrAlreadyBanned: the peer has a ban already; the first one is kept.
var ErrAlreadyBanned = p2p.ErrAlreadyBanned

// banEditor is what the admin calls need of a ban list.
type banEditor interface {
	Ban(p peer.ID, reason string, ev Evidence) error
	Unban(p peer.ID) error
	Bans() []Ban
}

// banEditor is the running host's gate, or, with p2p off by configuration,
// the bans persisted in the store. While p2p is starting, the gate is about
// to load them: ErrP2PDisabled rather than race it.
func (n *Node) banEditor() (banEditor, error) {
	if pn := n.side(); pn != nil {
		return pn.host, nil
	}
	if n.cfg.P2P {
		return nil, ErrP2PDisabled
	}
	return p2p.LoadOfflineBans(n.cfg.Store, n.cfg.DataDir)
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
			"successes", p.Successes, "failures", p.Failures,
			"site", p.Site, "bandwidth", int64(p.Bandwidth), "score", p.Score, "demotedUntil", p.DemotedUntil)
	}
}
