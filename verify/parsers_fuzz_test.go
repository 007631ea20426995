package verify

import (
	"bytes"
	"errors"
	"log/slog"
	"regexp"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ulikunitz/xz"
)

// FuzzReadPKGINFO: any bytes a peer or a mirror sends as a package give a
// .PKGINFO with the three identity fields, or an error wrapping
// ErrNoPKGINFO; never a panic. The raw key = value parser is fuzzed on the
// same input.
func FuzzReadPKGINFO(f *testing.F) {
	pkginfo := "pkgname = hello\npkgbase = hello\npkgver = 1:1.0-1\narch = x86_64\n"
	raw := tarOf(f, tarMember{".PKGINFO", []byte(pkginfo)})
	f.Add(raw)
	f.Add(compressAs(f, raw, ".pkg.tar.gz"))
	f.Add(compressAs(f, raw, ".pkg.tar.zst"))
	f.Add(smallXZ(f, raw)) // a 4 KiB dictionary: the reader allocates what the stream declares
	f.Add([]byte(pkginfo))
	f.Add([]byte("BZh91AY&SY"))
	f.Fuzz(func(t *testing.T, b []byte) {
		info, err := ReadPKGINFO(bytes.NewReader(b))
		checkPKGINFO(t, info, err)
		info, err = parsePKGINFO(b)
		checkPKGINFO(t, info, err)
	})
}

func checkPKGINFO(t *testing.T, info PKGINFO, err error) {
	t.Helper()
	if err != nil {
		if !errors.Is(err, ErrNoPKGINFO) {
			t.Fatalf("error %v does not wrap ErrNoPKGINFO", err)
		}
		return
	}
	if info.Name == "" || info.Version == "" || info.Arch == "" {
		t.Fatalf("accepted %+v", info)
	}
}

func smallXZ(t testing.TB, raw []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := xz.WriterConfig{DictCap: 4096}.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(raw); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

var fingerprintRE = regexp.MustCompile(`^([0-9A-F]{40}|[0-9A-F]{64})$`)

// FuzzParseKeys: any keyring file (armored blocks or binary packets) gives
// keys, each with a fingerprint, or an error; never a panic. Keys that
// cannot be used are kept without an entity, and no verdict panics on them.
func FuzzParseKeys(f *testing.F) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	e, err := openpgp.NewEntity("fuzz", "", "fuzz@example.org", cfgAt(at))
	if err != nil {
		f.Fatal(err)
	}
	var bin, arm bytes.Buffer
	if err := e.Serialize(&bin); err != nil {
		f.Fatal(err)
	}
	w, err := armor.Encode(&arm, openpgp.PublicKeyType, nil)
	if err != nil {
		f.Fatal(err)
	}
	if err := e.Serialize(w); err != nil {
		f.Fatal(err)
	}
	if err := w.Close(); err != nil {
		f.Fatal(err)
	}
	f.Add(bin.Bytes())
	f.Add(arm.Bytes())
	f.Add(append(append(arm.Bytes(), "\ntext between blocks\n"...), arm.Bytes()...))
	f.Add([]byte(armorBegin + "\n\n=\n-----END PGP PUBLIC KEY BLOCK-----\n"))
	logger := slog.New(slog.DiscardHandler)
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, err := parseKeys(b, logger)
		if err != nil {
			return
		}
		k := EmptyKeyring()
		for _, e := range entries {
			if !fingerprintRE.MatchString(e.fpr) {
				t.Fatalf("key with fingerprint %q", e.fpr)
			}
			k.keys = append(k.keys, e)
		}
		k.verifyMasterCerts()
		for _, info := range k.Keys(at) {
			if info.Verdict == "" {
				t.Fatalf("key %s without a verdict", info.Fingerprint)
			}
		}
	})
}
