package verify

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"math/rand/v2"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) {
		if fixRoot != "" {
			_ = os.RemoveAll(fixRoot)
		}
	}))
}

var sentinels = []error{
	ErrDigestMismatch, ErrSizeMismatch, ErrBadSignature, ErrNoSignature, ErrUnknownKey, ErrUntrustedKey,
	ErrRevokedKey, ErrDisabledKey, ErrExpiredKey, ErrIdentityMismatch, ErrBadFilename,
}

// checkSentinel asserts that err wraps want and no other sentinel.
func checkSentinel(t *testing.T, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("err = %v, want %v", err, want)
	}
	for _, s := range sentinels {
		if s != want && errors.Is(err, s) {
			t.Fatalf("err = %v wraps %v besides %v", err, s, want)
		}
	}
}

func loadFixtureKeyring(t *testing.T) *Keyring {
	t.Helper()
	kr, err := LoadKeyring(getFixture(t).dir, WithClock(func() time.Time { return fixtureNow }))
	if err != nil {
		t.Fatalf("LoadKeyring: %v", err)
	}
	return kr
}

func cidOf(t *testing.T, b []byte) cid.Cid {
	t.Helper()
	s := sha256.Sum256(b)
	c, err := CIDFromSHA256(s[:])
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestKeysVerdicts(t *testing.T) {
	t.Parallel()
	f := getFixture(t)
	kr := loadFixtureKeyring(t)
	got := map[string]KeyInfo{}
	for _, k := range kr.Keys(fixtureNow) {
		got[k.Fingerprint] = k
	}
	tests := []struct {
		key    string
		want   KeyVerdict
		master bool
	}{
		{kMaster1, KeyValid, true}, {kMaster2, KeyValid, true}, {kMaster3, KeyValid, true}, {kMasterFull, KeyValid, true},
		{kByFull, KeyValid, false}, {kSubRevoked, KeyValid, false}, {kSubExpired, KeyValid, false},
		{kPackager, KeyValid, false}, {kRSA, KeyValid, false}, {kSubkey, KeyValid, false},
		{kDSA, KeyValid, false}, {kBinary, KeyValid, false},
		{kMarginal, KeyMarginal, false}, {kCertRev, KeyMarginal, false},
		{kUncert, KeyUntrusted, false}, {kRevoked, KeyRevoked, false},
		{kDisabled, KeyDisabled, false}, {kExpired, KeyExpired, false}, {kRenewed, KeyValid, false},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			t.Parallel()
			fpr := fmt.Sprintf("%X", f.keys[tt.key].PrimaryKey.Fingerprint)
			k, ok := got[fpr]
			if !ok {
				t.Fatalf("key %s (%s) not listed", tt.key, fpr)
			}
			if k.Verdict != tt.want || k.Master != tt.master {
				t.Errorf("verdict %s master %v, want %s master %v", k.Verdict, k.Master, tt.want, tt.master)
			}
			if k.UID != uidOf(f.keys[tt.key]) {
				t.Errorf("uid %q, want %q", k.UID, uidOf(f.keys[tt.key]))
			}
		})
	}
	stranger := fmt.Sprintf("%X", f.keys[kStranger].PrimaryKey.Fingerprint)
	if _, ok := got[stranger]; ok {
		t.Error("key from a *.gpg without -trusted was loaded")
	}
	if len(got) != len(tests) {
		t.Errorf("%d keys listed, want %d", len(got), len(tests))
	}
	// before the expired key's end of life it was valid: expiry is evaluated at "now"
	for _, k := range kr.Keys(fixtureNow.AddDate(-2, 0, 7)) {
		if k.Fingerprint == fmt.Sprintf("%X", f.keys[kExpired].PrimaryKey.Fingerprint) && k.Verdict != KeyValid {
			t.Errorf("expired key at a time it was live: %s, want valid", k.Verdict)
		}
	}
}

func TestLoadKeyringErrors(t *testing.T) {
	t.Parallel()
	empty := t.TempDir()
	noTrusted := t.TempDir()
	if err := os.WriteFile(noTrusted+"/foo.gpg", []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	badTrusted := t.TempDir()
	for name, body := range map[string]string{"x.gpg": "", "x-trusted": "not a fingerprint line\n"} {
		if err := os.WriteFile(badTrusted+"/"+name, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, dir := range []string{empty, noTrusted, badTrusted, empty + "/missing"} {
		if _, err := LoadKeyring(dir); !errors.Is(err, ErrKeyring) {
			t.Errorf("LoadKeyring(%s) = %v, want ErrKeyring", dir, err)
		}
	}
}

// verifyCase is one stream to verify and its expected verdict.
type verifyCase struct {
	name      string
	data      []byte
	exp       Expect
	wantEarly error // NewVerifier must refuse with this sentinel
	wantErr   error // Finish must refuse with this sentinel
	signer    string
	viaSubkey bool
}

func verifyCases(t *testing.T) []verifyCase {
	f := getFixture(t)
	signAt := fixtureNow.AddDate(0, 0, -7)
	pkg := func(name, ver, ext string) ([]byte, string) {
		return makePackage(t, name, ver, "x86_64", ext), name + "-" + ver + "-x86_64" + ext
	}
	hello, helloName := pkg("hello", "1.0-1", ".pkg.tar.zst")
	helloXZ, helloXZName := pkg("hello", "1:2.0.r3.g1a2b-2", ".pkg.tar.xz")
	helloGZ, helloGZName := pkg("hello-gz", "0.9-1", ".pkg.tar.gz")
	other, otherName := pkg("other", "2.0-1", ".pkg.tar.zst")
	old, _ := pkg("hello", "0.9-1", ".pkg.tar.zst")
	corrupt := bytes.Clone(hello)
	corrupt[len(corrupt)/2] ^= 0x40
	sig := func(key string, data []byte, h crypto.Hash) []byte { return f.sign(t, key, data, h, signAt) }
	withCID := func(data []byte, name string, s []byte) Expect {
		return Expect{CID: cidOf(t, data), Size: int64(len(data)), Filename: name, Signature: s}
	}
	noCID := func(data []byte, name string, s []byte) Expect {
		return Expect{Size: -1, Filename: name, Signature: s}
	}
	expiredSig := f.sign(t, kExpired, hello, crypto.SHA256, fixtureNow.AddDate(-2, 0, 1))
	revokedSig := f.sign(t, kRevoked, hello, crypto.SHA256, f.keys[kRevoked].PrimaryKey.CreationTime.Add(time.Minute))
	subMade := f.keys[kSubRevoked].Subkeys[len(f.keys[kSubRevoked].Subkeys)-1].PublicKey.CreationTime
	subRevokedSig := f.sign(t, kSubRevoked, hello, crypto.SHA512, subMade.Add(time.Hour))
	subExpiredSig := f.sign(t, kSubExpired, hello, crypto.SHA512, subMade.Add(time.Hour))
	optional := withCID(hello, helloName, nil)
	optional.Policy = SigOptional
	optionalBad := withCID(hello, helloName, sig(kUncert, hello, crypto.SHA512))
	optionalBad.Policy = SigOptional
	never := withCID(hello, helloName, []byte("garbage"))
	never.Policy = SigNever
	neverRenamed := noCID(hello, otherName, nil)
	neverRenamed.Policy = SigNever
	renamedDB := withCID(hello, otherName, sig(kPackager, hello, crypto.SHA512))
	renamedDB.CheckIdentity = true
	identityDB := withCID(hello, helloName, sig(kPackager, hello, crypto.SHA512))
	identityDB.CheckIdentity = true
	short := withCID(hello, helloName, sig(kPackager, hello, crypto.SHA512))
	short.Size = int64(len(hello)) + 1
	long := withCID(hello, helloName, sig(kPackager, hello, crypto.SHA512))
	long.Size = int64(len(hello)) - 1
	return []verifyCase{
		{name: "ed25519 sha512", data: hello, exp: withCID(hello, helloName, sig(kPackager, hello, crypto.SHA512)), signer: kPackager},
		{name: "ed25519 sha256 one pass", data: hello, exp: withCID(hello, helloName, sig(kPackager, hello, crypto.SHA256)), signer: kPackager},
		{name: "ed25519 sha384", data: hello, exp: withCID(hello, helloName, sig(kPackager, hello, crypto.SHA384)), signer: kPackager},
		{name: "ed25519 sha224", data: hello, exp: withCID(hello, helloName, sig(kPackager, hello, crypto.SHA224)), signer: kPackager},
		{name: "rsa sha256", data: hello, exp: withCID(hello, helloName, sig(kRSA, hello, crypto.SHA256)), signer: kRSA},
		{name: "dsa", data: hello, exp: withCID(hello, helloName, sig(kDSA, hello, crypto.SHA256)), signer: kDSA},
		{name: "signing subkey", data: hello, exp: withCID(hello, helloName, sig(kSubkey, hello, crypto.SHA512)), signer: kSubkey, viaSubkey: true},
		{name: "key from binary keyring", data: hello, exp: withCID(hello, helloName, sig(kBinary, hello, crypto.SHA512)), signer: kBinary},
		{name: "no db entry zst", data: hello, exp: noCID(hello, helloName, sig(kPackager, hello, crypto.SHA512)), signer: kPackager},
		{name: "no db entry xz epoch", data: helloXZ, exp: noCID(helloXZ, helloXZName, sig(kPackager, helloXZ, crypto.SHA512)), signer: kPackager},
		{name: "no db entry gz", data: helloGZ, exp: noCID(helloGZ, helloGZName, sig(kRSA, helloGZ, crypto.SHA256)), signer: kRSA},
		{name: "certified by one full-trust master", data: hello, exp: withCID(hello, helloName, sig(kByFull, hello, crypto.SHA512)), signer: kByFull},
		{name: "revoked signing subkey", exp: withCID(hello, helloName, subRevokedSig), wantEarly: ErrRevokedKey},
		{name: "expired signing subkey", exp: withCID(hello, helloName, subExpiredSig), wantEarly: ErrExpiredKey},
		{name: "marginal key", exp: withCID(hello, helloName, sig(kMarginal, hello, crypto.SHA512)), wantEarly: ErrUntrustedKey},
		{name: "uncertified key", exp: withCID(hello, helloName, sig(kUncert, hello, crypto.SHA512)), wantEarly: ErrUntrustedKey},
		{name: "certification revoked", exp: withCID(hello, helloName, sig(kCertRev, hello, crypto.SHA512)), wantEarly: ErrUntrustedKey},
		{name: "revoked key", exp: withCID(hello, helloName, revokedSig), wantEarly: ErrRevokedKey},
		{name: "disabled key", exp: withCID(hello, helloName, sig(kDisabled, hello, crypto.SHA512)), wantEarly: ErrDisabledKey},
		{name: "expired key", exp: withCID(hello, helloName, expiredSig), wantEarly: ErrExpiredKey},
		{name: "key outside keyring", exp: withCID(hello, helloName, sig(kStranger, hello, crypto.SHA512)), wantEarly: ErrUnknownKey},
		{name: "sha1 signature", exp: withCID(hello, helloName, sha1Sig(t, sig(kPackager, hello, crypto.SHA256))), wantEarly: ErrBadSignature},
		{name: "garbage signature", exp: withCID(hello, helloName, []byte("not a signature")), wantEarly: ErrBadSignature},
		{name: "missing signature", exp: withCID(hello, helloName, nil), wantEarly: ErrNoSignature},
		{name: "bad filename without cid", exp: noCID(hello, "hello.tar", sig(kPackager, hello, crypto.SHA512)), wantEarly: ErrBadFilename},
		{name: "corrupted with cid", data: corrupt, exp: withCID(hello, helloName, sig(kPackager, hello, crypto.SHA512)), wantErr: ErrDigestMismatch},
		{name: "corrupted without cid", data: corrupt, exp: noCID(hello, helloName, sig(kPackager, hello, crypto.SHA512)), wantErr: ErrBadSignature},
		{name: "signature of another file", data: hello, exp: withCID(hello, helloName, sig(kPackager, other, crypto.SHA512)), wantErr: ErrBadSignature},
		{name: "renamed to another package", data: hello, exp: noCID(hello, otherName, sig(kPackager, hello, crypto.SHA512)), wantErr: ErrIdentityMismatch},
		{name: "renamed with a db entry", data: hello, exp: renamedDB, wantErr: ErrIdentityMismatch},
		{name: "db entry and identity", data: hello, exp: identityDB, signer: kPackager},
		{name: "downgrade under newer name", data: old, exp: noCID(old, helloName, sig(kPackager, old, crypto.SHA512)), wantErr: ErrIdentityMismatch},
		{name: "other arch name", data: hello, exp: noCID(hello, "hello-1.0-1-aarch64.pkg.tar.zst", sig(kPackager, hello, crypto.SHA512)), wantErr: ErrIdentityMismatch},
		{name: "not a package", data: []byte("plain bytes"), exp: noCID(nil, helloName, sig(kPackager, []byte("plain bytes"), crypto.SHA512)), wantErr: ErrIdentityMismatch},
		{name: "stream too short", data: hello, exp: short, wantErr: ErrSizeMismatch},
		{name: "stream too long", data: hello, exp: long, wantErr: ErrSizeMismatch},
		{name: "optional absent", data: hello, exp: optional},
		{name: "optional present but untrusted", exp: optionalBad, wantEarly: ErrUntrustedKey},
		{name: "never ignores signature", data: hello, exp: never},
		{name: "never still checks identity", data: hello, exp: neverRenamed, wantErr: ErrIdentityMismatch},
	}
}

func TestVerifier(t *testing.T) {
	t.Parallel()
	f := getFixture(t)
	kr := loadFixtureKeyring(t)
	for _, tt := range verifyCases(t) {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v, err := NewVerifier(kr, tt.exp)
			if tt.wantEarly != nil {
				checkSentinel(t, err, tt.wantEarly)
				return
			}
			if err != nil {
				t.Fatalf("NewVerifier: %v", err)
			}
			res, err := writeChunks(v, tt.data, rand.New(rand.NewPCG(1, 2)))
			if tt.wantErr != nil {
				checkSentinel(t, err, tt.wantErr)
				return
			}
			if err != nil {
				t.Fatalf("Finish: %v", err)
			}
			checkResult(t, f, tt, res)
		})
	}
}

func checkResult(t *testing.T, f *fixture, tt verifyCase, res Result) {
	t.Helper()
	if res.CID != cidOf(t, tt.data) || res.Size != int64(len(tt.data)) {
		t.Errorf("result %v/%d, want %v/%d", res.CID, res.Size, cidOf(t, tt.data), len(tt.data))
	}
	if checked := !tt.exp.CID.Defined() || tt.exp.CheckIdentity; checked {
		pf, err := ParsePkgFilename(tt.exp.Filename)
		if err != nil || res.Identity == nil || !res.Identity.Matches(pf) {
			t.Errorf("identity %+v, want the one of %s", res.Identity, tt.exp.Filename)
		}
	} else if res.Identity != nil {
		t.Errorf("identity %+v without an identity check", res.Identity)
	}
	if tt.signer == "" {
		if res.Signer != nil {
			t.Errorf("signer %+v, want none", res.Signer)
		}
		return
	}
	want := fmt.Sprintf("%X", f.keys[tt.signer].PrimaryKey.Fingerprint)
	if res.Signer == nil || res.Signer.Fingerprint != want || res.Signer.UID != uidOf(f.keys[tt.signer]) {
		t.Fatalf("signer %+v, want %s", res.Signer, want)
	}
	if (res.Signer.SubKey != "") != tt.viaSubkey {
		t.Errorf("signer subkey %q, want via subkey %v", res.Signer.SubKey, tt.viaSubkey)
	}
}

// writeChunks writes data in random-sized chunks, stopping at the first
// Write error like io.Copy would, then finishes.
func writeChunks(v *Verifier, data []byte, rng *rand.Rand) (Result, error) {
	for len(data) > 0 {
		n := min(len(data), 1+rng.IntN(4096))
		if rng.IntN(8) == 0 {
			n = 1
		}
		if _, err := v.Write(data[:n]); err != nil {
			break
		}
		data = data[n:]
	}
	return v.Finish()
}

// TestVerifierChunking: any chunking of the stream gives the same verdict.
func TestVerifierChunking(t *testing.T) {
	t.Parallel()
	kr := loadFixtureKeyring(t)
	for _, tt := range verifyCases(t) {
		if tt.wantEarly != nil {
			continue
		}
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var first error
			for seed := range uint64(6) {
				v, err := NewVerifier(kr, tt.exp)
				if err != nil {
					t.Fatal(err)
				}
				var res Result
				if seed == 0 { // one single Write
					if _, err = v.Write(tt.data); err == nil {
						res, err = v.Finish()
					} else {
						_, err = v.Finish()
					}
				} else {
					res, err = writeChunks(v, tt.data, rand.New(rand.NewPCG(seed, seed)))
				}
				if seed == 0 {
					first = err
				} else if (err == nil) != (first == nil) || (err != nil && err.Error() != first.Error()) {
					t.Fatalf("seed %d: %v, single write: %v", seed, err, first)
				}
				if err == nil && res.Size != int64(len(tt.data)) {
					t.Fatalf("seed %d: size %d", seed, res.Size)
				}
			}
		})
	}
}

// TestVerifierAbandon: a verifier dropped mid-stream (Close) or closed
// twice, or finished and closed, leaves no goroutine (goleak in TestMain).
func TestVerifierAbandon(t *testing.T) {
	t.Parallel()
	getFixture(t)
	pkg := makePackage(t, "hello", "1.0-1", "x86_64", ".pkg.tar.zst")
	exp := Expect{Size: -1, Filename: "hello-1.0-1-x86_64.pkg.tar.zst", Policy: SigNever}
	for _, n := range []int{0, 10, len(pkg) / 2, len(pkg)} {
		v, err := NewVerifier(nil, exp)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Write(pkg[:n]); err != nil {
			t.Fatal(err)
		}
		if n == len(pkg) {
			if _, err := v.Finish(); err != nil {
				t.Fatal(err)
			}
		}
		if err := v.Close(); err != nil {
			t.Fatal(err)
		}
		if err := v.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestVerifierTimeOfCheck: the key's expiry is evaluated when verifying, not
// when the keyring was loaded.
func TestVerifierTimeOfCheck(t *testing.T) {
	t.Parallel()
	f := getFixture(t)
	kr := loadFixtureKeyring(t)
	hello := makePackage(t, "hello", "1.0-1", "x86_64", ".pkg.tar.zst")
	signAt := fixtureNow.AddDate(-2, 0, 1)
	exp := Expect{CID: cidOf(t, hello), Size: int64(len(hello)), Filename: "hello-1.0-1-x86_64.pkg.tar.zst",
		Signature: f.sign(t, kExpired, hello, crypto.SHA256, signAt)}
	v, err := NewVerifierAt(kr, exp, signAt.Add(time.Hour))
	if err != nil {
		t.Fatalf("while the key was live: %v", err)
	}
	if _, err := v.Write(hello); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Finish(); err != nil {
		t.Fatalf("while the key was live: %v", err)
	}
	_, err = NewVerifierAt(kr, exp, fixtureNow)
	checkSentinel(t, err, ErrExpiredKey)
}

func TestDigestMismatchEvidence(t *testing.T) {
	t.Parallel()
	want := []byte("abc")
	exp := Expect{CID: cidOf(t, want), Size: -1, Filename: "x", Policy: SigNever}
	v, err := NewVerifier(nil, exp)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Write([]byte("abd")); err != nil {
		t.Fatal(err)
	}
	_, err = v.Finish()
	var dm *DigestMismatchError
	if !errors.As(err, &dm) {
		t.Fatalf("err = %v, want *DigestMismatchError", err)
	}
	wantSum, gotSum := sha256.Sum256(want), sha256.Sum256([]byte("abd"))
	if !bytes.Equal(dm.Want, wantSum[:]) || !bytes.Equal(dm.Got, gotSum[:]) {
		t.Errorf("evidence want %x got %x", dm.Want, dm.Got)
	}
	checkSentinel(t, err, ErrDigestMismatch)
}

// sha1Sig rewrites the hash algorithm of a v4 signature packet to SHA-1
// (go-crypto refuses to make SHA-1 signatures; old tools did).
func sha1Sig(t *testing.T, sig []byte) []byte {
	t.Helper()
	out := bytes.Clone(sig)
	if out[0] != 0xc2 || out[1] >= 192 || out[2] != 4 || out[5] != 8 {
		t.Fatalf("unexpected signature packet layout % x", out[:6])
	}
	out[5] = 2 // SHA-1
	return out
}

// TestVerifierDroppedIsCollected: a verifier dropped mid-stream without
// Close ends its .PKGINFO reader once collected.
func TestVerifierDroppedIsCollected(t *testing.T) {
	t.Parallel()
	pkg := makePackage(t, "hello", "1.0-1", "x86_64", ".pkg.tar.zst")
	exp := Expect{Size: -1, Filename: "hello-1.0-1-x86_64.pkg.tar.zst", Policy: SigNever}
	done := func() chan struct{} {
		v, err := NewVerifier(nil, exp)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Write(pkg[:10]); err != nil {
			t.Fatal(err)
		}
		return v.ident.done
	}()
	// Only bounds a failure: with -race on a loaded machine a full GC per
	// turn can take long, and the cleanup goroutine runs after it.
	deadline := time.After(time.Minute)
	for {
		runtime.GC()
		select {
		case <-done:
			return
		case <-deadline:
			t.Fatal("the .PKGINFO reader of a dropped verifier is still running")
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// TestVerifierParallelSigHash: chunks big enough for the signature hash to
// run beside the sha256 give the same verdicts as small ones, for a SHA-512
// signature over the data and over other bytes.
func TestVerifierParallelSigHash(t *testing.T) {
	t.Parallel()
	f := getFixture(t)
	kr := loadFixtureKeyring(t)
	data := bytes.Repeat([]byte("flocon parallel hashing "), 40_000) // ~960 KB
	sum := sha256.Sum256(data)
	c, err := CIDFromSHA256(sum[:])
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		sig     []byte
		wantErr error
	}{
		{"signature over the data", f.sign(t, kPackager, data, crypto.SHA512, fixtureNow), nil},
		{"signature over other bytes", f.sign(t, kPackager, append([]byte("x"), data...), crypto.SHA512, fixtureNow), ErrBadSignature},
	}
	for _, tt := range tests {
		for _, chunk := range []int{parallelMin - 1, parallelMin, 3 * parallelMin, len(data)} {
			t.Run(fmt.Sprintf("%s/chunk %d", tt.name, chunk), func(t *testing.T) {
				t.Parallel()
				v, err := NewVerifier(kr, Expect{CID: c, Size: int64(len(data)), Filename: "x-1-1-any.pkg.tar.zst", Signature: tt.sig})
				if err != nil {
					t.Fatal(err)
				}
				for off := 0; off < len(data); off += chunk {
					if _, err := v.Write(data[off:min(off+chunk, len(data))]); err != nil {
						t.Fatal(err)
					}
				}
				_, err = v.Finish()
				if (tt.wantErr == nil && err != nil) || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
					t.Fatalf("Finish = %v, want %v", err, tt.wantErr)
				}
			})
		}
	}
}

// sumOf is the sha256 a verifier's writer would have hashed over b.
func sumOf(b []byte) hash.Hash {
	h := sha256.New()
	h.Write(b)
	return h
}

// TestVerifierSumByWriter: a verifier whose writer hashes the file gives,
// with the writer's sha256, the verdict Finish gives; the writer's digest
// is what is checked (one over other bytes fails the CID or the
// signature), it is left as it was, and the two finishes are not mixed up.
func TestVerifierSumByWriter(t *testing.T) {
	t.Parallel()
	kr := loadFixtureKeyring(t)
	for _, tt := range verifyCases(t) {
		if tt.wantEarly != nil {
			continue
		}
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v, err := NewVerifier(kr, tt.exp)
			if err != nil {
				t.Fatal(err)
			}
			want, wantErr := writeChunks(v, tt.data, rand.New(rand.NewPCG(3, 4)))

			v, err = NewVerifier(kr, tt.exp)
			if err != nil {
				t.Fatal(err)
			}
			v.SumByWriter()
			for off := 0; off < len(tt.data); off += 1000 {
				if _, err := v.Write(tt.data[off:min(off+1000, len(tt.data))]); err != nil {
					break
				}
			}
			sum := sumOf(tt.data)
			got, err := v.FinishWithSum(sum)
			if (err == nil) != (wantErr == nil) || (err != nil && err.Error() != wantErr.Error()) {
				t.Fatalf("FinishWithSum = %v, Finish = %v", err, wantErr)
			}
			if err == nil && (got.CID != want.CID || got.Size != want.Size || got.Signer == nil != (want.Signer == nil)) {
				t.Fatalf("FinishWithSum = %+v, Finish = %+v", got, want)
			}
			if h := sha256.Sum256(tt.data); !bytes.Equal(sum.Sum(nil), h[:]) {
				t.Error("FinishWithSum changed the writer's hash state")
			}
			if wantErr != nil || len(tt.data) == 0 {
				return
			}
			// The same bytes through Write, another digest from the writer.
			v, err = NewVerifier(kr, tt.exp)
			if err != nil {
				t.Fatal(err)
			}
			v.SumByWriter()
			if _, err := v.Write(tt.data); err != nil {
				t.Fatal(err)
			}
			other := append([]byte(nil), tt.data...)
			other[len(other)-1] ^= 1
			_, err = v.FinishWithSum(sumOf(other))
			switch {
			case tt.exp.CID.Defined():
				checkSentinel(t, err, ErrDigestMismatch)
			case sharesSHA256(t, tt.exp.Signature):
				checkSentinel(t, err, ErrBadSignature)
			case err != nil:
				// a signature of another hash was made over what Write saw
				t.Fatalf("FinishWithSum with another sha256 and no CID: %v", err)
			}
		})
	}
	t.Run("misuse", func(t *testing.T) {
		t.Parallel()
		exp := Expect{Size: -1, Filename: "x-1-1-any.pkg.tar.zst", Policy: SigNever}
		v, err := NewVerifier(kr, exp)
		if err != nil {
			t.Fatal(err)
		}
		v.SumByWriter()
		_, err = v.Finish()
		checkSentinel(t, err, ErrDigestMismatch)
		if v, err = NewVerifier(kr, exp); err != nil {
			t.Fatal(err)
		}
		_, err = v.FinishWithSum(sha256.New())
		checkSentinel(t, err, ErrDigestMismatch)
	})
}

// sharesSHA256 reports whether a .sig's first signature hashes with SHA-256
// (the one the file's sha256 is shared with).
func sharesSHA256(t *testing.T, sig []byte) bool {
	t.Helper()
	if len(sig) == 0 {
		return false
	}
	sigs, err := ParseSignatures(sig)
	if err != nil {
		t.Fatal(err)
	}
	return sigs[0].Hash == crypto.SHA256 && sigs[0].Version == 4
}

// TestVerifierKeptByWriter: a verifier whose writer keeps a small body
// gives, reading .PKGINFO from the writer's bytes, the verdict Finish
// gives, keeps no copy of its own, and refuses the identity when the
// writer's bytes are missing or are not as many as were written.
func TestVerifierKeptByWriter(t *testing.T) {
	t.Parallel()
	kr := loadFixtureKeyring(t)
	kept := 0
	for _, tt := range verifyCases(t) {
		if tt.wantEarly != nil {
			continue
		}
		v, err := NewVerifier(kr, tt.exp)
		if err != nil {
			t.Fatal(err)
		}
		if v.ident == nil || !v.ident.inline {
			continue // no identity, or read while it streams
		}
		kept++
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			want, wantErr := writeChunks(v, tt.data, rand.New(rand.NewPCG(5, 6)))
			finish := func(by func(v *Verifier) (Result, error)) (*Verifier, Result, error) {
				v, err := NewVerifier(kr, tt.exp)
				if err != nil {
					t.Fatal(err)
				}
				v.SumByWriter()
				v.KeptByWriter()
				for off := 0; off < len(tt.data); off += 1000 {
					if _, err := v.Write(tt.data[off:min(off+1000, len(tt.data))]); err != nil {
						break
					}
				}
				if v.ident.held != nil {
					t.Fatal("the verifier kept a copy of the writer's bytes")
				}
				res, err := by(v)
				return v, res, err
			}
			_, got, err := finish(func(v *Verifier) (Result, error) { return v.FinishWithKept(sumOf(tt.data), tt.data) })
			if (err == nil) != (wantErr == nil) || (err != nil && err.Error() != wantErr.Error()) {
				t.Fatalf("FinishWithKept = %v, Finish = %v", err, wantErr)
			}
			if err == nil && (got.CID != want.CID || got.Identity == nil || *got.Identity != *want.Identity) {
				t.Fatalf("FinishWithKept = %+v, Finish = %+v", got, want)
			}
			if wantErr != nil || len(tt.data) == 0 {
				return
			}
			_, _, err = finish(func(v *Verifier) (Result, error) { return v.FinishWithSum(sumOf(tt.data)) })
			checkSentinel(t, err, ErrIdentityMismatch)
			// one byte more than was written: .PKGINFO would still be found
			_, _, err = finish(func(v *Verifier) (Result, error) {
				return v.FinishWithKept(sumOf(tt.data), append(bytes.Clone(tt.data), 0))
			})
			checkSentinel(t, err, ErrIdentityMismatch)
		})
	}
	if kept == 0 {
		t.Fatal("no case reads its identity at the verdict")
	}
}
