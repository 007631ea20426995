package verify

import (
	"bytes"
	"crypto"
	"fmt"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
)

// TestSeveralSignatures: a .sig holding several signatures is accepted only
// when every one of them is valid and made by a trusted key, as pacman
// (libalpm's _alpm_process_siglist) decides; Result.Signers lists them all.
func TestSeveralSignatures(t *testing.T) {
	t.Parallel()
	f := getFixture(t)
	kr := loadFixtureKeyring(t)
	hello := makePackage(t, "hello", "1.0-1", "x86_64", ".pkg.tar.zst")
	other := makePackage(t, "other", "1.0-1", "x86_64", ".pkg.tar.zst")
	signAt := fixtureNow.AddDate(0, 0, -7)
	sig := func(key string, data []byte, h crypto.Hash) []byte { return f.sign(t, key, data, h, signAt) }
	cat := func(sigs ...[]byte) []byte { return bytes.Join(sigs, nil) }
	many := make([][]byte, maxSignatures+1)
	for i := range many {
		many[i] = sig(kPackager, hello, crypto.SHA512)
	}
	tests := []struct {
		name      string
		sig       []byte
		wantEarly error // NewVerifier refuses
		wantErr   error // Finish refuses
		signers   []string
	}{
		{name: "two trusted keys", sig: cat(sig(kPackager, hello, crypto.SHA512), sig(kRSA, hello, crypto.SHA256)),
			signers: []string{kPackager, kRSA}},
		{name: "two sha256 signatures share nothing wrongly", sig: cat(sig(kRSA, hello, crypto.SHA256), sig(kPackager, hello, crypto.SHA256)),
			signers: []string{kRSA, kPackager}},
		{name: "subkey and primary", sig: cat(sig(kSubkey, hello, crypto.SHA384), sig(kDSA, hello, crypto.SHA256)),
			signers: []string{kSubkey, kDSA}},
		{name: "armored pair", sig: armorSigs(t, sig(kPackager, hello, crypto.SHA512), sig(kRSA, hello, crypto.SHA512)),
			signers: []string{kPackager, kRSA}},
		{name: "good then untrusted", sig: cat(sig(kPackager, hello, crypto.SHA512), sig(kMarginal, hello, crypto.SHA512)),
			wantEarly: ErrUntrustedKey},
		{name: "unknown then good", sig: cat(sig(kStranger, hello, crypto.SHA512), sig(kPackager, hello, crypto.SHA512)),
			wantEarly: ErrUnknownKey},
		{name: "good then revoked", sig: cat(sig(kPackager, hello, crypto.SHA512), sig(kDisabled, hello, crypto.SHA512)),
			wantEarly: ErrDisabledKey},
		{name: "good then signature of another file", sig: cat(sig(kPackager, hello, crypto.SHA512), sig(kRSA, other, crypto.SHA512)),
			wantErr: ErrBadSignature},
		{name: "bad then good, sha256", sig: cat(sig(kRSA, other, crypto.SHA256), sig(kPackager, hello, crypto.SHA256)),
			wantErr: ErrBadSignature},
		{name: "good then sha1", sig: cat(sig(kPackager, hello, crypto.SHA512), sha1Sig(t, sig(kByFull, hello, crypto.SHA256))),
			wantEarly: ErrBadSignature},
		{name: "good then garbage", sig: cat(sig(kPackager, hello, crypto.SHA512), []byte{0xc2, 0x01, 0x04}),
			wantEarly: ErrBadSignature},
		{name: "too many", sig: cat(many...), wantEarly: ErrBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			exp := Expect{CID: cidOf(t, hello), Size: int64(len(hello)), Filename: "hello-1.0-1-x86_64.pkg.tar.zst", Signature: tt.sig}
			v, err := NewVerifier(kr, exp)
			if tt.wantEarly != nil {
				checkSentinel(t, err, tt.wantEarly)
				return
			}
			if err != nil {
				t.Fatalf("NewVerifier: %v", err)
			}
			defer v.Close()
			if _, err := v.Write(hello[:1]); err != nil {
				t.Fatal(err)
			}
			if _, err := v.Write(hello[1:]); err != nil {
				t.Fatal(err)
			}
			res, err := v.Finish()
			if tt.wantErr != nil {
				checkSentinel(t, err, tt.wantErr)
				return
			}
			if err != nil {
				t.Fatalf("Finish: %v", err)
			}
			if len(res.Signers) != len(tt.signers) || res.Signer == nil || *res.Signer != res.Signers[0] {
				t.Fatalf("signers %+v (first %+v), want %v", res.Signers, res.Signer, tt.signers)
			}
			for i, k := range tt.signers {
				if want := fingerprintHex(f.keys[k]); res.Signers[i].Fingerprint != want {
					t.Errorf("signer %d: %s, want %s (%s)", i, res.Signers[i].Fingerprint, want, k)
				}
			}
			if res.CID != exp.CID {
				t.Errorf("cid %s, want %s", res.CID, exp.CID)
			}
		})
	}
}

func armorSigs(t *testing.T, sigs ...[]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.SignatureType, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sigs {
		if _, err := w.Write(s); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func fingerprintHex(e *openpgp.Entity) string { return fmt.Sprintf("%X", e.PrimaryKey.Fingerprint) }
