package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flocon/flocon/node"
)

// fakeP2P is a hand-written p2pAdmin keeping bans in a map.
type fakeP2P struct {
	mu   sync.Mutex
	bans map[string]node.Ban
}

const (
	peerOK    = "12D3KooWGRUVh4PjUQKu1sYc7kRRt4R8WzEF1CZcRv3DSf9HgDrs"
	peerOther = "12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo"
)

func (f *fakeP2P) ID() (node.Identity, error) {
	return node.Identity{PeerID: peerOK, Addrs: []string{"/ip4/10.0.0.1/tcp/19432/p2p/" + peerOK}, Announced: 3}, nil
}

func (f *fakeP2P) Peers() ([]node.PeerInfo, error) {
	return []node.PeerInfo{{PeerID: peerOther, Latency: 1500 * time.Microsecond, BytesSent: 2048, BlobsServed: 1}}, nil
}

func (f *fakeP2P) Ban(p, reason string) error {
	if !strings.HasPrefix(p, "12D3") {
		return node.ErrBadPeerID
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if old, ok := f.bans[p]; ok {
		return fmt.Errorf("ban %s: %w since then: %s", p, node.ErrAlreadyBanned, old.Reason)
	}
	f.bans[p] = node.Ban{Peer: p, Reason: reason, Time: time.Unix(1700000000, 0).UTC(),
		Evidence: node.Evidence{CID: "bafkrei-test", WantSHA256: "aa", GotSHA256: "bb"}}
	return nil
}

func (f *fakeP2P) Unban(p string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.bans[p]; !ok {
		return node.ErrNotBanned
	}
	delete(f.bans, p)
	return nil
}

func (f *fakeP2P) Bans() ([]node.Ban, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := []node.Ban{}
	for _, b := range f.bans {
		out = append(out, b)
	}
	return out, nil
}

// serveAdmin serves the p2p routes on a unix socket, as the daemon does.
func serveAdmin(t *testing.T, f p2pAdmin) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "admin.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	registerP2PRoutes(mux, f)
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	return sock
}

// runCLI runs one subcommand against the socket and returns its output.
func runCLI(t *testing.T, sock string, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd(testEnv(t, nil))
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append(args, "--admin-socket", sock))
	err := root.ExecuteContext(t.Context())
	return out.String(), err
}

// TestPeerCommands drives flocon id/peers/ban/unban/bans through the admin
// socket: tables and --json, and the errors of bad requests.
func TestPeerCommands(t *testing.T) {
	t.Parallel()
	f := &fakeP2P{bans: map[string]node.Ban{}}
	sock := serveAdmin(t, f)

	out, err := runCLI(t, sock, "id")
	if err != nil || !strings.Contains(out, peerOK) || !strings.Contains(out, "/ip4/10.0.0.1/tcp/19432") {
		t.Fatalf("flocon id = %q, %v", out, err)
	}
	out, err = runCLI(t, sock, "peers")
	if err != nil || !strings.Contains(out, peerOther) || !strings.Contains(out, "2.0 KiB") || !strings.Contains(out, "1.5ms") {
		t.Fatalf("flocon peers = %q, %v", out, err)
	}
	if _, err := runCLI(t, sock, "ban", peerOther, "--reason", "sent garbage"); err != nil {
		t.Fatalf("flocon ban: %v", err)
	}
	out, err = runCLI(t, sock, "bans")
	if err != nil || !strings.Contains(out, peerOther) || !strings.Contains(out, "sent garbage") ||
		!strings.Contains(out, "bafkrei-test") || !strings.Contains(out, "want sha256 aa got bb") {
		t.Fatalf("flocon bans = %q, %v", out, err)
	}
	out, err = runCLI(t, sock, "bans", "--json")
	var bans []node.Ban
	if err != nil || json.Unmarshal([]byte(out), &bans) != nil || len(bans) != 1 || bans[0].Reason != "sent garbage" {
		t.Fatalf("flocon bans --json = %q, %v", out, err)
	}
	if _, err := runCLI(t, sock, "unban", peerOther); err != nil {
		t.Fatalf("flocon unban: %v", err)
	}
	if _, err := runCLI(t, sock, "ban", peerOK, "--reason", "first"); err != nil {
		t.Fatalf("flocon ban: %v", err)
	}
	for _, tt := range []struct {
		name  string
		args  []string
		want  string
		usage bool
	}{
		{"unban twice", []string{"unban", peerOther}, "is not banned", false},
		{"ban bad id", []string{"ban", "nonsense"}, "invalid peer id", false},
		{"ban twice", []string{"ban", peerOK, "--reason", "second"}, "already banned since then: first", false},
		{"ban without peer", []string{"ban"}, "missing PEER", true},
		{"unban two peers", []string{"unban", peerOK, peerOther}, "too many arguments", true},
		{"unknown flag", []string{"bans", "--frobnicate"}, "unknown flag", true},
	} {
		_, err := runCLI(t, sock, tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want %q", tt.name, err, tt.want)
			continue
		}
		if strings.Contains(err.Error(), "admin ") || strings.Contains(err.Error(), "/v1/") {
			t.Errorf("%s: error shows the admin API: %v", tt.name, err)
		}
		var out bytes.Buffer
		reportError(&out, err)
		if got := strings.Contains(out.String(), "Usage:"); got != tt.usage {
			t.Errorf("%s: usage printed = %v, want %v:\n%s", tt.name, got, tt.usage, out.String())
		}
	}
}

// TestP2PRoutes checks the JSON routes directly, including a daemon whose
// p2p side is off.
func TestP2PRoutes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, method, path, body string
		admin                    p2pAdmin
		want                     int
	}{
		{"id", "GET", "/v1/id", "", &fakeP2P{}, 200},
		{"bans", "GET", "/v1/bans", "", &fakeP2P{bans: map[string]node.Ban{}}, 200},
		{"ban", "POST", "/v1/bans", `{"peer":"` + peerOther + `","reason":"x"}`, &fakeP2P{bans: map[string]node.Ban{}}, 200},
		{"ban not json", "POST", "/v1/bans", `peer=x`, &fakeP2P{bans: map[string]node.Ban{}}, 400},
		{"unban unknown", "DELETE", "/v1/bans/" + peerOther, "", &fakeP2P{bans: map[string]node.Ban{}}, 404},
		{"p2p off", "GET", "/v1/peers", "", offP2P{}, 503},
		{"wrong method", "PUT", "/v1/bans", "", &fakeP2P{}, 405},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			mux := http.NewServeMux()
			registerP2PRoutes(mux, tt.admin)
			req, _ := http.NewRequestWithContext(t.Context(), tt.method, tt.path, strings.NewReader(tt.body))
			rec := httptest.NewRecorder()
			mux.ServeHTTP(rec, req)
			if rec.Code != tt.want {
				t.Fatalf("%s %s = %d (%s), want %d", tt.method, tt.path, rec.Code, rec.Body.String(), tt.want)
			}
		})
	}
}

// offP2P is a daemon running without its p2p side.
type offP2P struct{}

func (offP2P) ID() (node.Identity, error)      { return node.Identity{}, node.ErrP2PDisabled }
func (offP2P) Peers() ([]node.PeerInfo, error) { return nil, node.ErrP2PDisabled }
func (offP2P) Ban(string, string) error        { return node.ErrP2PDisabled }
func (offP2P) Unban(string) error              { return node.ErrP2PDisabled }
func (offP2P) Bans() ([]node.Ban, error)       { return nil, node.ErrP2PDisabled }
