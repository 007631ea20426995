package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// DaemonConfig describes one `flocon serve`. The zero value plus Mirrors and
// Keyring is a mirror-only daemon (--no-p2p) on a free 127.0.0.1 port.
type DaemonConfig struct {
	Mirrors []string // --mirror URL templates, in order
	Keyring string   // --keyring DIR (e.g. Fixtures.Keyring)
	// P2P leaves peer-to-peer on (no --no-p2p); put the p2p flags in Args.
	P2P     bool
	Listen  string // --listen (default: a free 127.0.0.1 port)
	DataDir string // --data-dir (default: a new temp dir)
	// Args are more flags for `flocon serve`. The harness always passes an
	// empty --config file and an empty --share dir (hermetic); a --config in
	// Args wins, a --share in Args adds a dir.
	Args []string
	Env  []string // more environment (KEY=VALUE)
	// Prefix runs the binary through a command, e.g. {"ip", "netns", "exec", "n1"}.
	Prefix []string
	// Ready tells whether the daemon is up (default: GET URL()/healthz is 200).
	// Needed when the test cannot reach --listen directly (netns).
	Ready func(ctx context.Context, d *Daemon) error
	// StartTimeout bounds the wait for Ready (default 30s).
	StartTimeout time.Duration
}

// Daemon is a running (or stopped) `flocon serve` process with its own data
// dir, log file and admin socket. Its log is printed when the test fails.
type Daemon struct {
	Config      DaemonConfig
	Listen      string // host:port of the gateway
	DataDir     string
	AdminSocket string
	LogPath     string // stdout and stderr of every run, appended

	t    testing.TB
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	err  error         // cmd.Wait's result
}

// StartDaemon starts `flocon serve` and waits until it is ready. The daemon is
// stopped when the test ends.
func StartDaemon(t testing.TB, cfg DaemonConfig) *Daemon {
	t.Helper()
	bin := Binary(t)
	dir := TempDir(t, "daemon")
	d := &Daemon{
		Config:      cfg,
		Listen:      cfg.Listen,
		DataDir:     cfg.DataDir,
		AdminSocket: filepath.Join(dir, "admin.sock"),
		LogPath:     filepath.Join(dir, "flocon.log"),
		t:           t,
	}
	if d.Listen == "" {
		d.Listen = FreeAddr(t)
	}
	if d.DataDir == "" {
		d.DataDir = filepath.Join(dir, "data")
	}
	t.Cleanup(func() {
		d.Stop()
		if t.Failed() {
			t.Logf("flocon log (%s):\n%s", d.LogPath, tail(d.Logs(), 300))
		}
	})
	if err := os.WriteFile(filepath.Join(dir, "flocon.toml"), nil, 0o644); err != nil {
		t.Fatalf("daemon config: %v", err)
	}
	if err := os.Mkdir(filepath.Join(dir, "share"), 0o755); err != nil {
		t.Fatalf("daemon share dir: %v", err)
	}
	d.start(bin)
	return d
}

// URL is the gateway's base URL, e.g. http://127.0.0.1:41234.
func (d *Daemon) URL() string { return "http://" + d.Listen }

// Server is the pacman Server line value: URL()/$repo/os/$arch.
func (d *Daemon) Server() string { return d.URL() + "/$repo/os/$arch" }

// FileURL is the URL of a file in the pacman layout.
func (d *Daemon) FileURL(repo, arch, file string) string {
	return d.URL() + "/" + repo + "/os/" + arch + "/" + file
}

func (d *Daemon) args() []string {
	// an empty config file and an empty share dir keep the host's
	// /etc/flocon/flocon.toml and /var/cache/pacman/pkg out of the test
	dir := filepath.Dir(d.LogPath)
	args := []string{"serve",
		"--listen", d.Listen,
		"--data-dir", d.DataDir,
		"--admin-socket", d.AdminSocket,
		"--config", filepath.Join(dir, "flocon.toml"),
		"--share", filepath.Join(dir, "share"),
	}
	if d.Config.Keyring != "" {
		args = append(args, "--keyring", d.Config.Keyring)
	}
	for _, m := range d.Config.Mirrors {
		args = append(args, "--mirror", m)
	}
	if !d.Config.P2P {
		args = append(args, "--no-p2p")
	}
	return append(args, d.Config.Args...)
}

// Start starts the process again after Stop or Kill (same flags, data dir
// and port) and waits until it is ready.
func (d *Daemon) Start() {
	d.t.Helper()
	d.start(Binary(d.t))
}

func (d *Daemon) start(bin string) {
	d.t.Helper()
	logf, err := os.OpenFile(d.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		d.t.Fatalf("daemon log: %v", err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "=== e2e: start %s %s\n", bin, strings.Join(d.args(), " "))
	argv := append(append([]string(nil), d.Config.Prefix...), bin)
	argv = append(argv, d.args()...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(hostEnv(), d.Config.Env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		d.t.Fatalf("start flocon: %v", err)
	}
	done := make(chan struct{})
	d.mu.Lock()
	d.cmd, d.done, d.err = cmd, done, nil
	d.mu.Unlock()
	go func() {
		err := cmd.Wait()
		d.mu.Lock()
		d.err = err
		d.mu.Unlock()
		close(done)
	}()
	d.waitReady(done)
}

func (d *Daemon) waitReady(done chan struct{}) {
	d.t.Helper()
	timeout := d.Config.StartTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ready := d.Config.Ready
	if ready == nil {
		ready = healthz
	}
	deadline := time.Now().Add(timeout)
	var last error
	for {
		select {
		case <-done:
			d.t.Fatalf("flocon exited during start (%v); log:\n%s", d.exitErr(), tail(d.Logs(), 100))
		default:
		}
		ctx, cancel := context.WithTimeout(d.t.Context(), time.Second)
		last = ready(ctx, d)
		cancel()
		if last == nil {
			return
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("flocon not ready after %s: %v; log:\n%s", timeout, last, tail(d.Logs(), 100))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// hostEnv is the test's environment without FLOCON_* settings, which would
// change the daemon under test.
func hostEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "FLOCON_") {
			env = append(env, kv)
		}
	}
	return env
}

// healthz is the default readiness check: GET /healthz answers 200.
func healthz(ctx context.Context, d *Daemon) error {
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	return healthzVia(ctx, &http.Client{Transport: tr}, d)
}

// healthzVia asks d's /healthz through c.
func healthzVia(ctx context.Context, c *http.Client, d *Daemon) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.URL()+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthz: %s", resp.Status)
	}
	return nil
}

// Running reports whether the process is alive.
func (d *Daemon) Running() bool {
	d.mu.Lock()
	done := d.done
	d.mu.Unlock()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

func (d *Daemon) exitErr() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.err
}

// PID is the process ID of the current run (0 when never started).
func (d *Daemon) PID() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd == nil || d.cmd.Process == nil {
		return 0
	}
	return d.cmd.Process.Pid
}

// Stop sends SIGTERM and waits up to 15s for a clean exit, then SIGQUIT
// (logging the goroutine dump) and SIGKILL. It
// returns the exit error of the process (nil for a clean exit, and when the
// daemon was not running).
func (d *Daemon) Stop() error {
	if !d.Running() {
		return nil
	}
	d.signal(syscall.SIGTERM)
	if d.wait(15 * time.Second) {
		return d.exitErr()
	}
	d.t.Errorf("flocon did not exit within 15s of SIGTERM; dumping its goroutines (SIGQUIT)")
	// A Go program exits on SIGQUIT, writing every goroutine's stack to
	// stderr: what blocked the shutdown.
	d.signal(syscall.SIGQUIT)
	if !d.wait(10 * time.Second) {
		d.signal(syscall.SIGKILL)
		d.wait(10 * time.Second)
	}
	if logs := d.Logs(); strings.Contains(logs, "SIGQUIT") {
		d.t.Logf("flocon goroutines at the hang (%s):\n%s", d.LogPath, logs[strings.LastIndex(logs, "SIGQUIT"):])
	}
	return errors.New("flocon did not stop on SIGTERM")
}

// Kill sends SIGKILL (no clean shutdown) and waits for the process to go.
func (d *Daemon) Kill() {
	if !d.Running() {
		return
	}
	d.signal(syscall.SIGKILL)
	if !d.wait(10 * time.Second) {
		d.t.Errorf("flocon did not die on SIGKILL")
	}
}

// Restart is Stop then Start; a stop that was not clean fails the test.
func (d *Daemon) Restart() {
	d.t.Helper()
	if err := d.Stop(); err != nil {
		d.t.Errorf("flocon stop: %v", err)
	}
	d.Start()
}

// Signal sends sig to the daemon (e.g. SIGUSR1).
func (d *Daemon) Signal(sig syscall.Signal) { d.signal(sig) }

func (d *Daemon) signal(sig syscall.Signal) {
	d.mu.Lock()
	cmd := d.cmd
	d.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
}

func (d *Daemon) wait(timeout time.Duration) bool {
	d.mu.Lock()
	done := d.done
	d.mu.Unlock()
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// Logs returns everything the daemon wrote so far (all runs).
func (d *Daemon) Logs() string {
	b, err := os.ReadFile(d.LogPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	return string(b)
}

// LogMatches reports whether a log line matches re.
func (d *Daemon) LogMatches(re *regexp.Regexp) bool {
	for line := range strings.SplitSeq(d.Logs(), "\n") {
		if re.MatchString(line) {
			return true
		}
	}
	return false
}

// WaitLog waits until a log line matches re.
func (d *Daemon) WaitLog(re *regexp.Regexp, timeout time.Duration) {
	d.t.Helper()
	Eventually(d.t, timeout, "flocon log line matching "+re.String(), func() bool { return d.LogMatches(re) })
}

// Blobs lists the file names in $DATA/blobs (CIDs), recursively.
func (d *Daemon) Blobs() []string { return listFiles(filepath.Join(d.DataDir, "blobs")) }

// TmpFiles lists the files left in $DATA/tmp.
func (d *Daemon) TmpFiles() []string { return listFiles(filepath.Join(d.DataDir, "tmp")) }

// HasBlob reports whether $DATA/blobs holds a file named cid (at any depth).
func (d *Daemon) HasBlob(cid string) bool {
	for _, b := range d.Blobs() {
		if filepath.Base(b) == cid {
			return true
		}
	}
	return false
}

// BlobWithSHA256 returns the path of a blob whose bytes hash to sum ("" when none).
func (d *Daemon) BlobWithSHA256(sum string) string {
	for _, b := range d.Blobs() {
		p := filepath.Join(d.DataDir, "blobs", b)
		if got, err := FileSHA256(p); err == nil && got == sum {
			return p
		}
	}
	return ""
}

func listFiles(root string) []string {
	var out []string
	_ = filepath.WalkDir(root, func(p string, e os.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			rel, _ := filepath.Rel(root, p)
			out = append(out, rel)
		}
		return nil
	})
	return out
}

func tail(s string, lines int) string {
	l := strings.Split(s, "\n")
	if len(l) > lines {
		l = append([]string{fmt.Sprintf("... (%d lines before)", len(l)-lines)}, l[len(l)-lines:]...)
	}
	return strings.Join(l, "\n")
}
