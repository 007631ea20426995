package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// fixtureKeyTime is make-repo.sh's KEY_TIME (EPOCH - 1 day); its signatures
// are made at EPOCH.
var (
	fixtureKeyTime  = time.Unix(1704153600-86400, 0)
	fixtureSignTime = time.Unix(1704153600, 0)
)

// TestMultiSignatureAgreesWithPacman: a .sig holding two signatures gets the
// same verdict from `flocon verify` and from the real pacman (`pacman -U`,
// which checks every signature gpg reports): accepted when both are valid
// and trusted, refused when one is untrusted or does not match the bytes.
// The second trusted key is made here, certified by the fixture's three
// master keys, and added to a copy of the fixture keyring.
func TestMultiSignatureAgreesWithPacman(t *testing.T) {
	t.Parallel()
	fx := LoadFixtures(t)
	keys := fixtureSecretKeys(t, fx)
	second := newCertifiedKey(t, "Pactest Second Packager", "second@pactest.invalid",
		keys["master1"], keys["master2"], keys["master3"])
	keyring := keyringWith(t, fx.Keyring, second)
	hello := fx.File(t, "hello-1.0-1-"+fx.Arch+".pkg.tar.zst")
	pkg := fx.ReadFile(t, hello)
	packagerSig, err := os.ReadFile(fx.Path(hello) + ".sig")
	if err != nil {
		t.Fatal(err)
	}
	p := NewPacman(t, keyring, []string{DeadMirror(t)})
	cases := []struct { // the accepted case last: it installs the package
		name string
		sig  []byte
		ok   bool
	}{
		{"packager and untrusted", cat(packagerSig, detachSign(t, keys["untrusted"], pkg)), false},
		{"packager and a signature of other bytes", cat(packagerSig, detachSign(t, second, []byte("other bytes"))), false},
		{"bad first, then packager", cat(detachSign(t, second, []byte("other bytes")), packagerSig), false},
		{"packager and second packager", cat(packagerSig, detachSign(t, second, pkg)), true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { //nolint:paralleltest // one pacman root, the accepting case last
			dir := TempDir(t, "multisig")
			file := filepath.Join(dir, hello.File)
			if err := os.WriteFile(file, pkg, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(file+".sig", c.sig, 0o644); err != nil {
				t.Fatal(err)
			}
			v := floconVerifyFile(t, keyring, file)
			out, err := p.Run("-U", file)
			pacmanOK := err == nil
			if pacmanOK != c.ok || v.Valid != c.ok {
				t.Fatalf("want accepted=%v: pacman %v, flocon %v (%s: %s)\npacman: %s", c.ok, pacmanOK, v.Valid,
					v.Reason, v.Error, out)
			}
			if c.ok && len(v.Signers) != 2 {
				t.Errorf("flocon verify lists %d signers, want 2", len(v.Signers))
			}
			if !c.ok {
				t.Logf("both refuse: flocon %s; pacman: %s", v.Reason, errorLines(out))
			}
		})
	}
}

type floconMultiVerdict struct {
	floconVerdict
	Signers []struct{ Fingerprint string } `json:"signers"`
}

func floconVerifyFile(t *testing.T, keyring, file string) floconMultiVerdict {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), Binary(t), "verify", "--json", "--keyring", keyring, file).Output()
	var v floconMultiVerdict
	if jerr := json.Unmarshal(out, &v); jerr != nil {
		t.Fatalf("flocon verify: %v, output %q", jerr, out)
	}
	if (err == nil) != v.Valid {
		t.Errorf("flocon verify: exit %v but valid=%v", err, v.Valid)
	}
	return v
}

func cat(b ...[]byte) []byte { return bytes.Join(b, nil) }

// fixtureSecretKeys reads make-repo.sh's exported secret keys by role.
func fixtureSecretKeys(t *testing.T, fx *Fixtures) map[string]*openpgp.Entity {
	t.Helper()
	f, err := os.Open(filepath.Join(fx.Dir, "keys", "secret-keys.gpg"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	list, err := openpgp.ReadKeyRing(f)
	if err != nil {
		t.Fatalf("read secret keys: %v", err)
	}
	byFpr := map[string]*openpgp.Entity{}
	for _, e := range list {
		byFpr[fingerprint(e)] = e
	}
	out := map[string]*openpgp.Entity{}
	for role, fpr := range fixtureFingerprints(t, fx) {
		if e, ok := byFpr[fpr]; ok && e.PrivateKey != nil {
			out[role] = e
		}
	}
	return out
}

func fingerprint(e *openpgp.Entity) string {
	const hex = "0123456789ABCDEF"
	var b []byte
	for _, c := range e.PrimaryKey.Fingerprint {
		b = append(b, hex[c>>4], hex[c&15])
	}
	return string(b)
}

func atConfig(at time.Time) *packet.Config {
	return &packet.Config{Time: func() time.Time { return at }, Algorithm: packet.PubKeyAlgoEdDSA}
}

// newCertifiedKey makes an ed25519 signing key at the fixture's key time,
// certified by masters the way make-repo.sh certifies its packager.
func newCertifiedKey(t *testing.T, name, email string, masters ...*openpgp.Entity) *openpgp.Entity {
	t.Helper()
	e, err := openpgp.NewEntity(name, "", email, atConfig(fixtureKeyTime))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range masters {
		if m == nil {
			t.Fatal("fixture master key missing from secret-keys.gpg")
		}
		for name := range e.Identities {
			if err := e.SignIdentity(name, m, atConfig(fixtureKeyTime)); err != nil {
				t.Fatalf("certify %s: %v", name, err)
			}
		}
	}
	return e
}

// keyringWith copies a keyring folder and appends e's public key to its
// NAME.gpg (a second armored block, as archlinux.gpg has many keys).
func keyringWith(t *testing.T, src string, e *openpgp.Entity) string {
	t.Helper()
	dst := TempDir(t, "keyring")
	matches, err := filepath.Glob(filepath.Join(src, "pactest*"))
	if err != nil || len(matches) == 0 {
		t.Fatalf("fixture keyring %s: %v", src, err)
	}
	for _, m := range matches {
		b, err := os.ReadFile(m)
		if err != nil {
			t.Fatal(err)
		}
		if filepath.Base(m) == "pactest.gpg" {
			var buf bytes.Buffer
			w, err := armor.Encode(&buf, openpgp.PublicKeyType, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := e.Serialize(w); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			b = append(append(b, '\n'), buf.Bytes()...)
		}
		if err := os.WriteFile(filepath.Join(dst, filepath.Base(m)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

func detachSign(t *testing.T, e *openpgp.Entity, data []byte) []byte {
	t.Helper()
	if e == nil {
		t.Fatal("signing key missing from secret-keys.gpg")
	}
	var out bytes.Buffer
	if err := openpgp.DetachSign(&out, e, bytes.NewReader(data), atConfig(fixtureSignTime)); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}
