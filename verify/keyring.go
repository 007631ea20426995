package verify

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// ErrKeyring reports a keyring folder that cannot be used.
var ErrKeyring = errors.New("unusable keyring")

// Keyring is a parsed Arch-style keyring folder with pacman's trust decisions.
// The expensive part (verifying the masters' certifications) is done once by
// LoadKeyring; verdicts are then evaluated cheaply at any time, so key and
// certification expiry is always checked at verification time.
type Keyring struct {
	keys     []*keyEntry          // in file order
	byFpr    map[string]*keyEntry // upper-case hex fingerprint
	byKeyID  map[uint64][]*keyEntry
	masters  []*keyEntry
	now      func() time.Time
	logger   *slog.Logger
	dir      string
	marginal int // marginals-needed (gpg default 3)
	complete int // completes-needed (gpg default 1)
}

// keyEntry is one key of the keyring and what the trust model needs of it.
type keyEntry struct {
	fpr        string
	uid        string
	entity     *openpgp.Entity         // nil when the key could not be parsed
	ownertrust int                     // gpg ownertrust from NAME-trusted (0: none)
	disabled   bool                    // listed in NAME-revoked
	certs      map[string][]masterCert // by user ID: verified certifications by masters
}

// masterCert is a cryptographically verified certification (or certification
// revocation) of one user ID by one master key.
type masterCert struct {
	master *keyEntry
	sig    *packet.Signature // a certification or a 0x30 certification revocation
}

// Option configures LoadKeyring.
type Option func(*Keyring)

// WithClock sets the clock used for verification-time checks (key, subkey,
// certification and signature expiry). Default: time.Now.
func WithClock(now func() time.Time) Option { return func(k *Keyring) { k.now = now } }

// WithLogger sets the logger that reports keys that cannot be parsed.
func WithLogger(l *slog.Logger) Option { return func(k *Keyring) { k.logger = l } }

// KeyVerdict is the validity of one key, as gpg would report it after
// pacman-key --populate.
type KeyVerdict string

const (
	KeyValid     KeyVerdict = "valid"
	KeyMarginal  KeyVerdict = "marginal"
	KeyRevoked   KeyVerdict = "revoked"
	KeyExpired   KeyVerdict = "expired"
	KeyUntrusted KeyVerdict = "untrusted"
	KeyDisabled  KeyVerdict = "disabled"
	// KeyNotYetValid: the key or its self-signature was made after the
	// instant of the check (gpg: "created in the future (time warp or clock
	// problem)"). Refused as untrusted.
	KeyNotYetValid KeyVerdict = "not-yet-valid"
)

// KeyInfo describes one key of the keyring.
type KeyInfo struct {
	Fingerprint string     `json:"fingerprint"`
	UID         string     `json:"uid"`
	Verdict     KeyVerdict `json:"verdict"`
	Master      bool       `json:"master"`
}

// keyringDirs are the places archlinux-keyring installs to: Arch, then Debian.
var keyringDirs = []string{"/usr/share/pacman/keyrings", "/usr/share/keyrings"}

// DefaultKeyringDir is the first of /usr/share/pacman/keyrings and
// /usr/share/keyrings that exists.
func DefaultKeyringDir() string {
	for _, d := range keyringDirs {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			return d
		}
	}
	return keyringDirs[0]
}

// LoadKeyring reads every NAME.gpg / NAME-trusted / NAME-revoked set in dir.
// Only NAME.gpg files with a NAME-trusted beside them are keyrings (Debian's
// /usr/share/keyrings holds many unrelated *.gpg files).
func LoadKeyring(dir string, opts ...Option) (*Keyring, error) {
	k := EmptyKeyring(opts...)
	k.dir = dir
	names, err := keyringNames(dir)
	if err != nil {
		return nil, err
	}
	for _, name := range names {
		if err := k.loadSet(dir, name); err != nil {
			return nil, err
		}
	}
	if len(k.keys) == 0 {
		return nil, fmt.Errorf("load keyring %s: %w: no keys", dir, ErrKeyring)
	}
	k.verifyMasterCerts()
	k.dropCertifications()
	return k, nil
}

// EmptyKeyring is a keyring with no keys: every signature is refused as
// made by an unknown key. It lets a daemon without archlinux-keyring run
// (databases, unsigned custom repos) while refusing every signed package.
func EmptyKeyring(opts ...Option) *Keyring {
	k := &Keyring{
		byFpr: map[string]*keyEntry{}, byKeyID: map[uint64][]*keyEntry{},
		now: time.Now, logger: slog.New(slog.DiscardHandler), marginal: 3, complete: 1,
	}
	for _, o := range opts {
		o(k)
	}
	return k
}

// keyringNames lists the NAME of every NAME.gpg that has a NAME-trusted.
func keyringNames(dir string) ([]string, error) {
	matches, err := filepath.Glob(filepath.Join(dir, "*.gpg"))
	if err != nil {
		return nil, fmt.Errorf("load keyring %s: %w", dir, err)
	}
	var names []string
	for _, m := range matches {
		name := strings.TrimSuffix(filepath.Base(m), ".gpg")
		if _, err := os.Stat(filepath.Join(dir, name+"-trusted")); err == nil {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("load keyring %s: %w: no NAME.gpg with a NAME-trusted", dir, ErrKeyring)
	}
	sort.Strings(names)
	return names, nil
}

func (k *Keyring) loadSet(dir, name string) error {
	data, err := os.ReadFile(filepath.Join(dir, name+".gpg"))
	if err != nil {
		return fmt.Errorf("load keyring %s: %w", name, err)
	}
	entries, err := parseKeys(data, k.logger)
	if err != nil {
		return fmt.Errorf("load keyring %s: %w", filepath.Join(dir, name+".gpg"), err)
	}
	for _, e := range entries {
		if _, dup := k.byFpr[e.fpr]; dup {
			continue
		}
		k.keys = append(k.keys, e)
		k.byFpr[e.fpr] = e
		if e.entity == nil {
			continue
		}
		k.byKeyID[e.entity.PrimaryKey.KeyId] = append(k.byKeyID[e.entity.PrimaryKey.KeyId], e)
		for _, sk := range e.entity.Subkeys {
			k.byKeyID[sk.PublicKey.KeyId] = append(k.byKeyID[sk.PublicKey.KeyId], e)
		}
	}
	trusted, err := readTrusted(filepath.Join(dir, name+"-trusted"))
	if err != nil {
		return fmt.Errorf("load keyring %s: %w", name, err)
	}
	for fpr, level := range trusted {
		if e, ok := k.byFpr[fpr]; ok && e.ownertrust == 0 {
			e.ownertrust = level
			k.masters = append(k.masters, e)
		}
	}
	revoked, err := readFingerprints(filepath.Join(dir, name+"-revoked"))
	if err != nil {
		return fmt.Errorf("load keyring %s: %w", name, err)
	}
	for _, fpr := range revoked {
		if e, ok := k.byFpr[fpr]; ok {
			e.disabled = true
		}
	}
	sort.Slice(k.masters, func(i, j int) bool { return k.masters[i].fpr < k.masters[j].fpr })
	return nil
}

// readTrusted reads a gpg ownertrust file: "FPR:LEVEL:" lines.
func readTrusted(path string) (map[string]int, error) {
	lines, err := readLines(path)
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, l := range lines {
		fields := strings.Split(l, ":")
		if len(fields) < 2 {
			return nil, fmt.Errorf("%s: %w: bad ownertrust line %q", path, ErrKeyring, l)
		}
		level, err := strconv.Atoi(fields[1])
		if err != nil || !isFingerprint(fields[0]) {
			return nil, fmt.Errorf("%s: %w: bad ownertrust line %q", path, ErrKeyring, l)
		}
		out[strings.ToUpper(fields[0])] = level
	}
	return out, nil
}

// readFingerprints reads one fingerprint per line; a missing file is empty.
func readFingerprints(path string) ([]string, error) {
	lines, err := readLines(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(lines))
	for _, l := range lines {
		f := strings.Fields(l)[0]
		if !isFingerprint(f) {
			return nil, fmt.Errorf("%s: %w: bad fingerprint %q", path, ErrKeyring, l)
		}
		out = append(out, strings.ToUpper(f))
	}
	return out, nil
}

// readLines returns the non-empty, non-comment lines of a file.
func readLines(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out, sc.Err()
}

func isFingerprint(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
			return false
		}
	}
	return true
}
