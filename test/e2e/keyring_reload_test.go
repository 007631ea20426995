package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// strangerFingerprint is the key of testdata/keys/fingerprints.txt that
// signs the unknown-key fixtures and is in no keyring.
const strangerFingerprint = "C22ED8AAB25A17EFCBD1DEA9B156D952B34717F5"

// TestKeyringReloadWhileRunning: a package signed by a key the keyring does
// not have is refused; once the keyring files are replaced on disk (as a
// pacman -Syu that upgrades archlinux-keyring does: new files renamed into
// place), the running daemon picks them up by itself and serves the same
// package, verified, without a restart. SIGHUP reloads too.
func TestKeyringReloadWhileRunning(t *testing.T) {
	t.Parallel()
	fx := LoadFixtures(t)
	var pkg FixtureFile
	for _, f := range fx.Files {
		if f.Expect == "unknown-key" && f.Signer == "stranger" && f.InDB {
			pkg = f
		}
	}
	if pkg.File == "" {
		t.Fatal("no unknown-key package in the fixtures")
	}
	keyring := TempDir(t, "keyring")
	for _, name := range []string{"pactest.gpg", "pactest-trusted", "pactest-revoked"} {
		copyFile(t, filepath.Join(fx.Keyring, name), filepath.Join(keyring, name))
	}
	up := NewUpstream(t, fx.Mirror)
	d := StartDaemon(t, DaemonConfig{Mirrors: []string{up.Mirror()}, Keyring: keyring})
	c := HTTPClient(t)
	if r := Get(t, c, d.FileURL(pkg.Repo, fx.Arch, pkg.Repo+".db")); r.Status != http.StatusOK {
		t.Fatalf("GET %s.db: %d", pkg.Repo, r.Status)
	}
	url := d.FileURL(pkg.Repo, fx.Arch, pkg.File)
	if h, err := GetHashed(t.Context(), c, url); err == nil && h.Complete(pkg.Size, pkg.SHA256) {
		t.Fatalf("%s served before the keyring had its key", pkg.File)
	}

	// The upgrade: the stranger's key arrives as a new keyring set, trusted.
	replaceFile(t, filepath.Join(keyring, "stranger.gpg"), readFile(t, filepath.Join(fx.Keyring, "stranger.pub.gpg")))
	replaceFile(t, filepath.Join(keyring, "stranger-trusted"), []byte(strangerFingerprint+":4:\n"))
	d.WaitLog(regexp.MustCompile(`keyring reloaded`), 30*time.Second)
	h, err := GetHashed(t.Context(), c, url)
	if err != nil || !h.Complete(pkg.Size, pkg.SHA256) {
		t.Fatalf("after the keyring upgrade: %+v, %v; want the package's %d bytes\n%s", h, err, pkg.Size, tail(d.Logs(), 40))
	}
	Eventually(t, 30*time.Second, "the package stored", func() bool { return d.BlobWithSHA256(pkg.SHA256) != "" })

	// SIGHUP (systemctl reload) reads the keyrings again too.
	before := strings.Count(d.Logs(), "keyring reloaded")
	d.Signal(syscall.SIGHUP)
	Eventually(t, 30*time.Second, "a keyring reload on SIGHUP", func() bool {
		return strings.Count(d.Logs(), "keyring reloaded") > before
	})
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	if err := os.WriteFile(to, readFile(t, from), 0o644); err != nil {
		t.Fatal(err)
	}
}

// replaceFile writes path the way a package manager does: a temp file in
// the same directory renamed over it.
func replaceFile(t *testing.T, path string, b []byte) {
	t.Helper()
	tmp := fmt.Sprintf("%s.new-%d", path, os.Getpid())
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
