package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestVerifyAtAgreesWithKeysAt: the built binary's `verify --at T` and
// `keys --at T` give the same verdict on the packager key at instants
// around its creation (a day before the fixture's signatures): before it
// the key is not yet valid and its package refused; between the key and
// the signature (a clock running behind) both accept. The real gpg, with
// its clock set to T, says the same of the signature (GOODSIG or not).
func TestVerifyAtAgreesWithKeysAt(t *testing.T) {
	t.Parallel()
	fx := LoadFixtures(t)
	hello := fx.File(t, "hello-1.0-1-"+fx.Arch+".pkg.tar.zst")
	packager := fingerprintOf(t, fx, "packager")
	gpgHome := gpgHomeWith(t, filepath.Join(fx.Keyring, "pactest.gpg"))
	tests := []struct {
		at      time.Time
		verdict string
	}{
		{fixtureKeyTime.Add(-time.Hour), "not-yet-valid"},
		{fixtureKeyTime.Add(time.Hour), "valid"},  // the signature is 23 h in the future
		{fixtureSignTime.Add(time.Hour), "valid"}, // after the signature
		{fixtureKeyTime.Add(-time.Second), "not-yet-valid"},
	}
	for _, tt := range tests {
		at := tt.at.UTC().Format(time.RFC3339)
		t.Run(at, func(t *testing.T) {
			t.Parallel()
			out, err := exec.CommandContext(t.Context(), Binary(t), "keys", "--json", "--keyring", fx.Keyring,
				"--at", at).Output()
			if err != nil {
				t.Fatalf("flocon keys --at %s: %v", at, err)
			}
			var keys []struct{ Fingerprint, Verdict string }
			if err := json.Unmarshal(out, &keys); err != nil {
				t.Fatal(err)
			}
			verdict := ""
			for _, k := range keys {
				if k.Fingerprint == packager {
					verdict = k.Verdict
				}
			}
			cmd := exec.CommandContext(t.Context(), Binary(t), "verify", "--json", "--keyring", fx.Keyring,
				"--at", at, fx.Path(hello))
			out, verr := cmd.Output()
			var v floconVerdict
			if err := json.Unmarshal(out, &v); err != nil {
				t.Fatalf("flocon verify --at: %v, %q", err, out)
			}
			if verdict != tt.verdict {
				t.Errorf("keys --at %s: packager %q, want %q", at, verdict, tt.verdict)
			}
			if v.Valid != (verdict == "valid") || (verr == nil) != v.Valid {
				t.Errorf("verify --at %s: valid=%v (%s: %s, exit %v) but keys says %s", at, v.Valid, v.Reason, v.Error,
					verr, verdict)
			}
			status, _ := exec.CommandContext(t.Context(), "gpg", "--homedir", gpgHome, "--batch", "--status-fd", "1",
				"--faked-system-time", strconv.FormatInt(tt.at.Unix(), 10)+"!", "--verify",
				fx.Path(hello)+".sig", fx.Path(hello)).Output()
			if good := strings.Contains(string(status), "[GNUPG:] GOODSIG "); good != v.Valid {
				t.Errorf("gpg at %s: GOODSIG %v, flocon valid %v\n%s", at, good, v.Valid, status)
			}
		})
	}
}

// gpgHomeWith is a throwaway GnuPG home (short path: agent sockets) holding
// the public keys of keyFile; its agent is stopped at the end.
func gpgHomeWith(t *testing.T, keyFile string) string {
	t.Helper()
	requireTools(t, "gpg", "gpgconf")
	home, err := os.MkdirTemp("", "fgh")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = exec.Command("gpgconf", "--homedir", home, "--kill", "all").Run()
		_ = os.RemoveAll(home)
	})
	if out, err := exec.CommandContext(t.Context(), "gpg", "--homedir", home, "--batch", "--quiet",
		"--import", keyFile).CombinedOutput(); err != nil {
		t.Fatalf("gpg --import: %v\n%s", err, out)
	}
	return home
}
