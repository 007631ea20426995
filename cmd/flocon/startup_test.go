package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for the daemon's log goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// runningServe is a `flocon serve` run in-process by a test.
type runningServe struct {
	sock string
	log  *syncBuffer
	done chan error
	stop context.CancelFunc
}

// startServe runs serve with args (no config file, no environment) and
// returns once its admin socket answers, or fails the test with the log.
func startServe(t *testing.T, args ...string) *runningServe {
	t.Helper()
	r := launchServe(t, args...)
	client := socketClient(t, r.sock)
	deadline := time.Now().Add(60 * time.Second)
	for client.call(t.Context(), http.MethodGet, "/v1/status", nil, nil) != nil {
		select {
		case err := <-r.done:
			t.Fatalf("serve stopped: %v; log:\n%s", err, r.log)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("admin socket never answered; log:\n%s", r.log)
		}
	}
	return r
}

// launchServe starts serve with args without waiting; the test's end
// stops it. --admin-socket is added (a short path) unless given.
func launchServe(t *testing.T, args ...string) *runningServe {
	t.Helper()
	r := &runningServe{log: &syncBuffer{}, done: make(chan error, 1)}
	if !strings.Contains(strings.Join(args, " "), "--admin-socket") {
		r.sock = filepath.Join(shortTempDir(t), "admin.sock")
		args = append(args, "--admin-socket", r.sock)
	}
	cmd, _ := newServeCmdWith(filepath.Join(t.TempDir(), "absent.toml"), func(string) (string, bool) { return "", false })
	cmd.SetArgs(args)
	cmd.SetErr(r.log)
	cmd.SetOut(r.log)
	ctx, cancel := context.WithCancel(context.Background())
	r.stop = cancel
	go func() { r.done <- cmd.ExecuteContext(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
			t.Error("serve did not stop")
		}
	})
	return r
}

// wait returns serve's error once it stopped by itself.
func (r *runningServe) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("serve did not stop; log:\n%s", r.log)
		return nil
	}
}

// TestExampleConfigStarts: the example config, as shipped, is accepted, keeps
// the user's mirrorlist in charge, and a daemon starts on it (ports and
// directories moved aside for the test).
func TestExampleConfigStarts(t *testing.T) {
	t.Parallel()
	o, err := parseServe(t, []string{"--config", "flocon.example.toml"}, nil, "")
	if err != nil {
		t.Fatalf("example config: %v", err)
	}
	if len(o.mirrors) != 0 || o.mirrorlist != defaultMirrorlist || len(o.repos) != 0 || o.dataDir != defaultDataDir() {
		t.Fatalf("example config overrides defaults: mirrors %v, mirrorlist %s, repos %v, data dir %s",
			o.mirrors, o.mirrorlist, o.repos, o.dataDir)
	}
	// The keyring is a small one: the machine's Arch keyring (the example's
	// default) takes long to load under -race on a busy machine.
	r := startServe(t, "--config", "flocon.example.toml", "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0",
		"--p2p-listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns", "--share", t.TempDir(), "--keyring", writeTestKeyring(t))
	var rep statusReport
	if err := socketClient(t, r.sock).call(t.Context(), http.MethodGet, "/v1/status", nil, &rep); err != nil {
		t.Fatal(err)
	}
	if !rep.P2P || rep.Keyring == nil || len(rep.Mirrors) == 0 {
		t.Fatalf("status = %+v", rep)
	}
	r.stop()
	_ = r.wait(t) // serve flushes its batched log on the way out
	for _, want := range []string{"upstream mirrors", "flocon serving"} {
		if !strings.Contains(r.log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, r.log)
		}
	}
}

// TestSecondDaemonRefused: a second daemon on the same data dir stops at
// once with a clear error and leaves the first one running.
func TestSecondDaemonRefused(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	kr := writeTestKeyring(t)
	first := startServe(t, "--data-dir", dataDir, "--listen", "127.0.0.1:0", "--no-p2p", "--share", t.TempDir(), "--keyring", kr)
	second := launchServe(t, "--data-dir", dataDir, "--listen", "127.0.0.1:0", "--no-p2p", "--share", t.TempDir(), "--keyring", kr)
	err := second.wait(t)
	if !errors.Is(err, errDaemonRunning) || !strings.Contains(err.Error(), dataDir) {
		t.Fatalf("second daemon: %v, want errDaemonRunning naming %s", err, dataDir)
	}
	if err := socketClient(t, first.sock).call(t.Context(), http.MethodGet, "/v1/status", nil, nil); err != nil {
		t.Fatalf("first daemon hurt: %v", err)
	}
}

// TestBadSettingsFailBeforeServing: a bad p2p or mirror setting stops the
// daemon before it says it is serving, with the setting named.
func TestBadSettingsFailBeforeServing(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"bootstrap without peer ID", []string{"--bootstrap", "/ip4/10.0.0.1/tcp/19432"}, "bootstrap"},
		{"bootstrap garbage", []string{"--bootstrap", "not-a-multiaddr"}, "not-a-multiaddr"},
		{"allow-peer garbage", []string{"--allow-peer", "bob"}, "bob"},
		{"psk file missing", []string{"--psk-file", "/nonexistent/swarm.key"}, "/nonexistent/swarm.key"},
		{"p2p-listen garbage", []string{"--p2p-listen", "tcp:19432"}, "tcp:19432"},
		{"mirror not http", []string{"--mirror", "ftp://mirror.example/$repo/os/$arch"}, "ftp://mirror.example"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			args := []string{"--data-dir", t.TempDir(), "--listen", "127.0.0.1:0", "--no-mdns", "--share", t.TempDir()}
			if tt.name != "p2p-listen garbage" {
				args = append(args, "--p2p-listen", "/ip4/127.0.0.1/tcp/0")
			}
			r := launchServe(t, append(args, tt.args...)...)
			err := r.wait(t)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("serve = %v, want an error naming %q", err, tt.want)
			}
			if strings.Contains(r.log.String(), "flocon serving") {
				t.Fatalf("said serving before failing:\n%s", r.log)
			}
		})
	}
}

// listenReusePort binds a TCP port the way libp2p does (SO_REUSEPORT).
func listenReusePort(t *testing.T, addr string) net.Listener {
	t.Helper()
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, 0xf /* SO_REUSEPORT */, 1)
		})
		return errors.Join(err, serr)
	}}
	ln, err := lc.Listen(t.Context(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// TestP2PPortInUse: a port held by another libp2p daemon (SO_REUSEPORT)
// would silently be shared by a second one; the probe refuses it, TCP and
// UDP alike, and lets a free port pass.
func TestP2PPortInUse(t *testing.T) {
	t.Parallel()
	first := listenReusePort(t, "127.0.0.1:0")
	port := first.Addr().(*net.TCPAddr).Port
	// Without the probe a second daemon would get the port too.
	listenReusePort(t, fmt.Sprintf("127.0.0.1:%d", port))

	tcp := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", port)
	if err := probeP2PPorts([]string{tcp}); err == nil || !strings.Contains(err.Error(), "port in use") {
		t.Fatalf("probe of a libp2p port in use = %v", err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	quic := fmt.Sprintf("/ip4/127.0.0.1/udp/%d/quic-v1", pc.LocalAddr().(*net.UDPAddr).Port)
	if err := probeP2PPorts([]string{quic}); err == nil {
		t.Fatal("probe of a QUIC port in use passed")
	}
	if err := probeP2PPorts([]string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"}); err != nil {
		t.Fatalf("probe of free ports = %v", err)
	}

	// And the daemon stops on it before serving.
	r := launchServe(t, "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0", "--no-mdns", "--share", t.TempDir(),
		"--p2p-listen", tcp)
	if err := r.wait(t); err == nil || !strings.Contains(err.Error(), "port in use") {
		t.Fatalf("serve on a p2p port in use = %v", err)
	}
}

// TestStartupWarnings: a gateway reachable from other machines and a mirror
// URL without $repo are warned about; the mirror list used is logged.
func TestStartupWarnings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		listen string
		warn   bool
	}{
		{"127.0.0.1:19433", false}, {"[::1]:19433", false}, {"localhost:19433", false},
		{"0.0.0.0:19433", true}, {":19433", true}, {"192.168.1.10:19433", true},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		warnListen(slog.New(slog.NewTextHandler(&buf, nil)), tt.listen)
		if got := strings.Contains(buf.String(), "beyond this machine"); got != tt.warn {
			t.Errorf("listen %s: warned %v, want %v (%s)", tt.listen, got, tt.warn, buf.String())
		}
	}
	o, err := parseServe(t, []string{"--mirror", "http://host.example/core/os/x86_64", "--mirror",
		"https://ok.example/$repo/os/$arch"}, nil, filepath.Join(t.TempDir(), "absent.toml"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := o.upstream()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	logMirrors(slog.New(slog.NewTextHandler(&buf, nil)), m, o.mirrorSource)
	out := buf.String()
	if !strings.Contains(out, "has no $repo") || !strings.Contains(out, "http://host.example/core/os/x86_64") ||
		strings.Count(out, "has no $repo") != 1 || !strings.Contains(out, "upstream mirrors") {
		t.Fatalf("mirror log:\n%s", out)
	}
	o = &options{mirrorlist: filepath.Join(t.TempDir(), "mirrorlist")}
	if _, err := o.upstream(); err != nil || !strings.HasPrefix(o.mirrorSource, "built-in list") {
		t.Fatalf("without a mirrorlist: source %q (%v), want the built-in list named", o.mirrorSource, err)
	}
}
