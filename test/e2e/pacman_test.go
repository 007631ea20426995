package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Pacman is a private pacman client: its own root, db, cache, log and GnuPG
// dir (a copy of one initialized per keyring and test run), with the given
// servers for [core] and [extra], SigLevel = Required DatabaseOptional.
type Pacman struct {
	Dir     string // pacman.conf root/ db/ cache/ hooks/ gnupg/ pacman.log
	Conf    string
	Servers []string
	t       testing.TB
	prefix  []string // fakeroot when not root
}

// PacmanOption configures NewPacman.
type PacmanOption func(*pacmanConfig)

type pacmanConfig struct {
	repos    []string
	sigLevel string
	parallel int
}

// WithRepos sets the repos of pacman.conf (default core, extra).
func WithRepos(repos ...string) PacmanOption {
	return func(c *pacmanConfig) { c.repos = repos }
}

// WithSigLevel sets SigLevel (default "Required DatabaseOptional", as on Arch).
func WithSigLevel(level string) PacmanOption {
	return func(c *pacmanConfig) { c.sigLevel = level }
}

// WithParallel sets ParallelDownloads (default 5).
func WithParallel(n int) PacmanOption {
	return func(c *pacmanConfig) { c.parallel = n }
}

// requirePacman skips when the pacman tool chain is missing.
func requirePacman(t testing.TB) {
	t.Helper()
	requireTools(t, "pacman", "pacman-key", "gpg", "gpgconf")
	if os.Geteuid() != 0 {
		requireTools(t, "fakeroot")
	}
}

// NewPacman makes a pacman environment trusting keyringDir (e.g.
// Fixtures.Keyring) and using servers (URL templates with $repo and $arch)
// in that order.
func NewPacman(t testing.TB, keyringDir string, servers []string, opts ...PacmanOption) *Pacman {
	t.Helper()
	requireE2E(t)
	requirePacman(t)
	cfg := pacmanConfig{repos: []string{"core", "extra"}, sigLevel: "Required DatabaseOptional", parallel: 5}
	for _, o := range opts {
		o(&cfg)
	}
	gpgTemplate := pacmanGPGTemplate(t, keyringDir)
	dir := TempDir(t, "pacman")
	p := &Pacman{Dir: dir, Conf: filepath.Join(dir, "pacman.conf"), Servers: servers, t: t}
	if os.Geteuid() != 0 {
		p.prefix = []string{"fakeroot"}
	}
	for _, sub := range []string{"root", "db", "cache", "hooks"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatalf("pacman env: %v", err)
		}
	}
	if out, err := exec.Command("cp", "-a", gpgTemplate, filepath.Join(dir, "gnupg")).CombinedOutput(); err != nil {
		t.Fatalf("copy pacman gnupg dir: %v\n%s", err, out)
	}
	if err := os.WriteFile(p.Conf, []byte(p.config(cfg)), 0o644); err != nil {
		t.Fatalf("pacman.conf: %v", err)
	}
	t.Cleanup(func() {
		// pacman may start gpg-agent or dirmngr (unknown keys); stop them
		_ = exec.Command("gpgconf", "--homedir", filepath.Join(dir, "gnupg"), "--kill", "all").Run()
	})
	return p
}

func (p *Pacman) config(cfg pacmanConfig) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[options]\nRootDir = %s/root\nDBPath = %s/db/\nCacheDir = %s/cache/\n", p.Dir, p.Dir, p.Dir)
	fmt.Fprintf(&b, "LogFile = %s/pacman.log\nGPGDir = %s/gnupg/\nHookDir = %s/hooks/\n", p.Dir, p.Dir, p.Dir)
	fmt.Fprintf(&b, "Architecture = x86_64\nSigLevel = %s\nLocalFileSigLevel = Optional\n", cfg.sigLevel)
	fmt.Fprintf(&b, "ParallelDownloads = %d\n", cfg.parallel)
	for _, repo := range cfg.repos {
		fmt.Fprintf(&b, "\n[%s]\n", repo)
		for _, s := range p.Servers {
			fmt.Fprintf(&b, "Server = %s\n", s)
		}
	}
	return b.String()
}

// Run runs pacman with the environment's config and args; it returns the
// combined output and the exit error (nil on success).
func (p *Pacman) Run(args ...string) (string, error) {
	out, _, err := p.runCPU(args...)
	return out, err
}

// runCPU is Run that also returns the CPU time pacman and the children it
// waited for used (user + system).
func (p *Pacman) runCPU(args ...string) (string, time.Duration, error) {
	ctx, cancel := context.WithTimeout(p.t.Context(), 3*time.Minute)
	defer cancel()
	argv := append(append([]string(nil), p.prefix...), "pacman", "--config", p.Conf,
		"--noconfirm", "--noprogressbar")
	argv = append(argv, args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	var cpu time.Duration
	if st := cmd.ProcessState; st != nil {
		cpu = st.UserTime() + st.SystemTime()
	}
	return string(out), cpu, err
}

// MustRun is Run that fails the test when pacman fails.
func (p *Pacman) MustRun(args ...string) string {
	p.t.Helper()
	out, err := p.Run(args...)
	if err != nil {
		p.t.Fatalf("pacman %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// Sy syncs the databases (pacman -Sy); fails the test on error.
func (p *Pacman) Sy() string {
	p.t.Helper()
	return p.MustRun("-Sy")
}

// Sw downloads packages into the cache (pacman -Sw); fails the test on error.
func (p *Pacman) Sw(pkgs ...string) string {
	p.t.Helper()
	return p.MustRun(append([]string{"-Sw"}, pkgs...)...)
}

// CacheDir is pacman's package cache.
func (p *Pacman) CacheDir() string { return filepath.Join(p.Dir, "cache") }

// CacheFile is the path of a file in pacman's cache.
func (p *Pacman) CacheFile(name string) string { return filepath.Join(p.CacheDir(), name) }

// Log returns pacman.log.
func (p *Pacman) Log() string {
	b, _ := os.ReadFile(filepath.Join(p.Dir, "pacman.log"))
	return string(b)
}

var pacmanTemplates struct {
	mu   sync.Mutex
	dirs map[string]string // keyring dir -> initialized gnupg dir
	errs map[string]error
}

// pacmanGPGTemplate returns a GnuPG dir initialized by pacman-env.sh
// (FAST_INIT=1) for keyringDir, made once per test run.
func pacmanGPGTemplate(t testing.TB, keyringDir string) string {
	t.Helper()
	pacmanTemplates.mu.Lock()
	defer pacmanTemplates.mu.Unlock()
	if pacmanTemplates.dirs == nil {
		pacmanTemplates.dirs = map[string]string{}
		pacmanTemplates.errs = map[string]error{}
	}
	if dir, ok := pacmanTemplates.dirs[keyringDir]; ok {
		return dir
	}
	if err, ok := pacmanTemplates.errs[keyringDir]; ok {
		t.Fatalf("pacman keyring template: %v", err)
	}
	dir, err := makeGPGTemplate(keyringDir)
	if err != nil {
		pacmanTemplates.errs[keyringDir] = err
		t.Fatalf("pacman keyring template: %v", err)
	}
	pacmanTemplates.dirs[keyringDir] = dir
	return dir
}

func makeGPGTemplate(keyringDir string) (string, error) {
	script, err := filepath.Abs(filepath.Join("testdata", "pacman-env.sh"))
	if err != nil {
		return "", err
	}
	base, err := os.MkdirTemp(suite.workDir, "pt")
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, script, keyringDir, base, "http://127.0.0.1:1/$repo/os/$arch")
	cmd.Env = append(os.Environ(), "FAST_INIT=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("pacman-env.sh: %w\n%s", err, out)
	}
	gpgDir, err := filepath.EvalSymlinks(filepath.Join(base, "gnupg"))
	if err != nil {
		return "", err
	}
	return gpgDir, nil
}

// shutdownPacmanTemplates stops agents of the template dirs and removes
// template dirs that live outside the suite's work dir.
func shutdownPacmanTemplates() {
	pacmanTemplates.mu.Lock()
	defer pacmanTemplates.mu.Unlock()
	for _, dir := range pacmanTemplates.dirs {
		_ = exec.Command("gpgconf", "--homedir", dir, "--kill", "all").Run()
		if !strings.HasPrefix(dir, suite.workDir) && os.Getenv(envKeep) != "1" {
			_ = os.RemoveAll(dir)
		}
	}
}
