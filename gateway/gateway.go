package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"github.com/flocon/flocon/gateway/status"
	"github.com/flocon/flocon/store"
	"github.com/flocon/flocon/verify"
)

// Fetcher gets bytes from outside (peers, mirrors). *node.Node implements it.
type Fetcher interface {
	// Fetch starts, or joins, the verified download of a package blob and
	// returns it at once; the download outlives ctx. On success the blob and
	// the signature that verified it are in the store. A nil Pending with a
	// nil error means the blob is in the store already.
	Fetch(ctx context.Context, repo, arch string, exp verify.Expect) (*store.Pending, error)
	// FetchDB does a conditional GET of a repo database file on the repo's
	// mirrors and returns the first 200 or 304 (caller closes the body); an
	// error wrapping store.ErrNotFound when no mirror has it.
	FetchDB(ctx context.Context, repo, arch, name string, ims time.Time) (*http.Response, error)
}

// Repo is one repository the gateway serves.
type Repo struct {
	Name      string
	Arches    []string         // nil: any well-formed arch
	SigPolicy verify.SigPolicy // like pacman's SigLevel for packages
}

// DefaultRepos are the official Arch repositories.
var DefaultRepos = []Repo{
	{Name: "core"}, {Name: "extra"}, {Name: "multilib"},
	{Name: "core-testing"}, {Name: "extra-testing"}, {Name: "multilib-testing"},
}

// Defaults of the zero Config.
const (
	DefaultMaxStreams = 1024             // concurrent package downloads being streamed
	DefaultSigWait    = 20 * time.Second // how long a .sig request waits for its package's download
)

// Config configures a Gateway. Store and Fetcher are required.
type Config struct {
	Store   *store.Store
	Fetcher Fetcher
	Repos   []Repo       // default DefaultRepos
	Logger  *slog.Logger // default: discard
	// DBMaxAge: a db younger than this is served without asking upstream
	// (0: always revalidate with If-Modified-Since, like a mirror would).
	DBMaxAge time.Duration
	// Registry receives the gateway's metrics (default: a new registry,
	// served at GET /metrics either way).
	Registry *prometheus.Registry
	// MaxStreams bounds the package requests served from downloads in
	// flight; beyond it clients get 429 (default DefaultMaxStreams).
	MaxStreams int
	// SigWait bounds how long a .sig request waits for the download that
	// brings the signature (default DefaultSigWait).
	SigWait time.Duration
	// Status feeds the status page at GET / and GET /status.json and the
	// metrics derived from it (nil: no page, / is a 404).
	Status status.Source
	// WriteStall bounds each write of a response (at most 128 KiB): a
	// client that stops reading is dropped after it (default
	// DefaultWriteStall). It replaces http.Server.WriteTimeout, which would
	// bound a whole download however fast the client reads.
	WriteStall time.Duration
}

// Gateway is the pacman-facing http.Handler.
type Gateway struct {
	cfg     Config
	log     *slog.Logger
	repos   map[string]Repo
	handler http.Handler
	metrics *metrics
	streams chan struct{} // semaphore of MaxStreams
	served  *served
	page    *status.Page // nil without Config.Status

	ka         atomic.Pointer[keepAlive] // while Serve runs
	fastServed atomic.Int64              // requests the keep-alive path answered

	dbGroup singleflight.Group
	dbMu    sync.Mutex
	dbSeen  map[string]dbState // by dbKey
}

// dbState is when a repo database file was last checked upstream.
type dbState struct {
	attempted time.Time // last conditional GET, whatever its outcome
	confirmed time.Time // last time upstream confirmed our copy (200 or 304)
}

// New validates cfg.
func New(cfg Config) (*Gateway, error) {
	if cfg.Store == nil {
		return nil, errors.New("gateway config: store is required")
	}
	if cfg.Fetcher == nil {
		return nil, errors.New("gateway config: fetcher is required")
	}
	if cfg.Repos == nil {
		cfg.Repos = DefaultRepos
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	if cfg.MaxStreams <= 0 {
		cfg.MaxStreams = DefaultMaxStreams
	}
	if cfg.SigWait <= 0 {
		cfg.SigWait = DefaultSigWait
	}
	if cfg.WriteStall <= 0 {
		cfg.WriteStall = DefaultWriteStall
	}
	repos, err := indexRepos(cfg.Repos)
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registry)
	if err != nil {
		return nil, fmt.Errorf("gateway config: %w", err)
	}
	g := &Gateway{
		cfg: cfg, log: cfg.Logger, repos: repos, metrics: m,
		streams: make(chan struct{}, cfg.MaxStreams),
		dbSeen:  make(map[string]dbState),
		served:  newServed(),
	}
	if cfg.Status != nil {
		g.page, err = status.New(status.Config{Source: cfg.Status, Served: g.Served,
			Registry: cfg.Registry, Logger: cfg.Logger})
		if err != nil {
			return nil, err
		}
	}
	g.handler = g.middleware(g.routes())
	return g, nil
}

func indexRepos(list []Repo) (map[string]Repo, error) {
	repos := make(map[string]Repo, len(list))
	for _, r := range list {
		if !verify.ValidName(r.Name) {
			return nil, fmt.Errorf("gateway config: invalid repo name %q", r.Name)
		}
		if _, dup := repos[r.Name]; dup {
			return nil, fmt.Errorf("gateway config: repo %q listed twice", r.Name)
		}
		for _, a := range r.Arches {
			if !verify.ValidArch(a) {
				return nil, fmt.Errorf("gateway config: repo %q: invalid arch %q", r.Name, a)
			}
		}
		repos[r.Name] = r
	}
	return repos, nil
}

func (g *Gateway) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.Handle("GET /metrics", g.metrics.handler)
	if g.page != nil {
		mux.Handle("GET /{$}", g.page)
		mux.Handle("GET /status.json", g.page)
	}
	mux.HandleFunc("GET /{repo}/os/{arch}/{file}", g.serveRepoFile)
	return mux
}

// ServeHTTP serves the pacman mirror layout, GET /healthz, GET /metrics and,
// with Config.Status, the status page (GET / and GET /status.json). Under
// Serve, a plain GET of a stored file takes its connection to the
// keep-alive path (keepalive.go).
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if g.takeKeepAlive(w, r) {
		return
	}
	g.handler.ServeHTTP(w, r)
}

// serveRepoFile dispatches GET|HEAD /{repo}/os/{arch}/{file}.
func (g *Gateway) serveRepoFile(w http.ResponseWriter, r *http.Request) {
	t, err := g.parseTarget(r.PathValue("repo"), r.PathValue("arch"), r.PathValue("file"))
	if err != nil {
		g.fail(w, r, nil, err)
		return
	}
	noteTarget(w, &t)
	switch t.kind {
	case kindDB:
		g.serveDB(w, r, &t)
	case kindPkg:
		g.servePkg(w, r, &t)
	case kindPkgSig:
		g.serveSig(w, r, &t)
	}
}
