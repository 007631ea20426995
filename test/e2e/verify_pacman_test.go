package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// manifestReasons maps MANIFEST.tsv verdicts to `flocon verify --json`
// reasons.
var manifestReasons = map[string]string{
	"bad-signature":     "bad-signature",
	"bad-checksum":      "digest-mismatch",
	"revoked-key":       "revoked-key",
	"untrusted-key":     "untrusted-key",
	"unknown-key":       "unknown-key",
	"missing-signature": "missing-signature",
	"renamed":           "identity-mismatch",
}

// floconVerdict is the part of `flocon verify --json` the test reads.
type floconVerdict struct {
	Valid  bool   `json:"valid"`
	Reason string `json:"reason"`
	Error  string `json:"error"`
}

func floconVerify(t *testing.T, fx *Fixtures, f FixtureFile) floconVerdict {
	t.Helper()
	db := filepath.Join(fx.Mirror, f.Repo, "os", fx.Arch, f.Repo+".db")
	cmd := exec.CommandContext(t.Context(), Binary(t), "verify", "--json", "--keyring", fx.Keyring,
		"--db", db, fx.Path(f))
	out, err := cmd.Output()
	var v floconVerdict
	if jerr := json.Unmarshal(out, &v); jerr != nil {
		t.Fatalf("flocon verify %s: %v, output %q", f.File, jerr, out)
	}
	if (err == nil) != v.Valid {
		t.Errorf("flocon verify %s: exit %v but valid=%v", f.File, err, v.Valid)
	}
	return v
}

// TestVerifyAgreesWithPacman: for every fixture package, `flocon verify`
// (the built binary) reaches MANIFEST.tsv's verdict, and for every package
// of a db it accepts exactly what the real pacman accepts when installing it
// from a plain mirror (pacman cannot be asked about files outside a db).
func TestVerifyAgreesWithPacman(t *testing.T) {
	t.Parallel()
	fx := LoadFixtures(t)
	u := NewUpstream(t, fx.Mirror)
	p := NewPacman(t, fx.Keyring, []string{u.Mirror()})
	p.Sy()
	for _, f := range fx.Files {
		t.Run(f.File, func(t *testing.T) { //nolint:paralleltest // the subtests share one pacman (its db lock)
			v := floconVerify(t, fx, f)
			if f.Expect == ExpectOK {
				if !v.Valid {
					t.Errorf("flocon verify refused a good package: %s (%s)", v.Reason, v.Error)
				}
			} else if want, ok := manifestReasons[f.Expect]; !ok {
				t.Fatalf("MANIFEST verdict %q has no mapping", f.Expect)
			} else if v.Valid || v.Reason != want {
				t.Errorf("flocon verify: valid=%v reason %q (%s), MANIFEST says %s", v.Valid, v.Reason, v.Error, want)
			}
			if !f.InDB {
				return
			}
			// -S, not -Sw: pacman checks the package's internal name only when it
			// loads it for installation (renamedpkg passes -Sw)
			out, err := p.Run("-S", f.Name)
			if pacmanOK := err == nil; pacmanOK != v.Valid {
				t.Errorf("pacman accepts=%v, flocon verify valid=%v (%s)\npacman: %s", pacmanOK, v.Valid, v.Reason, out)
			} else if !pacmanOK {
				t.Logf("both refuse: flocon %s; pacman: %s", v.Reason, errorLines(out))
			}
		})
	}
}

// errorLines keeps pacman's "error:" lines.
func errorLines(out string) string {
	var errs []string
	for line := range strings.SplitSeq(out, "\n") {
		if strings.HasPrefix(line, "error:") {
			errs = append(errs, line)
		}
	}
	return strings.Join(errs, " | ")
}

// TestKeysCommand: `flocon keys --json` lists the fixture keyring with the
// verdict pacman acts on for each key role of make-repo.sh.
func TestKeysCommand(t *testing.T) {
	t.Parallel()
	fx := LoadFixtures(t)
	out, err := exec.CommandContext(t.Context(), Binary(t), "keys", "--json", "--keyring", fx.Keyring).Output()
	if err != nil {
		t.Fatalf("flocon keys: %v", err)
	}
	var keys []struct {
		Fingerprint, UID, Verdict string
		Master                    bool
	}
	if err := json.Unmarshal(out, &keys); err != nil {
		t.Fatalf("flocon keys --json: %v\n%s", err, out)
	}
	got := map[string]string{}
	for _, k := range keys {
		got[k.Fingerprint] = k.Verdict
		if k.Master != strings.HasPrefix(roleOf(t, fx, k.Fingerprint), "master") {
			t.Errorf("key %s: master=%v", k.Fingerprint, k.Master)
		}
	}
	want := map[string][]string{ // role -> acceptable verdicts
		"master1": {"valid"}, "master2": {"valid"}, "master3": {"valid"}, "packager": {"valid"},
		"revoked": {"revoked", "disabled"}, "untrusted": {"marginal", "untrusted"}, "stranger": {""},
	}
	for role, verdicts := range want {
		fpr := fingerprintOf(t, fx, role)
		if !slices.Contains(verdicts, got[fpr]) {
			t.Errorf("%s key %s: verdict %q, want one of %q", role, fpr, got[fpr], verdicts)
		}
	}
}

// fixtureFingerprints reads keys/fingerprints.txt: "role FINGERPRINT" lines.
func fixtureFingerprints(t *testing.T, fx *Fixtures) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fx.Dir, "keys", "fingerprints.txt"))
	if err != nil {
		t.Fatal(err)
	}
	roles := map[string]string{}
	for line := range strings.SplitSeq(strings.TrimSpace(string(b)), "\n") {
		if role, fpr, ok := strings.Cut(line, " "); ok {
			roles[role] = fpr
		}
	}
	return roles
}

func fingerprintOf(t *testing.T, fx *Fixtures, role string) string {
	t.Helper()
	fpr, ok := fixtureFingerprints(t, fx)[role]
	if !ok {
		t.Fatalf("no %s key in fingerprints.txt", role)
	}
	return fpr
}

func roleOf(t *testing.T, fx *Fixtures, fpr string) string {
	t.Helper()
	for role, f := range fixtureFingerprints(t, fx) {
		if f == fpr {
			return role
		}
	}
	return ""
}
