package node

import (
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

func newPeerKey(t *testing.T) (crypto.PrivKey, peer.ID) {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return k, id
}

// TestBansWithoutP2P: with p2p off, bans are still read, added and lifted
// on disk (the gate enforces them once p2p runs), the node cannot ban
// itself, and the first ban of a peer is kept.
func TestBansWithoutP2P(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	selfKey, self := newPeerKey(t)
	b, err := crypto.MarshalPrivateKey(selfKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dataDir, "identity.key"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	n, st := newTestNode(t, nil, func(c *Config) { c.DataDir = dataDir })
	_, otherID := newPeerKey(t)
	other := otherID.String()
	if err := n.Ban(other, "by hand"); err != nil {
		t.Fatalf("Ban without p2p: %v", err)
	}
	if err := n.Ban(other, "again"); !errors.Is(err, ErrAlreadyBanned) || !strings.Contains(err.Error(), "by hand") {
		t.Fatalf("second Ban = %v, want ErrAlreadyBanned naming the first reason", err)
	}
	if err := n.Ban(self.String(), "x"); !errors.Is(err, ErrSelfBan) {
		t.Fatalf("self Ban = %v, want ErrSelfBan", err)
	}
	if _, err := st.Meta("ban", other); err != nil {
		t.Fatalf("ban not persisted: %v", err)
	}
	bans, err := n.Bans()
	if err != nil || len(bans) != 1 || bans[0].Peer != other || bans[0].Reason != "by hand" {
		t.Fatalf("Bans() = %+v, %v", bans, err)
	}
	if err := n.Unban(other); err != nil {
		t.Fatalf("Unban without p2p: %v", err)
	}
	if err := n.Unban(other); !errors.Is(err, ErrNotBanned) {
		t.Fatalf("second Unban = %v, want ErrNotBanned", err)
	}
	if bans, err := n.Bans(); err != nil || len(bans) != 0 {
		t.Fatalf("Bans() after unban = %+v, %v", bans, err)
	}
}
