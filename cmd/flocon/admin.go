package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/flocon/flocon/gateway"
	"github.com/flocon/flocon/node"
	"github.com/flocon/flocon/store"
)

var errDaemonRunning = errors.New("another flocon daemon is listening")

// statusReport is GET /v1/status, printed by `flocon status` and, with
// --json, as is. Its field names are stable (README "flocon status --json"):
// fields may be added, never renamed or removed.
type statusReport struct {
	Version      string         `json:"version"`
	Listen       string         `json:"listen"`
	DataDir      string         `json:"dataDir"`
	AdminSocket  string         `json:"adminSocket"`
	P2P          bool           `json:"p2p"`
	PeerID       string         `json:"peerId,omitempty"`
	P2PAddrs     []string       `json:"p2pAddrs,omitempty"`
	Store        *storeStatus   `json:"store,omitempty"`
	Keyring      *keyringStatus `json:"keyring,omitempty"`
	Peers        peersStatus    `json:"peers"`
	Repos        []repoStatus   `json:"repos"`
	Mirrors      []string       `json:"mirrors"`
	MirrorSource string         `json:"mirrorSource,omitempty"` // mirrorlist, setting or built-in list
	StartedAt    time.Time      `json:"startedAt"`
	Uptime       float64        `json:"uptimeSeconds"`
}

// storeStatus is the store's counts and its retention settings.
type storeStatus struct {
	store.Stats
	MaxBytes     int64 `json:"maxBytes"`     // quota, 0: none
	KeepVersions int   `json:"keepVersions"` // per package name and arch, 0: all
}

type keyringStatus = node.KeyringStatus

// peersStatus counts the peers; the list is `flocon peers`.
type peersStatus struct {
	Connected int    `json:"connected"`
	Banned    int    `json:"banned"`
	Error     string `json:"error,omitempty"` // why they could not be read
}

type repoStatus struct {
	Name     string   `json:"name"`
	Arches   []string `json:"arches,omitempty"`
	SigLevel string   `json:"sigLevel"`
	Mirrors  []string `json:"mirrors,omitempty"` // own mirrors of a custom repo
}

// adminInfo is what the admin server reports besides live state.
type adminInfo struct {
	listen, dataDir, socket string
	p2p                     bool
	repos                   []gateway.Repo
	mirrors                 node.Mirrors
	mirrorSource            string
	maxBytes                int64
	keepVersions            int
	started                 time.Time
	now                     func() time.Time // the clock uptime is read from; nil is time.Now
	// The functions read live state; nil when unavailable.
	storeStats func() store.Stats
	keyring    func() node.KeyringStatus
	peers      p2pAdmin
	metrics    http.Handler // the daemon's Prometheus registry, also on the gateway
}

// newAdminMux serves the admin API: /v1/status and /metrics here, the peer
// routes from registerP2PRoutes (peers.go).
func newAdminMux(info adminInfo) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(info.status())
	})
	if info.metrics != nil {
		mux.Handle("GET /metrics", info.metrics)
	}
	if info.peers != nil {
		registerP2PRoutes(mux, info.peers)
	}
	return mux
}

func (info adminInfo) clock() time.Time {
	if info.now != nil {
		return info.now()
	}
	return time.Now()
}

func (info adminInfo) status() statusReport {
	rep := statusReport{
		Version: node.Version, Listen: info.listen, DataDir: info.dataDir, AdminSocket: info.socket,
		P2P: info.p2p, Mirrors: info.mirrors.Default, MirrorSource: info.mirrorSource, StartedAt: info.started,
		Uptime: info.clock().Sub(info.started).Round(time.Second).Seconds(),
	}
	for _, r := range info.repos {
		rep.Repos = append(rep.Repos, repoStatus{
			Name: r.Name, Arches: r.Arches, SigLevel: sigLevelName(r.SigPolicy), Mirrors: info.mirrors.PerRepo[r.Name],
		})
	}
	if info.storeStats != nil {
		rep.Store = &storeStatus{Stats: info.storeStats(), MaxBytes: info.maxBytes, KeepVersions: info.keepVersions}
	}
	if info.keyring != nil {
		k := info.keyring()
		rep.Keyring = &k
	}
	if info.peers != nil {
		rep.Peers = peerCounts(info.peers, info.p2p)
		if id, err := info.peers.ID(); err == nil && info.p2p {
			rep.PeerID, rep.P2PAddrs = id.PeerID, id.Addrs
		}
	}
	return rep
}

func peerCounts(p p2pAdmin, p2p bool) peersStatus {
	var ps peersStatus
	var errs []error
	if p2p {
		peers, err := p.Peers()
		ps.Connected = len(peers)
		errs = append(errs, err)
	}
	bans, err := p.Bans()
	ps.Banned = len(bans)
	if err := errors.Join(append(errs, err)...); err != nil {
		ps.Error = err.Error()
	}
	return ps
}

// listenAdmin creates the admin unix socket, owner-only (0600): created
// under a strict umask so it is never reachable by others, then chmod'ed in
// case the file system ignores the umask. A stale socket left by a crash is
// removed; a live one means another daemon runs on this data dir.
func listenAdmin(path string) (*net.UnixListener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	if err := removeStaleSocket(path); err != nil {
		return nil, err
	}
	old := syscall.Umask(0o177)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	return ln, nil
}

func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("admin socket %s: %w", path, err)
	}
	if fi.Mode()&fs.ModeSocket == 0 {
		return fmt.Errorf("admin socket %s: exists and is not a socket", path)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("admin socket %s: %w", path, errDaemonRunning)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("admin socket %s: remove stale: %w", path, err)
	}
	return nil
}
