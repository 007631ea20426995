package e2e

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
)

// Fixtures is the signed test repo made by testdata/make-repo.sh.
type Fixtures struct {
	Dir     string // root of the generated tree
	Mirror  string // serve this: Mirror/{core,extra}/os/Arch/...
	Keyring string // keyring folder: pactest.gpg, pactest-trusted, pactest-revoked
	Arch    string
	BigMB   int
	Files   []FixtureFile // MANIFEST.tsv, one row per package file
}

// FixtureFile is one row of MANIFEST.tsv.
type FixtureFile struct {
	Repo, File, Name, Version string
	InDB                      bool   // listed in the repo's db
	Signer                    string // packager, revoked, untrusted, stranger, none
	// Expect is the verdict a verifier must reach: ok, bad-signature,
	// bad-checksum, revoked-key, untrusted-key, unknown-key,
	// missing-signature, renamed.
	Expect string
	SHA256 string // of the file's bytes
	Size   int64
}

// Verdicts of MANIFEST.tsv.
const (
	ExpectOK = "ok"
)

// URLPath is the pacman-layout path of the file: /repo/os/arch/file.
func (f FixtureFile) URLPath(arch string) string {
	return "/" + f.Repo + "/os/" + arch + "/" + f.File
}

// CID is the CIDv1 (raw, sha2-256) flocon stores the file's bytes under.
func (f FixtureFile) CID() string { return CIDOfHex(f.SHA256) }

// CIDOfHex turns a hex sha256 into the CIDv1 string (raw, sha2-256).
func CIDOfHex(sum string) string {
	b, err := hex.DecodeString(sum)
	if err != nil || len(b) != sha256.Size {
		panic(fmt.Sprintf("bad sha256 hex %q", sum))
	}
	m, err := mh.Encode(b, mh.SHA2_256)
	if err != nil {
		panic(err)
	}
	return cid.NewCidV1(cid.Raw, m).String()
}

// Path is the file's location in the fixture mirror.
func (fx *Fixtures) Path(f FixtureFile) string {
	return filepath.Join(fx.Mirror, f.Repo, "os", fx.Arch, f.File)
}

// ReadFile returns the file's bytes.
func (fx *Fixtures) ReadFile(t testing.TB, f FixtureFile) []byte {
	t.Helper()
	b, err := os.ReadFile(fx.Path(f))
	if err != nil {
		t.Fatalf("read fixture: %v", err)
	}
	return b
}

// File finds a manifest row by file name, or fails the test.
func (fx *Fixtures) File(t testing.TB, name string) FixtureFile {
	t.Helper()
	for _, f := range fx.Files {
		if f.File == name {
			return f
		}
	}
	t.Fatalf("no fixture file %q", name)
	return FixtureFile{}
}

// Package finds the db-listed file of a package name, or fails the test.
func (fx *Fixtures) Package(t testing.TB, name string) FixtureFile {
	t.Helper()
	for _, f := range fx.Files {
		if f.Name == name && f.InDB {
			return f
		}
	}
	t.Fatalf("no fixture package %q in a db", name)
	return FixtureFile{}
}

// Select returns the rows with the given verdict; inDB keeps only rows listed
// in a db.
func (fx *Fixtures) Select(expect string, inDB bool) []FixtureFile {
	var out []FixtureFile
	for _, f := range fx.Files {
		if f.Expect == expect && (!inDB || f.InDB) {
			out = append(out, f)
		}
	}
	return out
}

var fixturesOnce struct {
	sync.Once
	fx  *Fixtures
	err error
}

// LoadFixtures returns the fixture repo, generating it on first use. The
// result is cached across runs and processes in
// ~/.cache/flocon-e2e/fixtures-<hash of the script, keys and BIG_MB> (see
// fixtureCacheDir), built under a lock file, so the whole suite builds it once. Skips the test when
// the tools are missing.
func LoadFixtures(t testing.TB) *Fixtures {
	t.Helper()
	requireE2E(t)
	requireTools(t, "gpg", "gpgconf", "bsdtar", "zstd", "gzip", "repo-add", "sha256sum")
	fixturesOnce.Do(func() {
		fixturesOnce.fx, fixturesOnce.err = loadFixtures()
	})
	if fixturesOnce.err != nil {
		t.Fatalf("fixtures: %v", fixturesOnce.err)
	}
	return fixturesOnce.fx
}

func loadFixtures() (*Fixtures, error) {
	bigMB := 50
	if s := os.Getenv(envBigMB); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("%s=%q: want a size in MiB", envBigMB, s)
		}
		bigMB = n
	}
	testdata, err := filepath.Abs("testdata")
	if err != nil {
		return nil, err
	}
	key, err := fixtureKey(testdata, bigMB)
	if err != nil {
		return nil, err
	}
	cache, err := fixtureCacheDir()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(cache, "fixtures-"+key)
	if err := buildFixturesLocked(testdata, dir, bigMB); err != nil {
		return nil, err
	}
	files, err := readManifest(filepath.Join(dir, "MANIFEST.tsv"))
	if err != nil {
		return nil, err
	}
	return &Fixtures{
		Dir:     dir,
		Mirror:  filepath.Join(dir, "mirror"),
		Keyring: filepath.Join(dir, "keyring"),
		Arch:    "x86_64",
		BigMB:   bigMB,
		Files:   files,
	}, nil
}

// envFixtureCache overrides where generated fixtures are cached.
const envFixtureCache = "FLOCON_E2E_CACHE"

// fixtureCacheDir is where generated fixtures (and their lock files) are
// kept between runs: $FLOCON_E2E_CACHE, else the user's own cache dir
// (~/.cache/flocon-e2e, /root/.cache/flocon-e2e for root). Never a fixed
// name in the shared /tmp, where one user's 0600 lock file made every test
// of another user fail with "permission denied".
func fixtureCacheDir() (string, error) {
	dir := os.Getenv(envFixtureCache)
	if dir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			return "", fmt.Errorf("fixture cache: %w (set %s or HOME)", err, envFixtureCache)
		}
		dir = filepath.Join(base, "flocon-e2e")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("fixture cache: %w", err)
	}
	return dir, nil
}

// fixtureKey hashes everything the generated tree depends on.
func fixtureKey(testdata string, bigMB int) (string, error) {
	h := sha256.New()
	for _, name := range []string{"make-repo.sh", "keys/secret-keys.gpg", "keys/revoked.rev"} {
		b, err := os.ReadFile(filepath.Join(testdata, name))
		if err != nil {
			return "", fmt.Errorf("fixture key: %w", err)
		}
		fmt.Fprintf(h, "%s %d\n", name, len(b))
		h.Write(b)
	}
	fmt.Fprintf(h, "BIG_MB=%d\n", bigMB)
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// buildFixturesLocked runs make-repo.sh into dir unless a complete tree is
// already there; the lock file serializes concurrent test processes.
func buildFixturesLocked(testdata, dir string, bigMB int) error {
	lock, err := os.OpenFile(dir+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("fixture lock: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("fixture lock: %w", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) //nolint:errcheck // closing the file unlocks too
	done := filepath.Join(dir, ".complete")
	if _, err := os.Stat(done); err == nil {
		return nil
	}
	tmp := fmt.Sprintf("%s.tmp-%d", dir, os.Getpid())
	_ = os.RemoveAll(tmp)
	_ = os.RemoveAll(dir)
	// Built once per cache dir; a loaded machine (shared CI runners) can
	// take several minutes for the signing and compression.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(testdata, "make-repo.sh"), tmp)
	cmd.Env = append(os.Environ(), "KEYS_DIR="+filepath.Join(testdata, "keys"),
		fmt.Sprintf("BIG_MB=%d", bigMB))
	if out, err := cmd.CombinedOutput(); err != nil {
		_ = os.RemoveAll(tmp)
		return fmt.Errorf("make-repo.sh: %w\n%s", err, out)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("fixture publish: %w", err)
	}
	return os.WriteFile(done, nil, 0o644)
}

func readManifest(path string) ([]FixtureFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	defer f.Close()
	var files []FixtureFile
	sc := bufio.NewScanner(f)
	for line := 0; sc.Scan(); line++ {
		if line == 0 {
			continue // header
		}
		c := strings.Split(sc.Text(), "\t")
		if len(c) != 9 {
			return nil, fmt.Errorf("manifest line %d: %d columns, want 9", line+1, len(c))
		}
		size, err := strconv.ParseInt(c[8], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("manifest line %d: size: %w", line+1, err)
		}
		files = append(files, FixtureFile{
			Repo: c[0], File: c[1], Name: c[2], Version: c[3], InDB: c[4] == "yes",
			Signer: c[5], Expect: c[6], SHA256: c[7], Size: size,
		})
	}
	return files, sc.Err()
}
