package verify

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const archKeyringDir = "/usr/share/keyrings"

// TestAgreesWithGnuPG populates a real pacman GnuPG home from the real Arch
// keyring (pacman-key --init / --populate archlinux) and checks that every
// key's verdict equals gpg's validity.
func TestAgreesWithGnuPG(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat(filepath.Join(archKeyringDir, "archlinux.gpg")); err != nil {
		t.Skip("archlinux-keyring not installed (/usr/share/keyrings/archlinux.gpg); CI installs it")
	}
	for _, tool := range []string{"gpg", "gpgconf", "pacman-key"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed; CI installs gnupg and pacman", tool)
		}
	}
	var wrap []string
	if os.Geteuid() != 0 {
		if _, err := exec.LookPath("fakeroot"); err != nil {
			t.Skip("pacman-key needs root or fakeroot")
		}
		wrap = []string{"fakeroot"}
	}
	home := populateGnuPG(t, wrap)
	now := time.Now()
	want := gpgVerdicts(t, home)
	kr, err := LoadKeyring(archKeyringDir, WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	counts := map[KeyVerdict]int{}
	keys := kr.Keys(now)
	for _, k := range keys {
		counts[k.Verdict]++
		w, ok := want[k.Fingerprint]
		if !ok {
			t.Errorf("key %s (%s): not known to gpg", k.Fingerprint, k.UID)
			continue
		}
		if w != k.Verdict {
			t.Errorf("key %s (%s): verdict %s, gpg says %s", k.Fingerprint, k.UID, k.Verdict, w)
		}
	}
	// gpg also lists the local "Pacman Keyring Master Key"
	if len(keys) != len(want)-1 {
		t.Errorf("%d keys, gpg lists %d (with the local master key)", len(keys), len(want))
	}
	t.Logf("%d keys agree with gpg: %v", len(keys), counts)
}

// populateGnuPG runs pacman-key into a short temporary GPGDir (gpg-agent
// sockets break on long paths) and stops the agent afterwards.
func populateGnuPG(t *testing.T, wrap []string) string {
	t.Helper()
	home, err := os.MkdirTemp("/tmp", "fvg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = exec.Command("gpgconf", "--homedir", home, "--kill", "all").Run()
		_ = os.RemoveAll(home)
	})
	conf := filepath.Join(home, "pacman.conf")
	gpgdir := filepath.Join(home, "g")
	if err := os.WriteFile(conf, []byte("[options]\nGPGDir = "+gpgdir+"/\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(gpgdir, 0o700); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) {
		t.Helper()
		cmd := exec.CommandContext(t.Context(), args[0], args[1:]...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// an ed25519 local master key makes --init skip its slow RSA-4096 keygen
	run("gpg", "--homedir", gpgdir, "--batch", "--quiet", "--pinentry-mode", "loopback", "--passphrase", "",
		"--quick-gen-key", "Pacman Keyring Master Key <pacman@localhost>", "ed25519", "sign", "never")
	pk := append(append([]string{}, wrap...), "pacman-key", "--config", conf)
	run(append(pk, "--init")...)
	run(append(pk, "--populate", "archlinux")...)
	return gpgdir
}

// gpgVerdicts maps gpg --list-keys --with-colons validity to KeyVerdict.
func gpgVerdicts(t *testing.T, home string) map[string]KeyVerdict {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), "gpg", "--homedir", home, "--batch", "--with-colons",
		"--list-keys").Output()
	if err != nil {
		t.Fatalf("gpg --list-keys: %v", err)
	}
	verdicts := map[string]KeyVerdict{}
	var pending *KeyVerdict
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		switch {
		case f[0] == "pub" && len(f) > 11:
			v := gpgValidity(f[1], f[11])
			pending = &v
		case f[0] == "fpr" && pending != nil && len(f) > 9:
			verdicts[f[9]] = *pending
			pending = nil
		}
	}
	if len(verdicts) == 0 {
		t.Fatalf("no keys in gpg output:\n%s", out)
	}
	return verdicts
}

func gpgValidity(validity, caps string) KeyVerdict {
	switch {
	case validity == "r":
		return KeyRevoked
	case validity == "e":
		return KeyExpired
	case validity == "d" || strings.Contains(caps, "D"):
		return KeyDisabled
	case validity == "f" || validity == "u":
		return KeyValid
	case validity == "m":
		return KeyMarginal
	}
	return KeyUntrusted
}

func TestGpgValidityMapping(t *testing.T) {
	t.Parallel()
	tests := []struct {
		validity, caps string
		want           KeyVerdict
	}{
		{"f", "scSC", KeyValid}, {"u", "scSC", KeyValid}, {"m", "sc", KeyMarginal},
		{"r", "scD", KeyRevoked}, {"e", "scSCD", KeyExpired}, {"f", "scSCD", KeyDisabled},
		{"d", "sc", KeyDisabled}, {"-", "sc", KeyUntrusted}, {"q", "sc", KeyUntrusted},
		{"n", "sc", KeyUntrusted},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s_%s", tt.validity, tt.caps), func(t *testing.T) {
			t.Parallel()
			if got := gpgValidity(tt.validity, tt.caps); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

// TestFixtureAgreesWithGnuPG replays pacman-key --populate with gpg itself
// on the generated keyring (full-trust master, certification revocation,
// DSA, subkeys, expiry...) with gpg's clock set to fixtureNow, and checks
// that every key's verdict equals gpg's validity.
func TestFixtureAgreesWithGnuPG(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"gpg", "gpgconf"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed; CI installs gnupg", tool)
		}
	}
	f := getFixture(t)
	home, err := os.MkdirTemp("/tmp", "fvf")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = exec.Command("gpgconf", "--homedir", home, "--kill", "all").Run()
		_ = os.RemoveAll(home)
	})
	if err := os.Chmod(home, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := "no-greeting\nno-permission-warning\nfaked-system-time " + fixtureNow.Format("20060102T150405") + "\n"
	if err := os.WriteFile(filepath.Join(home, "gpg.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	gpg := func(stdin string, args ...string) {
		t.Helper()
		cmd := exec.CommandContext(t.Context(), "gpg", append([]string{"--homedir", home, "--batch"}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("gpg %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	gpg("", "--pinentry-mode", "loopback", "--passphrase", "", "--quick-gen-key",
		"Pacman Keyring Master Key <pacman@localhost>", "ed25519", "sign", "never")
	gpg("", "--import", filepath.Join(f.dir, keyringName+".gpg"), filepath.Join(f.dir, "extra.gpg"))
	for _, m := range []string{kMaster1, kMaster2, kMaster3, kMasterFull} {
		gpg("", "--yes", "--quick-lsign-key", fmt.Sprintf("%X", f.keys[m].PrimaryKey.Fingerprint))
	}
	gpg("", "--import-ownertrust", filepath.Join(f.dir, keyringName+"-trusted"))
	for _, r := range []string{kDisabled, kRevoked} {
		gpg("disable\nquit\n", "--command-fd", "0", "--edit-key", fmt.Sprintf("%X", f.keys[r].PrimaryKey.Fingerprint))
	}
	gpg("", "--check-trustdb")
	want := gpgVerdicts(t, home)
	kr := loadFixtureKeyring(t)
	counts := map[KeyVerdict]int{}
	for _, k := range kr.Keys(fixtureNow) {
		counts[k.Verdict]++
		if w, ok := want[k.Fingerprint]; !ok || w != k.Verdict {
			t.Errorf("key %s (%s): verdict %s, gpg says %q", k.Fingerprint, k.UID, k.Verdict, w)
		}
	}
	t.Logf("%d keys agree with gpg: %v", kr.Len(), counts)
}
