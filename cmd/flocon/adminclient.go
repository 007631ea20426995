package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
)

// defaultDataDir is /var/lib/flocon for root, else $XDG_STATE_HOME/flocon
// (~/.local/state/flocon).
func defaultDataDir() string {
	if os.Geteuid() == 0 {
		return "/var/lib/flocon"
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "flocon")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "flocon-data"
	}
	return filepath.Join(home, ".local", "state", "flocon")
}

// adminClient talks HTTP+JSON to the daemon over its admin unix socket.
type adminClient struct {
	dataDir, socket string
	json            bool // print JSON instead of tables
}

// addAdminFlags registers --data-dir, --admin-socket and --json on a client
// subcommand (env twins FLOCON_DATA_DIR, FLOCON_ADMIN_SOCKET).
func addAdminFlags(cmd *cobra.Command) *adminClient {
	c := &adminClient{}
	cmd.Flags().StringVar(&c.dataDir, "data-dir", envOr("FLOCON_DATA_DIR", defaultDataDir()), "daemon data directory")
	cmd.Flags().StringVar(&c.socket, "admin-socket", os.Getenv("FLOCON_ADMIN_SOCKET"), "admin socket (default $DATA/admin.sock)")
	cmd.Flags().BoolVar(&c.json, "json", false, "print JSON")
	return c
}

func envOr(key, def string) string {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		return v
	}
	return def
}

func (c *adminClient) socketPath() string {
	if c.socket != "" {
		return c.socket
	}
	return filepath.Join(c.dataDir, "admin.sock")
}

// call sends method path with body (JSON, may be nil) and decodes the JSON
// answer into out (may be nil). Non-2xx answers become errors carrying the
// daemon's message.
func (c *adminClient) call(ctx context.Context, method, path string, body, out any) error {
	sock := c.socketPath()
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://flocon"+path, rd)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("admin socket %s: %w (is flocon serve running?)", sock, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("admin %s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("admin %s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(data))
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("admin %s %s: decode: %w", method, path, err)
		}
	}
	return nil
}
