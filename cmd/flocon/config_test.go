package main

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/flocon/flocon/gateway"
	"github.com/flocon/flocon/node"
	"github.com/flocon/flocon/verify"
)

// parseServe parses serve's flags, file and env the way `flocon serve` does,
// without running it.
func parseServe(t *testing.T, args []string, env map[string]string, configDefault string) (*options, error) {
	t.Helper()
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	cmd, o := newServeCmdWith(configDefault, lookup)
	cmd.SetOut(io.Discard)
	if err := cmd.Flags().Parse(args); err != nil {
		return nil, err
	}
	return o, o.resolve(cmd.Flags(), lookup)
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestServeZeroConfigDefaults(t *testing.T) {
	t.Parallel()
	o, err := parseServe(t, nil, nil, filepath.Join(t.TempDir(), "absent.toml"))
	if err != nil {
		t.Fatalf("zero config: %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"listen", o.listen, "127.0.0.1:19433"},
		{"data dir", o.dataDir, defaultDataDir()},
		{"mirrors", o.mirrors, []string(nil)},
		{"mirrorlist", o.mirrorlist, "/etc/pacman.d/mirrorlist"},
		{"admin socket", o.adminSocketPath(), filepath.Join(defaultDataDir(), "admin.sock")},
		{"keyring", o.keyring, verify.DefaultKeyringDir()},
		{"p2p listen", o.p2pListen, []string{"/ip4/0.0.0.0/tcp/19432", "/ip4/0.0.0.0/udp/19432/quic-v1"}},
		{"bootstrap", o.bootstrap, []string(nil)},
		{"mdns", o.noMDNS, false},
		{"p2p", o.noP2P, false},
		{"share", o.share, defaultShareDirs()},
		{"log level", o.logLevel, "info"},
		{"log format", o.logFormat, "text"},
		{"keep versions", o.keepVersions, 3},
		{"max size", o.maxSize, int64(0)},
		{"db max age", o.dbMaxAge, time.Duration(0)},
		{"psk file", o.pskFile, ""},
		{"allow peers", o.allowPeers, []string(nil)},
		{"blob streams per peer", o.blobStreams, 8},
		{"peer rate", o.peerRate, int64(0)},
		{"have timeout", o.haveTimeout, 150 * time.Millisecond},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %#v, want %#v", c.name, c.got, c.want)
		}
	}
	repos, err := o.gatewayRepos()
	if err != nil || !reflect.DeepEqual(repos, gateway.DefaultRepos) {
		t.Errorf("repos = %v (%v), want the official ones", repos, err)
	}
}

func TestConfigPrecedence(t *testing.T) {
	t.Parallel()
	file := writeFile(t, "flocon.toml", `
listen = "127.0.0.1:1001"
data_dir = "/file/data"
mirrors = ["https://file.example/$repo/os/$arch"]
keep_versions = 5
p2p = false
log_level = "debug"
`)
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want options
	}{
		{"file", []string{"--config", file}, nil, options{
			listen: "127.0.0.1:1001", dataDir: "/file/data", mirrors: []string{"https://file.example/$repo/os/$arch"},
			keepVersions: 5, noP2P: true, logLevel: "debug"}},
		{"env over file", []string{"--config", file}, map[string]string{
			"FLOCON_LISTEN": "127.0.0.1:2002", "FLOCON_MIRROR": "https://a.example/$repo https://b.example/$repo,https://c.example/$repo",
			"FLOCON_KEEP_VERSIONS": "7", "FLOCON_NO_P2P": "false"}, options{
			listen: "127.0.0.1:2002", dataDir: "/file/data",
			mirrors:      []string{"https://a.example/$repo", "https://b.example/$repo", "https://c.example/$repo"},
			keepVersions: 7, noP2P: false, logLevel: "debug"}},
		{"flags over env", []string{"--config", file, "--listen", "127.0.0.1:3003", "--mirror", "https://flag.example/$repo",
			"--mirror", "https://flag2.example/$repo", "--keep-versions", "9", "--no-p2p", "--data-dir", "/flag/data"},
			map[string]string{"FLOCON_LISTEN": "127.0.0.1:2002", "FLOCON_KEEP_VERSIONS": "7", "FLOCON_NO_P2P": "false",
				"FLOCON_DATA_DIR": "/env/data"}, options{
				listen: "127.0.0.1:3003", dataDir: "/flag/data",
				mirrors:      []string{"https://flag.example/$repo", "https://flag2.example/$repo"},
				keepVersions: 9, noP2P: true, logLevel: "debug"}},
		{"config file from env", nil, map[string]string{"FLOCON_CONFIG": file}, options{
			listen: "127.0.0.1:1001", dataDir: "/file/data", mirrors: []string{"https://file.example/$repo/os/$arch"},
			keepVersions: 5, noP2P: true, logLevel: "debug"}},
		{"empty env is unset", []string{"--config", file}, map[string]string{"FLOCON_LISTEN": ""}, options{
			listen: "127.0.0.1:1001", dataDir: "/file/data", mirrors: []string{"https://file.example/$repo/os/$arch"},
			keepVersions: 5, noP2P: true, logLevel: "debug"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o, err := parseServe(t, tt.args, tt.env, filepath.Join(t.TempDir(), "absent.toml"))
			if err != nil {
				t.Fatal(err)
			}
			got := options{listen: o.listen, dataDir: o.dataDir, mirrors: o.mirrors, keepVersions: o.keepVersions,
				noP2P: o.noP2P, logLevel: o.logLevel}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// The multi-site p2p settings come through all three layers too.
func TestP2PSettingsLayers(t *testing.T) {
	t.Parallel()
	file := writeFile(t, "flocon.toml", `
psk_file = "/etc/flocon/swarm.key"
allow_peers = ["12D3KooWA", "12D3KooWB"]
blob_streams_per_peer = 2
have_timeout = "80ms"
`)
	o, err := parseServe(t, []string{"--config", file, "--peer-rate", "1000000"},
		map[string]string{"FLOCON_HAVE_TIMEOUT": "200ms"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if o.pskFile != "/etc/flocon/swarm.key" || !reflect.DeepEqual(o.allowPeers, []string{"12D3KooWA", "12D3KooWB"}) ||
		o.blobStreams != 2 || o.peerRate != 1_000_000 || o.haveTimeout != 200*time.Millisecond {
		t.Fatalf("got psk %q allow %v streams %d rate %d have %v", o.pskFile, o.allowPeers, o.blobStreams, o.peerRate, o.haveTimeout)
	}
}

// TestConfigErrors: every bad setting is refused, in words that name the
// setting (file key or variable) and what it wants, never a Go type.
func TestConfigErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		file string // config content; "" for none
		args []string
		env  map[string]string
		want string // in the error
	}{
		{"explicit config missing", "", []string{"--config", "/nonexistent/flocon.toml"}, nil, "/nonexistent/flocon.toml"},
		{"explicit config from env missing", "", nil, map[string]string{"FLOCON_CONFIG": "/nonexistent/flocon.toml"}, "/nonexistent/flocon.toml"},
		{"unknown key", `lisen = "x"`, nil, nil, "lisen"},
		{"bad toml", `listen = `, nil, nil, "line 1"},
		{"wrong type", `keep_versions = "three"`, nil, nil, "keep_versions wants a whole number"},
		{"wrong type string", `listen = 5`, nil, nil, "listen wants a string in quotes"},
		{"wrong type list", `mirrors = "https://x/$repo/os/$arch"`, nil, nil, "mirrors wants a list of strings"},
		{"wrong type in repo", "[[repo]]\nname = 3\n", nil, nil, "line 2"},
		{"bad file bool", `p2p = "maybe"`, nil, nil, `p2p: invalid configuration: "maybe" is not a yes/no value`},
		{"bad sig level", "[[repo]]\nname = \"x\"\nmirrors = [\"https://x/$repo\"]\nsig_level = \"sometimes\"\n", nil, nil, "sometimes"},
		{"custom repo without mirrors", "[[repo]]\nname = \"x\"\n", nil, nil, "needs mirrors"},
		{"repo twice", "[[repo]]\nname = \"core\"\n[[repo]]\nname = \"core\"\n", nil, nil, "twice"},
		{"bad env int", "", nil, map[string]string{"FLOCON_KEEP_VERSIONS": "many"}, `FLOCON_KEEP_VERSIONS="many": invalid configuration: "many" is not a whole number`},
		{"bad env bool", "", nil, map[string]string{"FLOCON_NO_P2P": "perhaps"}, `FLOCON_NO_P2P="perhaps"`},
		{"bad env duration", "", nil, map[string]string{"FLOCON_HAVE_TIMEOUT": "soon"}, "a duration"},
		{"bad log format", "", []string{"--log-format", "xml"}, nil, "xml"},
		{"bad log level", "", nil, map[string]string{"FLOCON_LOG_LEVEL": "loud"}, "loud"},
		{"negative size", "max_size = -1", nil, nil, "must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			def := filepath.Join(t.TempDir(), "absent.toml")
			if tt.file != "" {
				def = writeFile(t, "flocon.toml", tt.file)
			}
			_, err := parseServe(t, tt.args, tt.env, def)
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to say %q", err, tt.want)
			}
			for _, jargon := range []string{"main.", "strconv", "struct field"} {
				if strings.Contains(err.Error(), jargon) {
					t.Errorf("err = %v: Go jargon %q", err, jargon)
				}
			}
		})
	}
}

// TestBooleanWords: yes/no settings accept what people type, in flags,
// FLOCON_* variables and the config file.
func TestBooleanWords(t *testing.T) {
	t.Parallel()
	for word, want := range map[string]bool{"yes": true, "no": false, "on": true, "off": false,
		"true": true, "false": false, "1": true, "0": false, "YES": true} {
		t.Run(word, func(t *testing.T) {
			t.Parallel()
			absent := filepath.Join(t.TempDir(), "absent.toml")
			o, err := parseServe(t, nil, map[string]string{"FLOCON_NO_P2P": word, "FLOCON_NO_MDNS": word}, absent)
			if err != nil || o.noP2P != want || o.noMDNS != want {
				t.Fatalf("env %q: noP2P=%v noMDNS=%v err=%v, want %v", word, o.noP2P, o.noMDNS, err, want)
			}
			o, err = parseServe(t, []string{"--no-p2p=" + word}, nil, absent)
			if err != nil || o.noP2P != want {
				t.Fatalf("flag %q: noP2P=%v err=%v", word, o.noP2P, err)
			}
			file := writeFile(t, "flocon.toml", "p2p = \""+word+"\"\n")
			o, err = parseServe(t, nil, nil, file)
			if err != nil || o.noP2P == want {
				t.Fatalf("file p2p = %q: noP2P=%v err=%v", word, o.noP2P, err)
			}
		})
	}
	o, err := parseServe(t, []string{"--no-p2p", "--no-mdns"}, nil, filepath.Join(t.TempDir(), "absent.toml"))
	if err != nil || !o.noP2P || !o.noMDNS {
		t.Fatalf("bare --no-p2p --no-mdns: %v %v %v", o.noP2P, o.noMDNS, err)
	}
}

func TestUpstreamMirrors(t *testing.T) {
	t.Parallel()
	list := writeFile(t, "mirrorlist", `## Worldwide
Server = http://127.0.0.1:19433/$repo/os/$arch
#Server = https://commented.example/$repo/os/$arch
Server = https://one.example/archlinux/$repo/os/$arch
Server = https://two.example/$repo/os/$arch
`)
	empty := writeFile(t, "mirrorlist", "# nothing\n")
	tests := []struct {
		name    string
		args    []string
		want    []string
		wantErr bool
	}{
		{"mirrorlist without self", []string{"--mirrorlist", list},
			[]string{"https://one.example/archlinux/$repo/os/$arch", "https://two.example/$repo/os/$arch"}, false},
		{"flags win over the mirrorlist", []string{"--mirrorlist", list, "--mirror", "https://flag.example/$repo/os/$arch"},
			[]string{"https://flag.example/$repo/os/$arch"}, false},
		{"empty mirrorlist", []string{"--mirrorlist", empty}, node.BuiltinMirrors, false},
		{"explicit mirrorlist missing", []string{"--mirrorlist", "/nonexistent/mirrorlist"}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o, err := parseServe(t, tt.args, nil, filepath.Join(t.TempDir(), "absent.toml"))
			if err != nil {
				t.Fatal(err)
			}
			m, err := o.upstream()
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if !tt.wantErr && !reflect.DeepEqual(m.Default, tt.want) {
				t.Fatalf("mirrors = %v, want %v", m.Default, tt.want)
			}
		})
	}
	t.Run("default mirrorlist absent", func(t *testing.T) {
		t.Parallel()
		o := &options{mirrorlist: filepath.Join(t.TempDir(), "mirrorlist")}
		m, err := o.upstream()
		if err != nil || !reflect.DeepEqual(m.Default, node.BuiltinMirrors) {
			t.Fatalf("mirrors = %v (%v), want the built-in ones", m.Default, err)
		}
	})
}

func TestKeyringMissing(t *testing.T) {
	t.Parallel()
	// An explicit --keyring that is not there is an error.
	o := &options{keyring: filepath.Join(t.TempDir(), "no-keyring")}
	_, err := o.loadKeyrings(slog.New(slog.DiscardHandler))
	if !errors.Is(err, verify.ErrKeyring) {
		t.Fatalf("err = %v, want a keyring error", err)
	}
}

// TestKeyringGarbageNamesFile: a keyring file that does not parse is an
// error naming that file, not just the keyring's name.
func TestKeyringGarbageNamesFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	gpg := filepath.Join(dir, "foo.gpg")
	if err := os.WriteFile(gpg, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "foo-trusted"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	o := &options{keyring: dir}
	if _, err := o.loadKeyrings(slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), gpg) {
		t.Fatalf("err = %v, want it to name %s", err, gpg)
	}
}

func TestDefaultKeyringMissingStillRuns(t *testing.T) {
	t.Parallel()
	if _, err := verify.LoadKeyring(verify.DefaultKeyringDir()); err == nil {
		t.Skip("this machine has an Arch keyring at the default place")
	}
	o := &options{keyring: verify.DefaultKeyringDir()}
	krs, err := o.loadKeyrings(slog.New(slog.DiscardHandler))
	if err != nil || krs == nil || krs.Status().Keys != 0 || krs.Status().Missing == "" {
		t.Fatalf("loadKeyrings = %v, %v; want an empty keyring, its reason and no error", krs, err)
	}
}
