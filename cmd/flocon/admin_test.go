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

	"github.com/flocon/flocon/gateway"
	"github.com/flocon/flocon/node"
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
	srv := &http.Server{Handler: newAdminMux(info, nil), ReadHeaderTimeout: time.Second}
	done := make(chan error, 1)
	go func() { done <- serveHTTP(srv, ln) }()
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
	return adminInfo{
		listen: "127.0.0.1:19433", dataDir: "/var/lib/flocon", socket: "/var/lib/flocon/admin.sock",
		repos: append(append([]gateway.Repo(nil), gateway.DefaultRepos...),
			gateway.Repo{Name: "myrepo", Arches: []string{"x86_64"}, SigPolicy: verify.SigOptional}),
		mirrors: node.Mirrors{
			Default: []string{"https://one.example/$repo/os/$arch"},
			PerRepo: map[string][]string{"myrepo": {"https://repo.example/$repo/$arch"}},
		},
		started:    time.Now().Add(-90 * time.Second),
		storeStats: func() (any, error) { return map[string]int{"blobs": 4, "inflight": 1}, nil },
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

func TestStatusCommand(t *testing.T) {
	t.Parallel()
	sock := serveStatusAdmin(t, testInfo())
	run := func(t *testing.T, args ...string) string {
		t.Helper()
		cmd := newStatusCmd()
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
		var rep statusReport
		if err := json.Unmarshal([]byte(run(t, "--json")), &rep); err != nil {
			t.Fatal(err)
		}
		if rep.Version != node.Version || rep.Listen != "127.0.0.1:19433" || rep.Uptime < 90 ||
			len(rep.Repos) != 7 || rep.Repos[6].SigLevel != "optional" || rep.Repos[6].Mirrors[0] != "https://repo.example/$repo/$arch" {
			t.Fatalf("status = %+v", rep)
		}
		var stats map[string]int
		if err := json.Unmarshal(rep.Store, &stats); err != nil || stats["blobs"] != 4 {
			t.Fatalf("store stats = %s (%v)", rep.Store, err)
		}
	})
	t.Run("text", func(t *testing.T) {
		t.Parallel()
		out := run(t)
		for _, want := range []string{"http://127.0.0.1:19433", "repo myrepo", "optional arches=x86_64",
			"store blobs:", "mirror:", "https://one.example/$repo/os/$arch", "p2p:", "off (mirror only)", "uptime:"} {
			if !strings.Contains(out, want) {
				t.Errorf("status output lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("no daemon", func(t *testing.T) {
		t.Parallel()
		cmd := newStatusCmd()
		cmd.SetArgs([]string{"--admin-socket", filepath.Join(shortTempDir(t), "none.sock")})
		if err := cmd.ExecuteContext(t.Context()); err == nil || !strings.Contains(err.Error(), "is flocon serve running") {
			t.Fatalf("err = %v", err)
		}
	})
}
