package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/flocon/flocon/gateway"
	"github.com/flocon/flocon/node"
	"github.com/flocon/flocon/store"
	"github.com/flocon/flocon/verify"
)

// shortTempDir is a temp dir short enough for a unix socket path (108 bytes).
func shortTempDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "fl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// serveAdmin runs the admin server on a fresh socket until the test ends.
func serveStatusAdmin(t *testing.T, info adminInfo) string {
	t.Helper()
	sock := filepath.Join(shortTempDir(t), "admin.sock")
	ln, err := listenAdmin(sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: newAdminMux(info), ReadHeaderTimeout: time.Second}
	done := make(chan error, 1)
	go func() { done <- serveHTTP(srv.Serve(ln)) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return sock
}

func testInfo() adminInfo {
	// A fixed clock: under load, seconds pass between building the info and
	// asking for the status, and the text asserts an exact uptime.
	started := time.Now().Add(-90 * time.Second)
	return adminInfo{
		listen: "127.0.0.1:19433", dataDir: "/var/lib/flocon", socket: "/var/lib/flocon/admin.sock",
		repos: append(append([]gateway.Repo(nil), gateway.DefaultRepos...),
			gateway.Repo{Name: "myrepo", Arches: []string{"x86_64"}, SigPolicy: verify.SigOptional}),
		mirrors: node.Mirrors{
			Default: []string{"https://one.example/$repo/os/$arch"},
			PerRepo: map[string][]string{"myrepo": {"https://repo.example/$repo/$arch"}},
		},
		mirrorSource: "mirrorlist /etc/pacman.d/mirrorlist",
		started:      started,
		now:          func() time.Time { return started.Add(95 * time.Second) },
		maxBytes:     10 << 30, keepVersions: 3,
		storeStats: func() store.Stats {
			return store.Stats{Blobs: 4, Bytes: 5250492, Inflight: 1, DBFiles: 2, DBBytes: 3 << 20, Entries: 1234}
		},
		keyring: func() node.KeyringStatus {
			return node.KeyringStatus{Dir: "/usr/share/pacman/keyrings", LoadedAt: time.Now().Add(-time.Minute), Keys: 3,
				Verdicts: map[verify.KeyVerdict]int{verify.KeyValid: 2, verify.KeyExpired: 1}}
		},
		peers: &fakeP2P{bans: map[string]node.Ban{peerOther: {Peer: peerOther, Reason: "x"}}},
	}
}

func TestAdminSocketMode(t *testing.T) {
	t.Parallel()
	sock := serveStatusAdmin(t, testInfo())
	fi, err := os.Lstat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&fs.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin socket mode %v, want a 0600 socket", fi.Mode())
	}
}

func TestAdminSocketStale(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		prepare func(t *testing.T, path string)
		wantErr error // nil: listenAdmin succeeds
	}{
		{"absent", func(*testing.T, string) {}, nil},
		{"stale socket", func(t *testing.T, path string) {
			ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
			if err != nil {
				t.Fatal(err)
			}
			ln.SetUnlinkOnClose(false) // as after a crash
			ln.Close()
		}, nil},
		{"live socket", func(t *testing.T, path string) {
			ln, err := net.Listen("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
		}, errDaemonRunning},
		{"regular file", func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte("keep me"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, errors.New("not a socket")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(shortTempDir(t), "admin.sock")
			tt.prepare(t, path)
			ln, err := listenAdmin(path)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				ln.Close()
				return
			}
			if err == nil {
				ln.Close()
				t.Fatal("listenAdmin succeeded")
			}
			if !errors.Is(err, tt.wantErr) && !strings.Contains(err.Error(), tt.wantErr.Error()) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if tt.name == "regular file" {
				if b, _ := os.ReadFile(path); string(b) != "keep me" {
					t.Fatal("a regular file was touched")
				}
			}
		})
	}
}

// testEnv is a client environment with no config file and no FLOCON_*
// variables but those given.
func testEnv(t *testing.T, vars map[string]string) clientEnv {
	t.Helper()
	return clientEnv{
		configFile: filepath.Join(t.TempDir(), "absent.toml"),
		lookupEnv:  func(k string) (string, bool) { v, ok := vars[k]; return v, ok },
	}
}

// socketClient is an admin client of the daemon at sock.
func socketClient(t *testing.T, sock string) *adminClient {
	t.Helper()
	cmd := &cobra.Command{}
	c := addAdminFlags(cmd, testEnv(t, nil))
	if err := cmd.Flags().Set("admin-socket", sock); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestStatusCommand(t *testing.T) {
	t.Parallel()
	sock := serveStatusAdmin(t, testInfo())
	run := func(t *testing.T, args ...string) string {
		t.Helper()
		cmd := newStatusCmd(testEnv(t, nil))
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetArgs(append([]string{"--admin-socket", sock}, args...))
		if err := cmd.ExecuteContext(t.Context()); err != nil {
			t.Fatal(err)
		}
		return out.String()
	}
	t.Run("json", func(t *testing.T) {
		t.Parallel()
		out := run(t, "--json")
		var rep statusReport
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatal(err)
		}
		if rep.Version != node.Version || rep.Listen != "127.0.0.1:19433" || rep.Uptime < 90 ||
			len(rep.Repos) != 7 || rep.Repos[6].SigLevel != "optional" || rep.Repos[6].Mirrors[0] != "https://repo.example/$repo/$arch" {
			t.Fatalf("status = %+v", rep)
		}
		if rep.Store == nil || rep.Store.Blobs != 4 || rep.Store.MaxBytes != 10<<30 || rep.Keyring == nil ||
			rep.Keyring.Keys != 3 || rep.Peers.Banned != 1 || rep.MirrorSource == "" {
			t.Fatalf("status sections = %+v %+v %+v", rep.Store, rep.Keyring, rep.Peers)
		}
		if !strings.Contains(out, "\n  \"version\"") {
			t.Errorf("--json is not pretty-printed:\n%s", out)
		}
		// The documented field names (README) stay.
		var raw map[string]json.RawMessage
		_ = json.Unmarshal([]byte(out), &raw)
		for _, k := range []string{"version", "listen", "dataDir", "adminSocket", "p2p", "store", "keyring",
			"peers", "repos", "mirrors", "mirrorSource", "startedAt", "uptimeSeconds"} {
			if _, ok := raw[k]; !ok {
				t.Errorf("status --json lacks %q", k)
			}
		}
	})
	t.Run("text", func(t *testing.T) {
		t.Parallel()
		out := run(t)
		for _, want := range []string{"http://127.0.0.1:19433", "repo myrepo", "optional arches=x86_64",
			"\nstore\n", "packages:", "4 (5.0 MiB)", "quota:", "5.0 MiB of 10.0 GiB (0%)", "1234 packages listed",
			"\nkeyring\n", "3 (2 valid, 1 expired)", "/usr/share/pacman/keyrings",
			"\npeers\n", "off (mirror only)", "banned:", "1 (flocon bans)",
			"\nmirrors\n", "from:", "mirrorlist /etc/pacman.d/mirrorlist", "https://one.example/$repo/os/$arch", "up 1m35s"} {
			if !strings.Contains(out, want) {
				t.Errorf("status output lacks %q:\n%s", want, out)
			}
		}
		if strings.Contains(out, "e+06") {
			t.Errorf("status prints raw floats:\n%s", out)
		}
	})
	t.Run("no daemon", func(t *testing.T) {
		t.Parallel()
		cmd := newStatusCmd(testEnv(t, nil))
		cmd.SetArgs([]string{"--admin-socket", filepath.Join(shortTempDir(t), "none.sock")})
		err := cmd.ExecuteContext(t.Context())
		if err == nil || !strings.Contains(err.Error(), "no flocon daemon at") || !strings.Contains(err.Error(), "flocon serve") {
			t.Fatalf("err = %v", err)
		}
	})
}

// TestClientFindsDaemonLikeServe: client commands find the admin socket
// from --config, FLOCON_CONFIG, FLOCON_DATA_DIR and --data-dir exactly as
// serve places it.
func TestClientFindsDaemonLikeServe(t *testing.T) {
	t.Parallel()
	dataDir := shortTempDir(t)
	sock := filepath.Join(dataDir, "admin.sock")
	ln, err := listenAdmin(sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: newAdminMux(testInfo()), ReadHeaderTimeout: time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	cfg := writeFile(t, "c.toml", "data_dir = \""+dataDir+"\"\n")
	otherDir := shortTempDir(t)
	tests := []struct {
		name string
		args []string
		env  map[string]string
		ok   bool
	}{
		{"FLOCON_CONFIG", nil, map[string]string{"FLOCON_CONFIG": cfg}, true},
		{"--config", []string{"--config", cfg}, nil, true},
		{"FLOCON_DATA_DIR", nil, map[string]string{"FLOCON_DATA_DIR": dataDir}, true},
		{"--data-dir", []string{"--data-dir", dataDir}, nil, true},
		{"env over file", nil, map[string]string{"FLOCON_CONFIG": cfg, "FLOCON_DATA_DIR": otherDir}, false},
		{"flag over env", []string{"--data-dir", dataDir}, map[string]string{"FLOCON_DATA_DIR": otherDir}, true},
		{"FLOCON_ADMIN_SOCKET", nil, map[string]string{"FLOCON_ADMIN_SOCKET": sock, "FLOCON_DATA_DIR": otherDir}, true},
		{"missing config", []string{"--config", filepath.Join(otherDir, "none.toml")}, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cmd := newStatusCmd(testEnv(t, tt.env))
			cmd.SetOut(new(bytes.Buffer))
			cmd.SetArgs(append([]string{"--json"}, tt.args...))
			err := cmd.ExecuteContext(t.Context())
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}
