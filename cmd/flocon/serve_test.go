package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
)

// writeTestKeyring makes a one-key Arch-style keyring (NAME.gpg, NAME-trusted).
func writeTestKeyring(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	ent, err := openpgp.NewEntity("flocon test", "", "test@flocon.invalid", nil)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, "testkeys.gpg"))
	if err != nil {
		t.Fatal(err)
	}
	if err := ent.Serialize(f); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	fpr := strings.ToUpper(hex.EncodeToString(ent.PrimaryKey.Fingerprint))
	if err := os.WriteFile(filepath.Join(dir, "testkeys-trusted"), []byte(fpr+":4:\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestServeRuns starts the whole daemon in mirror-only mode against a fake
// upstream: healthz, a repo file through the gateway, the admin status, and
// a clean stop that removes the admin socket.
func TestServeRuns(t *testing.T) {
	t.Parallel()
	sig := []byte("upstream db signature bytes")
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/core/os/x86_64/core.db.sig" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Last-Modified", time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).Format(http.TimeFormat))
		_, _ = w.Write(sig)
	}))
	defer upstream.Close()

	dataDir := t.TempDir()
	sock := filepath.Join(shortTempDir(t), "admin.sock")
	cmd, _ := newServeCmdWith(filepath.Join(t.TempDir(), "absent.toml"), func(string) (string, bool) { return "", false })
	cmd.SetArgs([]string{"--listen", "127.0.0.1:0", "--data-dir", dataDir, "--admin-socket", sock, "--no-p2p",
		"--keyring", writeTestKeyring(t), "--mirror", upstream.URL + "/$repo/os/$arch", "--log-level", "error"})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()

	client := socketClient(t, sock)
	var rep statusReport
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := client.call(t.Context(), http.MethodGet, "/v1/status", nil, &rep)
		if err == nil {
			break
		}
		select {
		case err := <-done:
			cancel()
			t.Fatalf("serve stopped: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("admin socket never answered: %v", err)
		}
	}
	if rep.DataDir != dataDir || rep.P2P || !strings.HasPrefix(rep.Listen, "127.0.0.1:") || rep.Store == nil ||
		rep.Keyring == nil || rep.Keyring.Keys != 1 || !strings.HasPrefix(rep.MirrorSource, "mirrors setting") {
		t.Errorf("status = %+v", rep)
	}
	get := func(path string) (int, string) {
		resp, err := http.Get(fmt.Sprintf("http://%s%s", rep.Listen, path))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("healthz: %d %q", code, body)
	}
	if code, body := get("/core/os/x86_64/core.db.sig"); code != http.StatusOK || body != string(sig) {
		t.Errorf("core.db.sig: %d %q", code, body)
	}
	if code, _ := get("/core/os/x86_64/core.files.sig"); code != http.StatusNotFound {
		t.Errorf("missing upstream file: %d, want 404", code)
	}

	if code, body := get("/metrics"); code != http.StatusOK ||
		!strings.Contains(body, `flocon_gateway_requests_total{kind="db",outcome="miss"} 1`) {
		t.Errorf("gateway metrics: %d\n%s", code, body)
	}
	if err := client.call(t.Context(), http.MethodGet, "/metrics", nil, nil); err != nil {
		t.Errorf("admin metrics: %v", err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop")
	}
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Errorf("admin socket left behind: %v", err)
	}
}
