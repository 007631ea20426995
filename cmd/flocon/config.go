package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
	"github.com/spf13/pflag"

	"github.com/flocon/flocon/gateway"
	"github.com/flocon/flocon/node"
	"github.com/flocon/flocon/verify"
)

// Defaults of `flocon serve` (zero configuration works).
const (
	defaultConfigFile = "/etc/flocon/flocon.toml"
	defaultListen     = "127.0.0.1:19433" // loopback: the gateway is this machine's pacman mirror
	defaultMirrorlist = "/etc/pacman.d/mirrorlist"
	defaultPacmanPkg  = "/var/cache/pacman/pkg"
	defaultKeep       = 3
	envPrefix         = "FLOCON_"
)

var defaultP2PListen = []string{"/ip4/0.0.0.0/tcp/19432", "/ip4/0.0.0.0/udp/19432/quic-v1"}

var errConfig = errors.New("invalid configuration")

// options are the settings of `flocon serve`: built-in defaults, then the
// config file, then FLOCON_* variables, then flags; later wins.
type options struct {
	configFile   string
	listen       string
	dataDir      string
	mirrors      []string
	mirrorlist   string
	adminSocket  string
	keyring      string
	p2pListen    []string
	bootstrap    []string
	noMDNS       bool
	noDHT        bool
	noP2P        bool
	share        []string
	pskFile      string
	allowPeers   []string
	blobStreams  int
	peerRate     int64
	wanRate      int64
	singleSite   bool
	relay        bool
	haveTimeout  time.Duration
	logLevel     string
	logFormat    string
	keepVersions int
	maxSize      int64
	dbMaxAge     time.Duration
	repos        []repoConfig // [[repo]] tables: the file is their only source

	mirrorlistSet bool      // mirrorlist named explicitly: it must exist
	mirrorSource  string    // where upstream() found the mirrors, for the log and status
	logOut        io.Writer // the daemon's log (stderr)
}

// repoConfig is a [[repo]] table: a custom repository, or settings for an
// official one.
type repoConfig struct {
	Name     string   `toml:"name"`
	Mirrors  []string `toml:"mirrors"`   // URL templates with $repo and $arch, any layout
	Arches   []string `toml:"arches"`    // default: any
	SigLevel string   `toml:"sig_level"` // required (default), optional, never
	Keyring  string   `toml:"keyring"`   // directory; default: the main keyring
}

// fileConfig is flocon.toml. Pointers tell "absent" from a zero value.
type fileConfig struct {
	Listen       *string      `toml:"listen"`
	DataDir      *string      `toml:"data_dir"`
	Mirrors      []string     `toml:"mirrors"`
	Mirrorlist   *string      `toml:"mirrorlist"`
	AdminSocket  *string      `toml:"admin_socket"`
	Keyring      *string      `toml:"keyring"`
	P2P          any          `toml:"p2p"` // bool or a yes/no word`
	P2PListen    []string     `toml:"p2p_listen"`
	Bootstrap    []string     `toml:"bootstrap"`
	MDNS         any          `toml:"mdns"` // bool or a yes/no word
	DHT          any          `toml:"dht"`  // bool or a yes/no word
	Share        []string     `toml:"share"`
	PSKFile      *string      `toml:"psk_file"`
	AllowPeers   []string     `toml:"allow_peers"`
	BlobStreams  *int         `toml:"blob_streams_per_peer"`
	PeerRate     *int64       `toml:"peer_rate"`
	WANRate      *int64       `toml:"wan_upload_rate"`
	SingleSite   any          `toml:"single_site"` // bool or a yes/no word
	Relay        any          `toml:"p2p_relay"`   // bool or a yes/no word
	HaveTimeout  *string      `toml:"have_timeout"`
	KeepVersions *int         `toml:"keep_versions"`
	MaxSize      *int64       `toml:"max_size"`
	DBMaxAge     *string      `toml:"db_max_age"`
	LogLevel     *string      `toml:"log_level"`
	LogFormat    *string      `toml:"log_format"`
	Repos        []repoConfig `toml:"repo"`
}

// addFlags registers every serve flag with its built-in default.
func (o *options) addFlags(fs *pflag.FlagSet, configFile string) {
	fs.StringVar(&o.configFile, "config", configFile, "config file (TOML); a missing default file is fine")
	fs.StringVar(&o.listen, "listen", defaultListen, "gateway address pacman uses as its mirror")
	fs.StringVar(&o.dataDir, "data-dir", defaultDataDir(), "data directory (blobs, index, identity)")
	fs.StringArrayVar(&o.mirrors, "mirror", nil, "upstream mirror URL template with $repo and $arch (repeatable; default: the mirrorlist)")
	fs.StringVar(&o.mirrorlist, "mirrorlist", defaultMirrorlist, "pacman mirrorlist to read upstream mirrors from")
	fs.StringVar(&o.adminSocket, "admin-socket", "", "admin unix socket (default $DATA/admin.sock)")
	fs.StringVar(&o.keyring, "keyring", verify.DefaultKeyringDir(), "keyring directory (NAME.gpg, NAME-trusted, NAME-revoked)")
	fs.StringArrayVar(&o.p2pListen, "p2p-listen", defaultP2PListen, "libp2p listen multiaddr (repeatable)")
	fs.StringArrayVar(&o.bootstrap, "bootstrap", nil, "bootstrap peer: multiaddr with /p2p/ID (/ip4, /ip6, /dns4, /dns6) or /dnsaddr/NAME (repeatable; one is enough)")
	fs.VarPF(boolValue{&o.noMDNS}, "no-mdns", "", "disable mDNS discovery on the LAN").NoOptDefVal = "true"
	fs.VarPF(boolValue{&o.noP2P}, "no-p2p", "", "mirror-only mode: no peer-to-peer").NoOptDefVal = "true"
	fs.VarPF(boolValue{&o.noDHT}, "no-dht", "", "LAN-only lookups: no DHT provider records across sites").NoOptDefVal = "true"
	fs.StringArrayVar(&o.share, "share", defaultShareDirs(), "read-only package cache to share (repeatable)")
	fs.StringVar(&o.pskFile, "psk-file", "", "private swarm key file (/key/swarm/psk/1.0.0/); peers without it cannot connect; turns QUIC off")
	fs.StringArrayVar(&o.allowPeers, "allow-peer", nil, "peer ID allowed to connect (repeatable; default: any peer not banned)")
	fs.IntVar(&o.blobStreams, "blob-streams-per-peer", 8, "blob streams served to one peer at once")
	fs.Int64Var(&o.peerRate, "peer-rate", 0, "upload cap per peer in bytes/s (0: unlimited)")
	fs.Int64Var(&o.wanRate, "wan-upload-rate", 0, "upload cap to all remote peers together in bytes/s (0: unlimited)")
	fs.VarPF(boolValue{&o.singleSite}, "single-site", "", "every peer is on this LAN, found by mDNS or not (multicast blocked)").NoOptDefVal = "true"
	fs.VarPF(boolValue{&o.relay}, "p2p-relay", "", "serve as a relay that lets machines behind NAT hole-punch to each other (a machine every site can reach; relayed connections are limited)").NoOptDefVal = "true"
	fs.DurationVar(&o.haveTimeout, "have-timeout", 150*time.Millisecond, "how long a download waits for peer answers before starting on the mirrors (later answers still join)")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	fs.IntVar(&o.keepVersions, "keep-versions", defaultKeep, "versions kept per package (0: all)")
	fs.Int64Var(&o.maxSize, "max-size", 0, "store size quota in bytes (0: unlimited)")
	fs.DurationVar(&o.dbMaxAge, "db-max-age", 0, "serve a repo db this fresh without asking upstream (0: always revalidate)")
}

// defaultShareDirs is pacman's cache when this process can read it.
func defaultShareDirs() []string {
	f, err := os.Open(defaultPacmanPkg)
	if err != nil {
		return nil
	}
	defer f.Close()
	if _, err := f.Readdirnames(1); err != nil && !errors.Is(err, io.EOF) {
		return nil
	}
	return []string{defaultPacmanPkg}
}

// envName is the variable that stands for flag name: --data-dir → FLOCON_DATA_DIR.
func envName(flag string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// resolve layers the config file and the environment under the flags the
// user set, then validates the result. lookupEnv is os.LookupEnv (a seam
// for tests).
func (o *options) resolve(fs *pflag.FlagSet, lookupEnv func(string) (string, bool)) error {
	fc, err := o.layer(fs, lookupEnv, func(string) bool { return true })
	if err != nil {
		return err
	}
	o.repos = fc.Repos
	return o.validate()
}

// layer sets each flag in fs that the user did not set and that want
// selects from FLOCON_* or, failing that, the config file (FLOCON_CONFIG or
// --config). Client commands layer only where the daemon is, so a setting
// they do not use cannot stop them.
func (o *options) layer(fs *pflag.FlagSet, lookupEnv func(string) (string, bool), want func(flag string) bool) (fileConfig, error) {
	env := func(name string) (string, bool) {
		v, ok := lookupEnv(name)
		return v, ok && v != ""
	}
	path, explicit := o.configFile, fs.Changed("config")
	if v, ok := env(envName("config")); ok && !explicit {
		path, explicit = v, true
	}
	o.configFile = path
	fc, err := readConfigFile(path, explicit)
	if err != nil {
		return fc, err
	}
	fileValues, err := fc.values()
	if err != nil {
		return fc, fmt.Errorf("config %s: %w", path, err)
	}
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed || f.Name == "config" || !want(f.Name) {
			return
		}
		if v, ok := env(envName(f.Name)); ok {
			if err := setFlag(f, splitList(f, v)); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", envName(f.Name), v, err))
			}
			o.mirrorlistSet = o.mirrorlistSet || f.Name == "mirrorlist"
			return
		}
		if vs, ok := fileValues[f.Name]; ok {
			if err := setFlag(f, vs); err != nil {
				errs = append(errs, fmt.Errorf("config %s: %s: %w", path, fileKey(f.Name), err))
			}
			o.mirrorlistSet = o.mirrorlistSet || f.Name == "mirrorlist"
		}
	})
	if fs.Changed("mirrorlist") {
		o.mirrorlistSet = true
	}
	return fc, errors.Join(errs...)
}

// splitList splits a list-valued variable (FLOCON_MIRROR="a b,c").
func splitList(f *pflag.Flag, v string) []string {
	if _, ok := f.Value.(pflag.SliceValue); !ok {
		return []string{v}
	}
	return strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' })
}

func setFlag(f *pflag.Flag, vs []string) error {
	if sv, ok := f.Value.(pflag.SliceValue); ok {
		return sv.Replace(vs)
	}
	if len(vs) != 1 {
		return fmt.Errorf("%w: want one value, got %d", errConfig, len(vs))
	}
	if err := f.Value.Set(vs[0]); err != nil {
		if errors.Is(err, errConfig) {
			return err
		}
		return fmt.Errorf("%w: %q is not %s", errConfig, vs[0], flagTypeWords(f.Value.Type()))
	}
	return nil
}

// flagTypeWords names the value a flag of pflag type t wants.
func flagTypeWords(t string) string {
	switch t {
	case "int", "int64":
		return "a whole number"
	case "duration":
		return "a duration such as 150ms, 30s or 1h"
	case "bool":
		return "a yes/no value"
	}
	return "a valid " + t
}

// readConfigFile decodes path strictly (unknown keys are errors). A missing
// default file is an empty configuration; a missing explicit one is an error.
func readConfigFile(path string, explicit bool) (fileConfig, error) {
	var fc fileConfig
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && !explicit {
		return fc, nil
	}
	if err != nil {
		return fc, fmt.Errorf("read config: %w", err)
	}
	dec := toml.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&fc); err != nil {
		var sme *toml.StrictMissingError
		if errors.As(err, &sme) {
			return fc, fmt.Errorf("config %s: %w: %s", path, errConfig, sme.String())
		}
		return fc, userTOMLError(path, err)
	}
	return fc, nil
}

// values are the file's settings as flag values, keyed by flag name.
func (fc fileConfig) values() (map[string][]string, error) {
	v := map[string][]string{}
	str := func(flag string, p *string) {
		if p != nil {
			v[flag] = []string{*p}
		}
	}
	list := func(flag string, l []string) {
		if l != nil {
			v[flag] = l
		}
	}
	str("listen", fc.Listen)
	str("data-dir", fc.DataDir)
	list("mirror", fc.Mirrors)
	str("mirrorlist", fc.Mirrorlist)
	str("admin-socket", fc.AdminSocket)
	str("keyring", fc.Keyring)
	list("p2p-listen", fc.P2PListen)
	list("bootstrap", fc.Bootstrap)
	list("share", fc.Share)
	str("psk-file", fc.PSKFile)
	list("allow-peer", fc.AllowPeers)
	str("have-timeout", fc.HaveTimeout)
	if fc.BlobStreams != nil {
		v["blob-streams-per-peer"] = []string{strconv.Itoa(*fc.BlobStreams)}
	}
	if fc.PeerRate != nil {
		v["peer-rate"] = []string{strconv.FormatInt(*fc.PeerRate, 10)}
	}
	if fc.WANRate != nil {
		v["wan-upload-rate"] = []string{strconv.FormatInt(*fc.WANRate, 10)}
	}
	str("db-max-age", fc.DBMaxAge)
	str("log-level", fc.LogLevel)
	str("log-format", fc.LogFormat)
	var errs []error
	for _, b := range []struct {
		flag, key string
		v         any
		invert    bool // the flag says the opposite: p2p = false is --no-p2p
	}{{"no-p2p", "p2p", fc.P2P, true}, {"no-mdns", "mdns", fc.MDNS, true}, {"no-dht", "dht", fc.DHT, true},
		{"single-site", "single_site", fc.SingleSite, false}, {"p2p-relay", "p2p_relay", fc.Relay, false}} {
		on, err := fileBool(b.key, b.v)
		if err != nil {
			errs = append(errs, err)
		} else if on != nil {
			v[b.flag] = []string{strconv.FormatBool(*on != b.invert)}
		}
	}
	if fc.KeepVersions != nil {
		v["keep-versions"] = []string{strconv.Itoa(*fc.KeepVersions)}
	}
	if fc.MaxSize != nil {
		v["max-size"] = []string{strconv.FormatInt(*fc.MaxSize, 10)}
	}
	return v, errors.Join(errs...)
}

func (o *options) validate() error {
	var errs []error
	if o.listen == "" {
		errs = append(errs, fmt.Errorf("%w: listen is empty", errConfig))
	}
	if o.dataDir == "" {
		errs = append(errs, fmt.Errorf("%w: data dir is empty", errConfig))
	}
	if o.keepVersions < 0 || o.maxSize < 0 || o.dbMaxAge < 0 || o.peerRate < 0 || o.wanRate < 0 || o.haveTimeout <= 0 || o.blobStreams <= 0 {
		errs = append(errs, fmt.Errorf("%w: keep-versions, max-size, db-max-age, peer-rate and wan-upload-rate must not be negative; "+
			"have-timeout and blob-streams-per-peer must be positive", errConfig))
	}
	if _, err := parseLevel(o.logLevel); err != nil {
		errs = append(errs, err)
	}
	if o.logFormat != "text" && o.logFormat != "json" {
		errs = append(errs, fmt.Errorf("%w: log format %q (want text or json)", errConfig, o.logFormat))
	}
	if _, err := o.gatewayRepos(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (o *options) adminSocketPath() string {
	if o.adminSocket != "" {
		return o.adminSocket
	}
	return filepath.Join(o.dataDir, "admin.sock")
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("%w: log level %q (want debug, info, warn or error)", errConfig, s)
	}
	return l, nil
}

// logger builds the daemon's structured logger on w (on a batchWriter,
// warnings and errors flush it).
func (o *options) logger(w io.Writer) *slog.Logger {
	if w == nil {
		w = os.Stderr
	}
	level, _ := parseLevel(o.logLevel) // validated
	hopts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(w, hopts)
	if o.logFormat == "json" {
		h = slog.NewJSONHandler(w, hopts)
	}
	if b, ok := w.(*batchWriter); ok {
		h = flushHandler{h, b}
	}
	return slog.New(h)
}

// gatewayRepos are the official repos plus the [[repo]] tables; a table
// named like an official repo changes its settings.
func (o *options) gatewayRepos() ([]gateway.Repo, error) {
	repos := append([]gateway.Repo(nil), gateway.DefaultRepos...)
	index := map[string]int{}
	for i, r := range repos {
		index[r.Name] = i
	}
	seen := map[string]bool{}
	for _, rc := range o.repos {
		if seen[rc.Name] {
			return nil, fmt.Errorf("%w: [[repo]] %q listed twice", errConfig, rc.Name)
		}
		seen[rc.Name] = true
		pol, err := verify.ParseSigPolicy(strings.ToLower(rc.SigLevel))
		if err != nil {
			return nil, fmt.Errorf("%w: [[repo]] %q: %w", errConfig, rc.Name, err)
		}
		r := gateway.Repo{Name: rc.Name, Arches: rc.Arches, SigPolicy: pol}
		i, official := index[rc.Name]
		switch {
		case official:
			repos[i] = r
		case len(rc.Mirrors) == 0:
			return nil, fmt.Errorf("%w: [[repo]] %q: a custom repo needs mirrors", errConfig, rc.Name)
		default:
			repos = append(repos, r)
		}
	}
	return repos, nil
}

// upstream is the mirror configuration: --mirror when given, else the
// mirrorlist (skipping flocon's own address), else node's built-in list.
// It records where the list came from in o.mirrorSource.
func (o *options) upstream() (node.Mirrors, error) {
	m := node.Mirrors{Default: o.mirrors, PerRepo: map[string][]string{}}
	for _, rc := range o.repos {
		if len(rc.Mirrors) > 0 {
			m.PerRepo[rc.Name] = rc.Mirrors
		}
	}
	if len(m.Default) > 0 {
		o.mirrorSource = "mirrors setting (--mirror, FLOCON_MIRROR or the config file)"
		return m, nil
	}
	f, err := os.Open(o.mirrorlist)
	if errors.Is(err, fs.ErrNotExist) && !o.mirrorlistSet {
		m.Default = append([]string(nil), node.BuiltinMirrors...)
		o.mirrorSource = "built-in list (no mirrorlist at " + o.mirrorlist + ")"
		return m, nil
	}
	if err != nil {
		return m, fmt.Errorf("mirrorlist: %w", err)
	}
	defer f.Close()
	list, err := node.ParseMirrorlist(f, []string{o.listen})
	if err != nil {
		return m, fmt.Errorf("mirrorlist %s: %w", o.mirrorlist, err)
	}
	o.mirrorSource = "mirrorlist " + o.mirrorlist
	if len(list) == 0 {
		list = append(list, node.BuiltinMirrors...)
		o.mirrorSource = "built-in list (mirrorlist " + o.mirrorlist + " has no Server line but flocon's own)"
	}
	m.Default = list
	return m, nil
}

// fileKey is the TOML key of a flag: --data-dir → data_dir.
func fileKey(flag string) string {
	switch flag {
	case "mirror":
		return "mirrors"
	case "allow-peer":
		return "allow_peers"
	case "no-p2p":
		return "p2p"
	case "no-mdns":
		return "mdns"
	}
	return strings.ReplaceAll(flag, "-", "_")
}
