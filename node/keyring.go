package node

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/flocon/flocon/verify"
)

// Keyring lifecycle: the keyrings are files that pacman upgrades
// (archlinux-keyring), so they are read again whenever they change, and
// verification always uses a complete keyring: a reload builds a new one and
// swaps it in atomically; a verification already running keeps the one it
// started with, and a reload that fails keeps the previous keyring.

// DefaultKeyringDebounce is how long the keyring files must stay quiet after
// a change before they are read again: pacman writes several files.
const DefaultKeyringDebounce = 2 * time.Second

// KeyringConfig says where the keyrings are.
type KeyringConfig struct {
	Dir string // main keyring directory (NAME.gpg, NAME-trusted, NAME-revoked)
	// MayBeMissing lets a missing or unusable Dir load as an empty keyring
	// (every signed package refused) instead of failing: zero configuration
	// on a machine without archlinux-keyring.
	MayBeMissing bool
	RepoDirs     map[string]string // a custom repo's own keyring directory
	Logger       *slog.Logger      // default: discard
	Debounce     time.Duration     // default DefaultKeyringDebounce
	// OnReload, when set, is called after each reload attempt (tests).
	OnReload func(error)
}

// Keyrings holds the keyrings verification uses and swaps them atomically
// on Reload. The zero value is not usable: use LoadKeyrings or
// StaticKeyrings.
type Keyrings struct {
	cfg KeyringConfig
	cur atomic.Pointer[keyringSet]
}

type keyringSet struct {
	main     *verify.Keyring
	repos    map[string]*verify.Keyring
	loadedAt time.Time
	missing  error // why the main keyring is empty (MayBeMissing), else nil
}

// KeyringStatus is what `flocon status` and the status page show of the
// keyring in use.
type KeyringStatus struct {
	Dir      string    `json:"dir"`
	LoadedAt time.Time `json:"loadedAt"`
	Keys     int       `json:"keys"`
	// Verdicts counts the keys by validity now (valid, marginal, expired,
	// revoked, untrusted, disabled).
	Verdicts map[verify.KeyVerdict]int `json:"verdicts"`
	Missing  string                    `json:"missing,omitempty"` // why no keyring could be read
	Repos    map[string]int            `json:"repos,omitempty"`   // keys of each custom repo keyring
}

// LoadKeyrings reads the main keyring and every repo keyring.
func LoadKeyrings(cfg KeyringConfig) (*Keyrings, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Debounce <= 0 {
		cfg.Debounce = DefaultKeyringDebounce
	}
	k := &Keyrings{cfg: cfg}
	set, err := k.load()
	if err != nil {
		return nil, err
	}
	k.cur.Store(set)
	return k, nil
}

// StaticKeyrings holds fixed keyrings that never reload (tests, callers
// with keyrings in memory).
func StaticKeyrings(main *verify.Keyring, repos map[string]*verify.Keyring) *Keyrings {
	k := &Keyrings{cfg: KeyringConfig{Logger: slog.New(slog.DiscardHandler)}}
	k.cur.Store(&keyringSet{main: main, repos: repos, loadedAt: time.Now()})
	return k
}

func (k *Keyrings) load() (*keyringSet, error) {
	set := &keyringSet{repos: map[string]*verify.Keyring{}, loadedAt: time.Now()}
	main, err := verify.LoadKeyring(k.cfg.Dir)
	switch {
	case err != nil && k.cfg.MayBeMissing:
		main, set.missing = verify.EmptyKeyring(), err
	case err != nil:
		return nil, err
	}
	set.main = main
	for repo, dir := range k.cfg.RepoDirs {
		kr, err := verify.LoadKeyring(dir)
		if err != nil {
			return nil, fmt.Errorf("repo %s: %w", repo, err)
		}
		set.repos[repo] = kr
	}
	return set, nil
}

// For is the keyring that verifies packages of repo: its own, else the main one.
func (k *Keyrings) For(repo string) *verify.Keyring {
	set := k.cur.Load()
	if kr, ok := set.repos[repo]; ok && kr != nil {
		return kr
	}
	return set.main
}

// Reload reads every keyring again and swaps them in at once. On failure
// the keyrings in use stay (a half-written keyring never replaces a good
// one) and the error says which file is wrong.
func (k *Keyrings) Reload() error {
	set, err := k.load()
	if err == nil {
		k.cur.Store(set)
		st := k.Status()
		k.cfg.Logger.Info("keyring reloaded", "keyring", st.Dir, "keys", st.Keys,
			"valid", st.Verdicts[verify.KeyValid], "missing", st.Missing)
	} else {
		k.cfg.Logger.Error("keyring reload failed, keeping the keyring in use", "keyring", k.cfg.Dir, "err", err)
	}
	if k.cfg.OnReload != nil {
		k.cfg.OnReload(err)
	}
	return err
}

// Status describes the main keyring in use and when it was read.
func (k *Keyrings) Status() KeyringStatus {
	set := k.cur.Load()
	st := KeyringStatus{Dir: k.cfg.Dir, LoadedAt: set.loadedAt, Keys: set.main.Len(),
		Verdicts: map[verify.KeyVerdict]int{}}
	for _, ki := range set.main.Keys(time.Now()) {
		st.Verdicts[ki.Verdict]++
	}
	if set.missing != nil {
		st.Missing = set.missing.Error()
	}
	for repo, kr := range set.repos {
		if st.Repos == nil {
			st.Repos = map[string]int{}
		}
		st.Repos[repo] = kr.Len()
	}
	return st
}

// Watch reloads the keyrings when their files change, once the changes
// have settled for the debounce time, until ctx ends. A directory that does
// not exist is not watched (Reload, e.g. on SIGHUP, still works).
func (k *Keyrings) Watch(ctx context.Context) error {
	dirs := k.dirs()
	if len(dirs) == 0 {
		<-ctx.Done()
		return nil
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch keyrings: %w", err)
	}
	defer w.Close()
	for _, d := range dirs {
		if err := w.Add(d); err != nil {
			k.cfg.Logger.Warn("keyring directory not watched: changes are read on SIGHUP only", "dir", d, "err", err)
		}
	}
	changed := make(chan struct{}, 1)
	go forwardKeyringEvents(ctx, w, changed, k.cfg.Logger)
	return debounce(ctx, changed, k.cfg.Debounce, func() { _ = k.Reload() })
}

// dirs are the keyring directories to watch, each once.
func (k *Keyrings) dirs() []string {
	seen := map[string]bool{}
	var out []string
	for _, d := range append([]string{k.cfg.Dir}, mapValues(k.cfg.RepoDirs)...) {
		if d != "" && !seen[filepath.Clean(d)] {
			seen[filepath.Clean(d)] = true
			out = append(out, d)
		}
	}
	sort.Strings(out)
	return out
}

func mapValues(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// forwardKeyringEvents signals changed for every event on a keyring file
// (NAME.gpg, NAME-trusted, NAME-revoked); other files of the directory
// (Debian's /usr/share/keyrings holds many) are ignored.
func forwardKeyringEvents(ctx context.Context, w *fsnotify.Watcher, changed chan<- struct{}, log *slog.Logger) {
	for {
		select {
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			if isKeyringFile(ev.Name) {
				select {
				case changed <- struct{}{}:
				default: // a change is already pending
				}
			}
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			log.Warn("keyring watch", "err", err)
		case <-ctx.Done():
			return
		}
	}
}

func isKeyringFile(path string) bool {
	base := filepath.Base(path)
	return strings.HasSuffix(base, ".gpg") || strings.HasSuffix(base, "-trusted") || strings.HasSuffix(base, "-revoked")
}

// debounce calls fn once changed has been quiet for wait after a signal,
// until ctx ends.
func debounce(ctx context.Context, changed <-chan struct{}, wait time.Duration, fn func()) error {
	t := time.NewTimer(wait)
	t.Stop()
	for {
		select {
		case <-changed:
			t.Reset(wait)
		case <-t.C:
			fn()
		case <-ctx.Done():
			t.Stop()
			return nil
		}
	}
}
