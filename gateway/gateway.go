package gateway

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/flocon/flocon/store"
	"github.com/flocon/flocon/verify"
)

// Fetcher gets bytes from outside (peers, mirrors). *node.Node implements it.
type Fetcher interface {
	// Fetch starts, or joins, the verified download of a package blob and
	// returns it at once; the download outlives ctx. On success the blob and
	// the signature that verified it are in the store.
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

// Config configures a Gateway. Store and Fetcher are required.
type Config struct {
	Store   *store.Store
	Fetcher Fetcher
	Repos   []Repo       // default DefaultRepos
	Logger  *slog.Logger // default: discard
	// DBMaxAge: a db younger than this is served without asking upstream
	// (0: always revalidate with If-Modified-Since, like a mirror would).
	DBMaxAge time.Duration
}

// Gateway is the pacman-facing http.Handler.
type Gateway struct {
	cfg Config
	// STUB: the gateway implementation fills the rest in.
}

// New validates cfg.
func New(cfg Config) (*Gateway, error) { panic("unimplemented") }

// ServeHTTP serves the pacman mirror layout and GET /healthz.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) { panic("unimplemented") }
