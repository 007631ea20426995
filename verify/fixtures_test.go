package verify

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto"
	"crypto/dsa" //nolint:staticcheck // old Arch packager keys are DSA; the verifier must still read them
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// fixtureNow is the fixed "now" of every trust decision in the tests.
var fixtureNow = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// Fixture key names.
const (
	kMaster1    = "master1"
	kMaster2    = "master2"
	kMaster3    = "master3"
	kPackager   = "packager"    // ed25519, certified by 3 masters
	kRSA        = "rsa"         // RSA-2048, certified by 3 masters
	kSubkey     = "subkey"      // signs with an ed25519 signing subkey
	kDSA        = "dsa"         // DSA-1024 primary, certified by 3 masters
	kMarginal   = "marginal"    // certified by 2 masters only
	kUncert     = "uncertified" // no master certification
	kCertRev    = "certrevoked" // 3 certifications, one revoked by its master
	kRevoked    = "revoked"     // self-revoked and listed in -revoked, certified by 3
	kDisabled   = "disabled"    // certified by 3, listed in -revoked
	kExpired    = "expired"     // certified by 3, expired before fixtureNow
	kStranger   = "stranger"    // not in the keyring (only in a decoy *.gpg)
	kBinary     = "binary"      // valid key read from a second, binary keyring set
	kMasterFull = "masterfull"  // a master with full ownertrust (5)
	kByFull     = "byfull"      // certified by the full-trust master alone
	kSubRevoked = "subrevoked"  // valid key whose signing subkey is revoked
	kSubExpired = "subexpired"  // valid key whose signing subkey expired
	kRenewed    = "renewed"     // created a year before fixtureNow, self-signed again a month before
	keyringName = "testring"
)

type fixture struct {
	dir  string // keyring folder
	keys map[string]*openpgp.Entity
}

var (
	fixOnce sync.Once
	fix     *fixture
	fixErr  error
	fixRoot string // removed by TestMain
)

// getFixture builds the keyring once per test binary: key generation (RSA,
// DSA) is the slow part.
func getFixture(t testing.TB) *fixture {
	t.Helper()
	fixOnce.Do(func() {
		fixRoot, fixErr = os.MkdirTemp("", "flocon-verify-")
		if fixErr == nil {
			fix, fixErr = buildFixture(fixRoot)
		}
	})
	if fixErr != nil {
		t.Fatalf("build fixture: %v", fixErr)
	}
	return fix
}

func cfgAt(at time.Time) *packet.Config {
	return &packet.Config{Time: func() time.Time { return at }, Algorithm: packet.PubKeyAlgoEdDSA}
}

func newKey(name string, cfg *packet.Config) (*openpgp.Entity, error) {
	return openpgp.NewEntity(name, "flocon test", name+"@example.org", cfg)
}

func uidOf(e *openpgp.Entity) string {
	for n := range e.Identities {
		return n
	}
	return ""
}

func certify(e *openpgp.Entity, at time.Time, masters ...*openpgp.Entity) error {
	for _, m := range masters {
		if err := e.SignIdentity(uidOf(e), m, cfgAt(at)); err != nil {
			return err
		}
	}
	return nil
}

// revokeCert makes master's 0x30 certification revocation on e's user ID.
func revokeCert(e, master *openpgp.Entity, at time.Time) error {
	id := master.PrimaryKey.KeyId
	sig := &packet.Signature{
		Version: 4, SigType: packet.SigTypeCertificationRevocation, PubKeyAlgo: master.PrimaryKey.PubKeyAlgo,
		Hash: crypto.SHA256, CreationTime: at, IssuerKeyId: &id,
	}
	if err := sig.SignUserId(uidOf(e), e.PrimaryKey, master.PrivateKey, cfgAt(at)); err != nil {
		return err
	}
	ident := e.Identities[uidOf(e)]
	ident.Signatures = append(ident.Signatures, sig)
	return nil
}

// newDSAKey makes an entity whose primary key is DSA-1024 (old Arch keys).
func newDSAKey(name string, at time.Time) (*openpgp.Entity, error) {
	e, err := newKey(name, cfgAt(at))
	if err != nil {
		return nil, err
	}
	var priv dsa.PrivateKey
	if err := dsa.GenerateParameters(&priv.Parameters, rand.Reader, dsa.L1024N160); err != nil {
		return nil, err
	}
	if err := dsa.GenerateKey(&priv, rand.Reader); err != nil {
		return nil, err
	}
	e.PrivateKey = packet.NewDSAPrivateKey(at, &priv)
	e.PrimaryKey = &e.PrivateKey.PublicKey
	e.Subkeys = nil
	id := e.PrimaryKey.KeyId
	for _, ident := range e.Identities {
		ss := ident.SelfSignature
		ss.PubKeyAlgo, ss.IssuerKeyId, ss.Hash = packet.PubKeyAlgoDSA, &id, crypto.SHA256
		if err := ss.SignUserId(ident.Name, e.PrimaryKey, e.PrivateKey, cfgAt(at)); err != nil {
			return nil, err
		}
	}
	return e, nil
}

func buildFixture(root string) (*fixture, error) {
	f := &fixture{dir: filepath.Join(root, "keyring"), keys: map[string]*openpgp.Entity{}}
	made := fixtureNow.AddDate(0, -1, 0)
	old := fixtureNow.AddDate(-2, 0, 0)
	gen := func(name string, cfg *packet.Config) error {
		e, err := newKey(name, cfg)
		f.keys[name] = e
		return err
	}
	for _, n := range []string{kMaster1, kMaster2, kMaster3, kMasterFull} {
		if err := gen(n, cfgAt(fixtureNow.AddDate(-3, 0, 0))); err != nil {
			return nil, err
		}
	}
	for _, n := range []string{kPackager, kSubkey, kMarginal, kUncert, kCertRev, kRevoked, kDisabled, kStranger,
		kBinary, kByFull, kSubRevoked, kSubExpired} {
		if err := gen(n, cfgAt(made)); err != nil {
			return nil, err
		}
	}
	rsaCfg := &packet.Config{Time: func() time.Time { return made }, Algorithm: packet.PubKeyAlgoRSA, RSABits: 2048}
	if err := gen(kRSA, rsaCfg); err != nil {
		return nil, err
	}
	expCfg := cfgAt(old)
	expCfg.KeyLifetimeSecs = 365 * 24 * 3600
	if err := gen(kExpired, expCfg); err != nil {
		return nil, err
	}
	if err := gen(kRenewed, cfgAt(fixtureNow.AddDate(-1, 0, 0))); err != nil {
		return nil, err
	}
	if err := reSelfSign(f.keys[kRenewed], made); err != nil {
		return nil, err
	}
	dsaKey, err := newDSAKey(kDSA, made)
	if err != nil {
		return nil, err
	}
	f.keys[kDSA] = dsaKey
	if err := f.addSubkeys(made); err != nil {
		return nil, err
	}
	if err := f.certifyAll(made, old); err != nil {
		return nil, err
	}
	if err := f.keys[kRevoked].RevokeKey(packet.KeyRetired, "retired", cfgAt(made.Add(time.Hour))); err != nil {
		return nil, err
	}
	return f, f.writeKeyring()
}

// reSelfSign replaces the user ID self-signatures of e by ones made at at:
// before at the key has no valid self-signature.
func reSelfSign(e *openpgp.Entity, at time.Time) error {
	for _, ident := range e.Identities {
		ss := ident.SelfSignature
		ss.CreationTime = at
		if err := ss.SignUserId(ident.Name, e.PrimaryKey, e.PrivateKey, cfgAt(at)); err != nil {
			return err
		}
	}
	return nil
}

// addSubkeys gives signing subkeys to kSubkey, kSubRevoked (revoked after
// signing time) and kSubExpired (one-day lifetime).
func (f *fixture) addSubkeys(made time.Time) error {
	for _, n := range []string{kSubkey, kSubRevoked} {
		if err := f.keys[n].AddSigningSubkey(cfgAt(made)); err != nil {
			return err
		}
	}
	short := cfgAt(made)
	short.KeyLifetimeSecs = 24 * 3600
	if err := f.keys[kSubExpired].AddSigningSubkey(short); err != nil {
		return err
	}
	e := f.keys[kSubRevoked]
	return e.RevokeSubkey(&e.Subkeys[len(e.Subkeys)-1], packet.KeyRetired, "retired", cfgAt(made.Add(2*time.Hour)))
}

func (f *fixture) certifyAll(made, old time.Time) error {
	m := []*openpgp.Entity{f.keys[kMaster1], f.keys[kMaster2], f.keys[kMaster3]}
	at := made.Add(time.Minute)
	for _, n := range []string{kPackager, kRSA, kSubkey, kDSA, kCertRev, kRevoked, kDisabled, kBinary, kSubRevoked, kSubExpired, kRenewed} {
		if err := certify(f.keys[n], at, m...); err != nil {
			return fmt.Errorf("certify %s: %w", n, err)
		}
	}
	if err := certify(f.keys[kByFull], at, f.keys[kMasterFull]); err != nil {
		return err
	}
	if err := certify(f.keys[kMarginal], at, m[:2]...); err != nil {
		return err
	}
	if err := certify(f.keys[kExpired], old.Add(time.Minute), m...); err != nil {
		return err
	}
	return revokeCert(f.keys[kCertRev], m[0], at.Add(time.Hour))
}

// writeKeyring writes NAME.gpg as two armored blocks separated by text,
// NAME-trusted and NAME-revoked, a second binary set, and a decoy *.gpg
// without -trusted (like Debian's unrelated keyrings) holding the stranger.
func (f *fixture) writeKeyring() error {
	if err := os.MkdirAll(f.dir, 0o755); err != nil {
		return err
	}
	var main bytes.Buffer
	if err := f.armored(&main, kMaster1, kMaster2, kMaster3, kMasterFull, kPackager, kRSA, kByFull, kSubRevoked, kSubExpired, kRenewed); err != nil {
		return err
	}
	main.WriteString("\nThis comment between two blocks must be ignored.\n\n")
	if err := f.armored(&main, kSubkey, kDSA, kMarginal, kUncert, kCertRev, kRevoked, kDisabled, kExpired); err != nil {
		return err
	}
	var bin, decoy bytes.Buffer
	if err := f.keys[kBinary].Serialize(&bin); err != nil {
		return err
	}
	if err := f.keys[kStranger].Serialize(&decoy); err != nil {
		return err
	}
	var trusted strings.Builder
	for _, n := range []string{kMaster1, kMaster2, kMaster3} {
		fmt.Fprintf(&trusted, "%X:4:\n", f.keys[n].PrimaryKey.Fingerprint)
	}
	fmt.Fprintf(&trusted, "%X:5:\n", f.keys[kMasterFull].PrimaryKey.Fingerprint)
	files := map[string][]byte{
		keyringName + ".gpg":     main.Bytes(),
		keyringName + "-trusted": []byte(trusted.String()),
		keyringName + "-revoked": fmt.Appendf(nil, "%X\n%X\n", f.keys[kDisabled].PrimaryKey.Fingerprint,
			f.keys[kRevoked].PrimaryKey.Fingerprint),
		"extra.gpg":        bin.Bytes(),
		"extra-trusted":    nil,
		"debian-decoy.gpg": decoy.Bytes(),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(f.dir, name), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (f *fixture) armored(buf *bytes.Buffer, names ...string) error {
	w, err := armor.Encode(buf, openpgp.PublicKeyType, nil)
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := f.keys[n].Serialize(w); err != nil {
			return fmt.Errorf("serialize %s: %w", n, err)
		}
	}
	return w.Close()
}

// sign makes a detached binary signature by key over data, at signTime.
func (f *fixture) sign(t testing.TB, key string, data []byte, h crypto.Hash, signTime time.Time) []byte {
	t.Helper()
	cfg := cfgAt(signTime)
	cfg.DefaultHash = h
	var out bytes.Buffer
	if err := openpgp.DetachSign(&out, f.keys[key], bytes.NewReader(data), cfg); err != nil {
		t.Fatalf("sign with %s: %v", key, err)
	}
	return out.Bytes()
}

// signRaw makes a detached signature by key's primary key at signTime
// without go-crypto's checks of the key at that time: a signature older
// than its key, or made after its revocation.
func (f *fixture) signRaw(t testing.TB, key string, data []byte, signTime time.Time) []byte {
	t.Helper()
	e := f.keys[key]
	id := e.PrimaryKey.KeyId
	sig := &packet.Signature{Version: 4, SigType: packet.SigTypeBinary, PubKeyAlgo: e.PrimaryKey.PubKeyAlgo,
		Hash: crypto.SHA512, CreationTime: signTime, IssuerKeyId: &id}
	h, err := sig.PrepareSign(nil)
	if err != nil {
		t.Fatal(err)
	}
	h.Write(data)
	if err := sig.Sign(h, e.PrivateKey, cfgAt(signTime)); err != nil {
		t.Fatalf("sign with %s: %v", key, err)
	}
	var out bytes.Buffer
	if err := sig.Serialize(&out); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// makePackage builds a small package as makepkg lays it out: .BUILDINFO,
// .MTREE, .PKGINFO, then files, compressed by ext.
func makePackage(t testing.TB, name, version, arch, ext string) []byte {
	t.Helper()
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	pkginfo := fmt.Sprintf("# Generated by makepkg 6.0.2\npkgname = %s\npkgbase = %s\npkgver = %s\n"+
		"pkgdesc = test package\nurl = https://example.org\nbuilddate = 1700000000\npackager = Test <t@example.org>\n"+
		"size = 12\narch = %s\nlicense = MIT\n", name, name, version, arch)
	members := []struct{ name, body string }{
		{".BUILDINFO", "format = 2\npkgname = " + name + "\n"},
		{".MTREE", "#mtree\n"},
		{".PKGINFO", pkginfo},
		{"usr/bin/" + name, "#!/bin/sh\necho " + name + "\n"},
	}
	for _, m := range members {
		hdr := &tar.Header{Name: m.name, Mode: 0o644, Size: int64(len(m.body)), ModTime: time.Unix(1700000000, 0)}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(m.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return compressAs(t, raw.Bytes(), ext)
}

// tarMember is one file of a test archive.
type tarMember struct {
	name string
	body []byte
}

// tarOf is an uncompressed tar of members, in order.
func tarOf(t testing.TB, members ...tarMember) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, m := range members {
		if err := tw.WriteHeader(&tar.Header{Name: m.name, Mode: 0o644, Size: int64(len(m.body))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(m.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// zstdOf compresses raw as one zstd stream, on one encoder goroutine, with
// opts.
func zstdOf(t testing.TB, raw []byte, opts ...zstd.EOption) []byte {
	t.Helper()
	var out bytes.Buffer
	w, err := zstd.NewWriter(&out, append([]zstd.EOption{zstd.WithEncoderConcurrency(1)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(raw); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func compressAs(t testing.TB, raw []byte, ext string) []byte {
	t.Helper()
	var out bytes.Buffer
	var err error
	switch ext {
	case ".pkg.tar.zst":
		var w *zstd.Encoder
		if w, err = zstd.NewWriter(&out, zstd.WithEncoderConcurrency(1)); err == nil {
			_, err = w.Write(raw)
			err = errJoin(err, w.Close())
		}
	case ".pkg.tar.xz":
		var w *xz.Writer
		if w, err = xz.NewWriter(&out); err == nil {
			_, err = w.Write(raw)
			err = errJoin(err, w.Close())
		}
	case ".pkg.tar.gz":
		w := gzip.NewWriter(&out)
		_, err = w.Write(raw)
		err = errJoin(err, w.Close())
	case ".pkg.tar":
		out.Write(raw)
	default:
		t.Fatalf("unknown extension %s", ext)
	}
	if err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func errJoin(a, b error) error {
	if a != nil {
		return a
	}
	return b
}
