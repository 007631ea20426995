package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/flocon/flocon/node"
	"github.com/flocon/flocon/store"
	"github.com/flocon/flocon/verify"
)

func TestNewestKeyringFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for name, age := range map[string]time.Duration{
		"archlinux.gpg":     3 * time.Hour,
		"archlinux-trusted": 2 * time.Hour,
		"archlinux-revoked": time.Hour, // the newest file of the set
		"debian-other.gpg":  0,         // newer, but no -trusted: not a keyring
	} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		at := base.Add(-age)
		if err := os.Chtimes(path, at, at); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := newestModTime(dir), base.Add(-time.Hour); !got.Equal(want) {
		t.Errorf("newest keyring file = %v, want %v", got, want)
	}
	if got := newestModTime(t.TempDir()); !got.IsZero() {
		t.Errorf("empty dir: %v, want zero", got)
	}
}

func TestStatusSourceSnapshot(t *testing.T) {
	t.Parallel()
	st, err := store.Open(store.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	kr := verify.EmptyKeyring()
	n, err := node.New(node.Config{Store: st, Keyring: kr,
		Mirrors: node.Mirrors{Default: []string{"https://user:secret@mirror.example/archlinux/$repo/os/$arch"}}})
	if err != nil {
		t.Fatal(err)
	}
	started := time.Now().Add(-time.Minute)
	src := &statusSource{n: n, st: st, keyring: func() *verify.Keyring { return kr },
		loadedAt: func() time.Time { return started }, quota: 1 << 30, started: started}
	s, err := src.Snapshot(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if s.P2P || s.PeerID != "" || len(s.Peers) != 0 || len(s.Bans) != 0 {
		t.Errorf("mirror-only daemon: p2p %v, id %q, %d peers, %d bans", s.P2P, s.PeerID, len(s.Peers), len(s.Bans))
	}
	if len(s.Mirrors) != 1 || s.Mirrors[0].URL != "https://mirror.example" || s.Mirrors[0].Requests != 0 {
		t.Errorf("mirrors = %+v, want the host only, not tried yet", s.Mirrors)
	}
	if s.Store.QuotaBytes != 1<<30 || s.Keyring.Valid != 0 || !s.Keyring.LoadedAt.Equal(started) || !s.Started.Equal(started) {
		t.Errorf("store %+v, keyring %+v, started %v", s.Store, s.Keyring, s.Started)
	}
}

func TestStatusSourceRecountsAReloadedKeyring(t *testing.T) {
	t.Parallel()
	st, err := store.Open(store.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	kr := verify.EmptyKeyring()
	n, err := node.New(node.Config{Store: st, Keyring: kr})
	if err != nil {
		t.Fatal(err)
	}
	first, loads := time.Now().Add(-time.Hour), 0
	loadedAt := first
	src := &statusSource{n: n, st: st, keyring: func() *verify.Keyring { return kr },
		loadedAt: func() time.Time { loads++; return loadedAt }}
	for range 3 {
		if s, _ := src.Snapshot(t.Context()); !s.Keyring.LoadedAt.Equal(first) {
			t.Fatalf("loaded at %v, want %v", s.Keyring.LoadedAt, first)
		}
	}
	kr, loadedAt = verify.EmptyKeyring(), time.Now() // a reload
	if s, _ := src.Snapshot(t.Context()); !s.Keyring.LoadedAt.Equal(loadedAt) {
		t.Errorf("after a reload: loaded at %v, want %v", s.Keyring.LoadedAt, loadedAt)
	}
	if loads != 2 {
		t.Errorf("loadedAt asked %d times for 4 snapshots and one reload, want 2", loads)
	}
}
