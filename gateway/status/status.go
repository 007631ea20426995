package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Source gives the daemon's state; cmd/flocon implements it over the node,
// the store and the keyring.
type Source interface {
	// Snapshot returns the state now. It is called on every page view and
	// every metrics scrape, concurrently: it must be safe for that and
	// quick (no network). Served is left empty: the gateway fills it.
	Snapshot(ctx context.Context) (Snapshot, error)
}

// Snapshot is everything the page shows; /status.json is this value.
type Snapshot struct {
	Version string    `json:"version"`
	Started time.Time `json:"started"`
	Now     time.Time `json:"now"`
	PeerID  string    `json:"peerId,omitempty"` // empty without p2p
	P2P     bool      `json:"p2p"`

	Served     Served           `json:"served"`     // what the gateway answered
	Downloaded Downloaded       `json:"downloaded"` // where downloads took their bytes
	Downloads  map[string]int64 `json:"downloads"`  // verdict → finished downloads
	Inflight   []Inflight       `json:"inflight"`
	Peers      []Peer           `json:"peers"`
	Bans       []Ban            `json:"bans"`
	// RefusedConnections counts inbound peer connections refused since
	// start, by reason: handshake (no or wrong swarm key, not a flocon
	// peer), not-allowed (not on the allow-list), banned.
	RefusedConnections map[string]int64 `json:"refusedConnections"`
	Mirrors            []Mirror         `json:"mirrors"`
	Store              Store            `json:"store"`
	Keyring            Keyring          `json:"keyring"`

	Verify        Histogram `json:"verifySeconds"`        // final signature check per download
	MirrorLatency Histogram `json:"mirrorLatencySeconds"` // request → response headers

	// Derived by the page from the rest (set on every render).
	SavedBytes int64     `json:"savedBytes"` // served bytes that did not come from a mirror
	Warnings   []Warning `json:"warnings"`
}

// Served is what the gateway sent to clients.
type Served struct {
	CacheBytes    int64            `json:"cacheBytes"`    // package bytes served from the store (hits)
	DownloadBytes int64            `json:"downloadBytes"` // package bytes streamed from downloads (misses, joins)
	Requests      map[string]int64 `json:"requests"`      // outcome (hit, miss, join, notfound, refused, ...) → requests
	Refusals      map[string]int64 `json:"refusals"`      // reason → refused requests
	Recent        []Refusal        `json:"recentRefusals"`
}

// Refusal is one recent refused request.
type Refusal struct {
	Time   time.Time `json:"time"`
	Path   string    `json:"path"` // repo/os/arch/file, validated
	Status int       `json:"status"`
	Reason string    `json:"reason"`
}

// Downloaded is the bytes downloads received, by kind of source.
type Downloaded struct {
	PeerBytes   int64 `json:"peerBytes"`
	MirrorBytes int64 `json:"mirrorBytes"`
}

// Inflight is one download running now.
type Inflight struct {
	Repo       string    `json:"repo"`
	Arch       string    `json:"arch"`
	File       string    `json:"file"`
	Size       int64     `json:"size"` // -1: unknown
	Have       int64     `json:"have"`
	Source     string    `json:"source"`     // peer ID or mirror host
	SourceKind string    `json:"sourceKind"` // "peer", "mirror", "" before the first byte
	Started    time.Time `json:"started"`
}

// Peer is one connected peer.
type Peer struct {
	ID        string        `json:"id"`
	Addrs     []string      `json:"addrs"`
	Latency   time.Duration `json:"latencyNs"`
	SentBytes int64         `json:"sentBytes"` // to the peer
	RecvBytes int64         `json:"recvBytes"` // from the peer
	Successes int64         `json:"successes"` // transfers from it that completed
	Failures  int64         `json:"failures"`  // transfers from it that failed or stalled
	// Score ranks the peer as a source, lower first: its latency inflated
	// by failed transfers.
	Score     time.Duration `json:"scoreNs"`
	Bandwidth float64       `json:"bandwidthBytesPerSec"` // measured as a source; 0: not yet
	Site      string        `json:"site"`                 // "lan" or "remote"
	// DemotedUntil: slow, stalled or failed, the peer is tried after the
	// other sources until then (zero: not demoted).
	DemotedUntil time.Time `json:"demotedUntil,omitzero"`
}

// Ban is one banned peer.
type Ban struct {
	Peer       string    `json:"peer"`
	Reason     string    `json:"reason"`
	Time       time.Time `json:"time"`
	CID        string    `json:"cid,omitempty"`
	WantSHA256 string    `json:"wantSha256,omitempty"`
	GotSHA256  string    `json:"gotSha256,omitempty"`
	Detail     string    `json:"detail,omitempty"`
}

// Mirror is the health of one configured mirror host.
type Mirror struct {
	URL       string        `json:"url"` // scheme://host
	Reachable bool          `json:"reachable"`
	Requests  int64         `json:"requests"`
	Errors    int64         `json:"errors"`
	LastOK    time.Time     `json:"lastOk,omitzero"`
	LastError time.Time     `json:"lastError,omitzero"`
	LastErr   string        `json:"lastErr,omitempty"`
	Latency   time.Duration `json:"latencyNs"`
}

// Store is the local store.
type Store struct {
	Blobs      int   `json:"blobs"`
	Bytes      int64 `json:"bytes"`
	DBBytes    int64 `json:"dbBytes"`
	QuotaBytes int64 `json:"quotaBytes"` // 0: no quota
}

// Keyring is the state of the keyring packages are checked against.
type Keyring struct {
	Valid        int       `json:"valid"`        // packager and master keys valid now
	ExpiringSoon int       `json:"expiringSoon"` // valid now, expired within ExpiringWithin
	Expired      int       `json:"expired"`
	Other        int       `json:"other"`             // revoked, disabled, untrusted, marginal
	Updated      time.Time `json:"updated,omitzero"`  // newest keyring file's modification time
	LoadedAt     time.Time `json:"loadedAt,omitzero"` // when the daemon read it
}

// ExpiringWithin is the horizon of Keyring.ExpiringSoon.
const ExpiringWithin = 30 * 24 * time.Hour

// KeyringOldAfter: a keyring whose newest file is older than this gets a
// warning (archlinux-keyring is released every month or two).
const KeyringOldAfter = 180 * 24 * time.Hour

// Histogram is cumulative buckets as Prometheus has them: Counts[i]
// observations ≤ Bounds[i].
type Histogram struct {
	Bounds []float64 `json:"bounds"`
	Counts []uint64  `json:"counts"`
	Count  uint64    `json:"count"`
	Sum    float64   `json:"sum"`
}

// Warning is something the operator should act on.
type Warning struct {
	ID      string `json:"id"` // stable: no-mirror, keyring-old, unknown-key, keys-expired
	Message string `json:"message"`
}

// Config configures a Page.
type Config struct {
	Source Source
	// Served returns the gateway's counters (nil: none).
	Served func() Served
	// Registry gets the metrics derived from the snapshot (nil: none).
	Registry prometheus.Registerer
	Logger   *slog.Logger // default: discard
}

// Page serves GET / (HTML) and GET /status.json.
type Page struct {
	cfg Config
	log *slog.Logger
}

// New validates cfg and registers the metrics.
func New(cfg Config) (*Page, error) {
	if cfg.Source == nil {
		return nil, errors.New("status config: source is required")
	}
	if cfg.Served == nil {
		cfg.Served = func() Served { return Served{} }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Page{cfg: cfg, log: cfg.Logger}
	if cfg.Registry != nil {
		if err := cfg.Registry.Register(&collector{p: p}); err != nil {
			return nil, fmt.Errorf("status config: %w", err)
		}
	}
	return p, nil
}

// snapshot is the Source's snapshot with the gateway's counters and the
// derived fields.
func (p *Page) snapshot(ctx context.Context) (Snapshot, error) {
	s, err := p.cfg.Source.Snapshot(ctx)
	if err != nil {
		return Snapshot{}, err
	}
	s.Served = p.cfg.Served()
	if s.Now.IsZero() {
		s.Now = time.Now()
	}
	served := s.Served.CacheBytes + s.Served.DownloadBytes
	s.SavedBytes = max(0, served-s.Downloaded.MirrorBytes)
	s.Warnings = warnings(&s)
	return s, nil
}

// ServeHTTP answers /status.json with JSON and anything else with the page.
func (p *Page) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s, err := p.snapshot(r.Context())
	if err != nil {
		p.log.Warn("status snapshot failed", "err", err)
		http.Error(w, "status unavailable", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if r.URL.Path == "/status.json" {
		h.Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(s)
		return
	}
	// The page loads nothing from anywhere and runs no script.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	h.Set("Content-Type", "text/html; charset=utf-8")
	if err := renderPage(w, &s); err != nil {
		p.log.Warn("status page render failed", "err", err)
	}
}

// warnings are what the operator should act on, most urgent first.
func warnings(s *Snapshot) []Warning {
	var out []Warning
	if noMirrorReachable(s.Mirrors) {
		out = append(out, Warning{"no-mirror", "No mirror reachable: every configured mirror failed its last request. " +
			"Packages that no peer has cannot be downloaded."})
	}
	if n := s.Served.Refusals[ReasonUnknownKey]; n > 0 {
		out = append(out, Warning{"unknown-key", fmt.Sprintf("%d package(s) refused because the signing key is "+
			"not in the keyring: update archlinux-keyring (pacman -Sy archlinux-keyring).", n)})
	}
	if !s.Keyring.Updated.IsZero() && s.Now.Sub(s.Keyring.Updated) > KeyringOldAfter {
		out = append(out, Warning{"keyring-old", fmt.Sprintf("The keyring was last updated %s ago: "+
			"new packager keys are missing (update archlinux-keyring).", days(s.Now.Sub(s.Keyring.Updated)))})
	}
	if s.Keyring.Valid == 0 {
		out = append(out, Warning{"keyring-empty", "No valid key in the keyring: every signed package is refused " +
			"(install archlinux-keyring)."})
	}
	return out
}

// noMirrorReachable: mirrors were tried and none answered its last request.
func noMirrorReachable(ms []Mirror) bool {
	tried := false
	for _, m := range ms {
		if m.Reachable {
			return false
		}
		tried = tried || m.Requests > 0
	}
	return tried
}

// MirrorsReachable counts the mirrors whose last request got an answer.
func MirrorsReachable(ms []Mirror) int {
	n := 0
	for _, m := range ms {
		if m.Reachable {
			n++
		}
	}
	return n
}

func days(d time.Duration) string {
	return fmt.Sprintf("%d days", int(d.Hours()/24))
}

// ReasonUnknownKey is the refusal reason (gateway's X-Flocon-Refusal) of a
// package signed by a key the keyring does not have.
const ReasonUnknownKey = "unknown-key"
