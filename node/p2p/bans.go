package p2p

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/flocon/flocon/store"
)

// Ban is one banned peer, as persisted in the store (namespace "ban", key the
// peer ID) and shown by `flocon bans`.
type Ban struct {
	Peer     string    `json:"peer"`
	Reason   string    `json:"reason"`
	Evidence Evidence  `json:"evidence"`
	Time     time.Time `json:"time"`
}

// banList is the set of banned peers plus the optional allow-list; it is the
// host's ConnectionGater, so a banned peer can neither be dialed nor connect.
type banList struct {
	mu    sync.RWMutex
	st    localStore
	m     map[peer.ID]Ban
	allow map[peer.ID]bool // nil: every peer not banned is allowed
	// outsiders counts refused inbound connections (nil: not counted).
	outsiders *outsiders
}

// loadBans reads the persisted bans; a row that does not parse is reported,
// not dropped, so a damaged row never silently lifts a ban.
func loadBans(st localStore, allow []peer.ID) (*banList, error) {
	b := &banList{st: st, m: make(map[peer.ID]Ban)}
	if len(allow) > 0 {
		b.allow = make(map[peer.ID]bool, len(allow))
		for _, p := range allow {
			b.allow[p] = true
		}
	}
	err := st.MetaList(banNamespace, func(key string, value []byte) error {
		p, err := peer.Decode(key)
		if err != nil {
			return fmt.Errorf("ban row %q: %w", key, ErrBadPeerID)
		}
		var ban Ban
		if err := json.Unmarshal(value, &ban); err != nil {
			return fmt.Errorf("ban row %s: %w", key, err)
		}
		b.m[p] = ban
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load bans: %w", err)
	}
	return b, nil
}

// ErrAlreadyBanned: the peer has a ban already. The first ban is kept, with
// its reason and evidence; lift it (unban) to ban again with another reason.
var ErrAlreadyBanned = errors.New("peer is already banned")

// add enforces a ban at once and persists it (an error means it holds only
// until restart). A peer already banned keeps its first ban: the evidence of
// an automatic ban is never replaced by a later one.
func (b *banList) add(p peer.ID, ban Ban) error {
	b.mu.Lock()
	if old, ok := b.m[p]; ok {
		b.mu.Unlock()
		return fmt.Errorf("%w since %s: %s", ErrAlreadyBanned, old.Time.Format(time.RFC3339), old.Reason)
	}
	b.m[p] = ban
	b.mu.Unlock()
	v, err := json.Marshal(ban)
	if err != nil {
		return fmt.Errorf("ban %s: %w", p, err)
	}
	if err := b.st.PutMeta(banNamespace, p.String(), v); err != nil {
		return fmt.Errorf("ban %s: %w", p, err)
	}
	return nil
}

// remove lifts a ban (ErrNotBanned when there is none).
func (b *banList) remove(p peer.ID) error {
	b.mu.RLock()
	_, ok := b.m[p]
	b.mu.RUnlock()
	if !ok {
		if _, err := b.st.Meta(banNamespace, p.String()); errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("unban %s: %w", p, ErrNotBanned)
		}
	}
	if err := b.st.PutMeta(banNamespace, p.String(), nil); err != nil {
		return fmt.Errorf("unban %s: %w", p, err)
	}
	b.mu.Lock()
	delete(b.m, p)
	b.mu.Unlock()
	return nil
}

func (b *banList) banned(p peer.ID) bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if _, ok := b.m[p]; ok {
		return true
	}
	return b.allow != nil && !b.allow[p]
}

// list returns every ban, oldest first.
func (b *banList) list() []Ban {
	b.mu.RLock()
	out := make([]Ban, 0, len(b.m))
	for _, ban := range b.m {
		out = append(out, ban)
	}
	b.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out
}

// InterceptPeerDial refuses to dial a banned peer.
func (b *banList) InterceptPeerDial(p peer.ID) bool { return !b.banned(p) }

// InterceptAddrDial refuses every address of a banned peer.
func (b *banList) InterceptAddrDial(p peer.ID, _ ma.Multiaddr) bool { return !b.banned(p) }

// InterceptAccept lets every connection start: bans are by peer ID, known
// only once the handshake is done (InterceptSecured). It notes the
// connection so that one whose handshake fails counts as an outsider.
func (b *banList) InterceptAccept(addrs network.ConnMultiaddrs) bool {
	if b.outsiders != nil {
		b.outsiders.accepted(addrs, time.Now())
	}
	return true
}

// InterceptSecured drops a banned peer once its identity is proven.
func (b *banList) InterceptSecured(dir network.Direction, p peer.ID, addrs network.ConnMultiaddrs) bool {
	if dir == network.DirInbound && b.outsiders != nil {
		b.mu.RLock()
		_, banned := b.m[p]
		notAllowed := b.allow != nil && !b.allow[p]
		b.mu.RUnlock()
		b.outsiders.secured(p, addrs, banned, notAllowed, time.Now())
	}
	return !b.banned(p)
}

// InterceptUpgraded re-checks, for a ban that landed during the upgrade.
func (b *banList) InterceptUpgraded(c network.Conn) (bool, control.DisconnectReason) {
	return !b.banned(c.RemotePeer()), 0
}

// Ban bans p at once (persisted, with reason and evidence) and closes its
// connections; ErrSelfBan for this node itself, ErrAlreadyBanned for a peer
// banned already (its first ban is kept). Another error means the ban holds
// only until restart.
func (s *Host) Ban(p peer.ID, reason string, ev Evidence) error {
	if p == s.h.ID() {
		return ErrSelfBan
	}
	err := s.bans.add(p, Ban{Peer: p.String(), Reason: reason, Evidence: ev, Time: time.Now().UTC()})
	// Enforced even if persisting failed: the gate reads memory first.
	_ = s.h.Network().ClosePeer(p)
	if errors.Is(err, ErrAlreadyBanned) {
		return err
	}
	s.log.Warn("peer banned", "peer", p.String(), "reason", reason, "cid", ev.CID,
		"wantSha256", ev.WantSHA256, "gotSha256", ev.GotSHA256, "detail", ev.Detail)
	return err
}

// Unban lifts a ban (ErrNotBanned when there is none); the peer may connect
// again (discovery or bootstrap).
func (s *Host) Unban(p peer.ID) error {
	if err := s.bans.remove(p); err != nil {
		return err
	}
	s.log.Info("peer unbanned", "peer", p.String())
	return nil
}

// Bans lists the banned peers with reason and evidence, oldest first.
func (s *Host) Bans() []Ban { return s.bans.list() }

// Banned reports whether p is banned (or not on the allow-list).
func (s *Host) Banned(p peer.ID) bool { return s.bans.banned(p) }

// OfflineBans edits the persisted bans of a node whose host does not run
// (p2p off): `flocon bans` still reads them, and a ban added here is
// enforced by the gate when the host starts.
type OfflineBans struct {
	b       *banList
	dataDir string
}

// LoadOfflineBans reads the bans persisted in st; dataDir holds the
// identity (a node cannot ban itself).
func LoadOfflineBans(st *store.Store, dataDir string) (*OfflineBans, error) {
	b, err := loadBans(newStoreAdapter(st), nil)
	if err != nil {
		return nil, err
	}
	return &OfflineBans{b: b, dataDir: dataDir}, nil
}

// Ban persists a ban; ErrSelfBan, ErrAlreadyBanned as for Host.Ban.
func (o *OfflineBans) Ban(p peer.ID, reason string, ev Evidence) error {
	if self, ok := identityID(o.dataDir); ok && p == self {
		return ErrSelfBan
	}
	return o.b.add(p, Ban{Peer: p.String(), Reason: reason, Evidence: ev, Time: time.Now().UTC()})
}

// Unban lifts a persisted ban (ErrNotBanned when there is none).
func (o *OfflineBans) Unban(p peer.ID) error { return o.b.remove(p) }

// Bans lists the persisted bans, oldest first.
func (o *OfflineBans) Bans() []Ban { return o.b.list() }

// identityID is the peer ID of the identity key in dataDir, if there is one.
func identityID(dataDir string) (peer.ID, bool) {
	if dataDir == "" {
		return "", false
	}
	b, err := os.ReadFile(filepath.Join(dataDir, identityFile))
	if err != nil {
		return "", false
	}
	k, err := crypto.UnmarshalPrivateKey(b)
	if err != nil {
		return "", false
	}
	id, err := peer.IDFromPrivateKey(k)
	return id, err == nil
}
