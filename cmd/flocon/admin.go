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
)

var errDaemonRunning = errors.New("another flocon daemon is listening")

// statusReport is GET /v1/status, printed by `flocon status`.
type statusReport struct {
	Version     string          `json:"version"`
	Listen      string          `json:"listen"`
	DataDir     string          `json:"dataDir"`
	AdminSocket string          `json:"adminSocket"`
	P2P         bool            `json:"p2p"`
	PeerID      string          `json:"peerId,omitempty"`
	P2PAddrs    []string        `json:"p2pAddrs,omitempty"`
	Store       json.RawMessage `json:"store,omitempty"`
	Repos       []repoStatus    `json:"repos"`
	Mirrors     []string        `json:"mirrors"`
	StartedAt   time.Time       `json:"startedAt"`
	Uptime      float64         `json:"uptimeSeconds"`
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
	started                 time.Time
	// storeStats and identity read live state; nil when unavailable.
	storeStats func() (any, error)
	identity   func() (node.Identity, error)
	metrics    http.Handler // the daemon's Prometheus registry, also on the gateway
}

// newAdminMux serves the admin API: /v1/status and /metrics here, the peer
// routes from registerP2PAdmin (peers.go).
func newAdminMux(info adminInfo, n *node.Node) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		rep, err := info.status()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(rep)
	})
	if info.metrics != nil {
		mux.Handle("GET /metrics", info.metrics)
	}
	if n != nil {
		registerP2PAdmin(mux, n)
	}
	return mux
}

func (info adminInfo) status() (statusReport, error) {
	rep := statusReport{
		Version: node.Version, Listen: info.listen, DataDir: info.dataDir, AdminSocket: info.socket,
		P2P: info.p2p, Mirrors: info.mirrors.Default, StartedAt: info.started,
		Uptime: time.Since(info.started).Round(time.Second).Seconds(),
	}
	for _, r := range info.repos {
		rep.Repos = append(rep.Repos, repoStatus{
			Name: r.Name, Arches: r.Arches, SigLevel: sigLevelName(r.SigPolicy), Mirrors: info.mirrors.PerRepo[r.Name],
		})
	}
	if info.storeStats != nil {
		st, err := info.storeStats()
		if err != nil {
			return rep, fmt.Errorf("store stats: %w", err)
		}
		b, err := json.Marshal(st)
		if err != nil {
			return rep, fmt.Errorf("store stats: %w", err)
		}
		rep.Store = b
	}
	if info.identity != nil && info.p2p {
		if id, err := info.identity(); err == nil {
			rep.PeerID, rep.P2PAddrs = id.PeerID, id.Addrs
		}
	}
	return rep, nil
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
