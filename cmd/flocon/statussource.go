package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/flocon/flocon/gateway/status"
	"github.com/flocon/flocon/node"
	"github.com/flocon/flocon/store"
	"github.com/flocon/flocon/verify"
)

// Refresh intervals of the parts of the status snapshot that cost a scan.
const (
	storeStatsTTL = 5 * time.Second
	keyringTTL    = time.Minute
)

// statusSource is the status page's view of the daemon: the node's
// counters, peers and bans, the store's size and the keyring's state.
type statusSource struct {
	n          *node.Node
	st         *store.Store
	keyring    func() *verify.Keyring
	keyringDir string
	loadedAt   func() time.Time // when the keyring in use was read (it reloads)
	quota      int64
	p2p        bool
	started    time.Time

	mu         sync.Mutex
	storeAt    time.Time
	storeStats store.Stats
	keysAt     time.Time
	keysOf     *verify.Keyring // the keyring s.keys counted
	keys       status.Keyring
}

var _ status.Source = (*statusSource)(nil)

// Snapshot implements status.Source.
func (s *statusSource) Snapshot(context.Context) (status.Snapshot, error) {
	now := time.Now()
	ns := s.n.Stats()
	snap := status.Snapshot{
		Version: node.Version, Started: s.started, Now: now, P2P: s.p2p,
		Downloaded: status.Downloaded{PeerBytes: ns.BytesFrom[node.SourcePeer], MirrorBytes: ns.BytesFrom[node.SourceMirror]},
		Downloads:  ns.Downloads,
		Store:      s.storeSection(now),
		Keyring:    s.keyringSection(now),
		Verify:     status.Histogram(ns.Verify), MirrorLatency: status.Histogram(ns.MirrorRTT),
		Inflight: make([]status.Inflight, 0, len(ns.Inflight)),
		Peers:    []status.Peer{}, Bans: []status.Ban{}, Mirrors: make([]status.Mirror, 0, len(ns.Mirrors)),
	}
	for _, in := range ns.Inflight {
		snap.Inflight = append(snap.Inflight, status.Inflight{Repo: in.Repo, Arch: in.Arch, File: in.Filename,
			Size: in.Size, Have: in.Have, Source: in.Source, SourceKind: in.SourceKind, Started: in.Started})
	}
	for _, m := range ns.Mirrors {
		snap.Mirrors = append(snap.Mirrors, status.Mirror{URL: m.URL, Reachable: m.Reachable(), Requests: m.Requests,
			Errors: m.Errors, LastOK: m.LastOK, LastError: m.LastError, LastErr: m.LastErr, Latency: m.Latency})
	}
	if err := s.p2pSections(&snap); err != nil {
		return status.Snapshot{}, err
	}
	return snap, nil
}

// p2pSections fills identity, peers and bans (empty without p2p).
func (s *statusSource) p2pSections(snap *status.Snapshot) error {
	id, err := s.n.ID()
	if errors.Is(err, node.ErrP2PDisabled) {
		return nil
	}
	if err != nil {
		return err
	}
	snap.PeerID = id.PeerID
	peers, err := s.n.Peers()
	if err != nil && !errors.Is(err, node.ErrP2PDisabled) {
		return err
	}
	for _, p := range peers {
		snap.Peers = append(snap.Peers, status.Peer{ID: p.PeerID, Addrs: p.Addrs, Latency: p.Latency,
			SentBytes: p.BytesSent, RecvBytes: p.BytesRecv, Successes: p.Successes, Failures: p.Failures,
			Site: p.Site, Score: time.Duration(p.Score), Bandwidth: p.Bandwidth, DemotedUntil: p.DemotedUntil})
	}
	if r, err := s.n.Refused(); err == nil {
		snap.RefusedConnections = map[string]int64{"handshake": r.Handshake, "not-allowed": r.NotAllowed, "banned": r.Banned}
	}
	bans, err := s.n.Bans()
	if err != nil && !errors.Is(err, node.ErrP2PDisabled) {
		return err
	}
	for _, b := range bans {
		snap.Bans = append(snap.Bans, status.Ban{Peer: b.Peer, Reason: b.Reason, Time: b.Time, CID: b.Evidence.CID,
			WantSHA256: b.Evidence.WantSHA256, GotSHA256: b.Evidence.GotSHA256, Detail: b.Evidence.Detail})
	}
	return nil
}

func (s *statusSource) storeSection(now time.Time) status.Store {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Sub(s.storeAt) >= storeStatsTTL {
		s.storeStats, s.storeAt = s.st.Stats(), now
	}
	return status.Store{Blobs: s.storeStats.Blobs, Bytes: s.storeStats.Bytes, DBBytes: s.storeStats.DBBytes, QuotaBytes: s.quota}
}

func (s *statusSource) keyringSection(now time.Time) status.Keyring {
	s.mu.Lock()
	defer s.mu.Unlock()
	// A reload swaps the keyring: a new one is counted at once, and
	// loadedAt (which counts every key) is only asked then.
	kr := s.keyring()
	if kr != s.keysOf || now.Sub(s.keysAt) >= keyringTTL {
		s.keys, s.keysAt, s.keysOf = keyringState(kr, s.keyringDir, now), now, kr
		s.keys.LoadedAt = s.loadedAt()
	}
	return s.keys
}

// keyringState counts the keys by validity now and ExpiringWithin from now.
func keyringState(kr *verify.Keyring, dir string, now time.Time) status.Keyring {
	var out status.Keyring
	later := kr.Keys(now.Add(status.ExpiringWithin))
	for i, k := range kr.Keys(now) {
		switch {
		case k.Verdict == verify.KeyValid && i < len(later) && later[i].Verdict == verify.KeyExpired:
			out.Valid++
			out.ExpiringSoon++
		case k.Verdict == verify.KeyValid:
			out.Valid++
		case k.Verdict == verify.KeyExpired:
			out.Expired++
		default:
			out.Other++
		}
	}
	out.Updated = newestModTime(dir)
	return out
}

// newestModTime is the latest modification time of the keyring sets in
// dir (NAME.gpg with a NAME-trusted beside it, and NAME-revoked), as
// LoadKeyring reads them; zero when there is none.
func newestModTime(dir string) time.Time {
	var newest time.Time
	gpgs, _ := filepath.Glob(filepath.Join(dir, "*.gpg"))
	for _, gpg := range gpgs {
		base := strings.TrimSuffix(gpg, ".gpg")
		if _, err := os.Stat(base + "-trusted"); err != nil {
			continue
		}
		for _, f := range []string{gpg, base + "-trusted", base + "-revoked"} {
			if info, err := os.Stat(f); err == nil && info.ModTime().After(newest) {
				newest = info.ModTime()
			}
		}
	}
	return newest
}
