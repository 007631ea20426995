package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
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

// clientEnv is where client commands read the daemon's settings from: the
// default config file and the environment (seams for tests).
type clientEnv struct {
	configFile string
	lookupEnv  func(string) (string, bool)
}

var osEnv = clientEnv{configFile: defaultConfigFile, lookupEnv: os.LookupEnv}

// adminClient talks HTTP+JSON to the daemon over its admin unix socket. It
// finds the socket exactly as serve places it: --admin-socket, else
// $DATA/admin.sock, with --config, FLOCON_* and the config file layered
// the same way.
type adminClient struct {
	env   clientEnv
	flags *pflag.FlagSet
	json  bool // print JSON instead of tables
}

// clientFlags are the serve settings a client needs to find the daemon.
var clientFlags = []string{"config", "data-dir", "admin-socket"}

// addAdminFlags registers --config, --data-dir, --admin-socket and --json
// on a client subcommand (env twins FLOCON_CONFIG, FLOCON_DATA_DIR,
// FLOCON_ADMIN_SOCKET, read when the command runs).
func addAdminFlags(cmd *cobra.Command, env clientEnv) *adminClient {
	c := &adminClient{env: env, flags: cmd.Flags()}
	var o options
	serveFlags := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	o.addFlags(serveFlags, env.configFile)
	for _, name := range clientFlags {
		f := serveFlags.Lookup(name)
		cmd.Flags().String(name, f.DefValue, f.Usage)
	}
	cmd.Flags().BoolVar(&c.json, "json", false, "print JSON (stable field names, see README)")
	return c
}

// socketPath resolves the admin socket as `flocon serve` would with the
// same flags, environment and config file.
func (c *adminClient) socketPath() (string, error) {
	var o options
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	o.addFlags(fs, c.env.configFile)
	for _, name := range clientFlags {
		if f := c.flags.Lookup(name); f != nil && f.Changed {
			if err := fs.Set(name, f.Value.String()); err != nil {
				return "", err
			}
		}
	}
	want := func(flag string) bool { return flag == "data-dir" || flag == "admin-socket" }
	if _, err := o.layer(fs, c.env.lookupEnv, want); err != nil {
		return "", err
	}
	return o.adminSocketPath(), nil
}

// call sends method path with body (JSON, may be nil) and decodes the JSON
// answer into out (may be nil). Failures come back in user words: no
// daemon, no permission, or the daemon's own message.
func (c *adminClient) call(ctx context.Context, method, path string, body, out any) error {
	sock, err := c.socketPath()
	if err != nil {
		return err
	}
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
		return dialError(sock, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("reading the daemon's answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		return &daemonError{status: resp.StatusCode, msg: string(bytes.TrimSpace(data))}
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("the daemon's answer is not what this flocon expects (a different version?): %w", err)
		}
	}
	return nil
}

// daemonError is a refusal by the daemon; its message is already in user
// words (the HTTP status is kept for errors.As, not shown).
type daemonError struct {
	status int
	msg    string
}

func (e *daemonError) Error() string { return e.msg }

// dialError explains why the admin socket could not be reached.
func dialError(sock string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("no flocon daemon at %s: start it with `flocon serve`, or point --config, "+
			"--data-dir or --admin-socket (FLOCON_CONFIG, FLOCON_DATA_DIR, FLOCON_ADMIN_SOCKET) at the one running", sock)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("not allowed to use the admin socket %s (it is owner-only): run as the daemon's user or root", sock)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("admin socket %s: %w", sock, err)
}

// envOr is the value of the environment variable key, or def when unset or empty.
func envOr(key, def string) string {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		return v
	}
	return def
}
