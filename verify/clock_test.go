package verify

import (
	"fmt"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
)

// verifyAt runs data through a verifier whose every time check is at.
func verifyAt(kr *Keyring, exp Expect, data []byte, at time.Time) error {
	v, err := NewVerifierAt(kr, exp, at)
	if err != nil {
		return err
	}
	defer v.Close()
	if _, err := v.Write(data); err != nil {
		return err
	}
	_, err = v.Finish()
	return err
}

// keyDates are the instants at which something about e changes: its
// creation and expiry, every self-signature, certification, revocation and
// subkey binding on it.
func keyDates(e *openpgp.Entity) []time.Time {
	dates := []time.Time{e.PrimaryKey.CreationTime}
	if ss, _ := e.PrimarySelfSignature(); ss != nil && ss.KeyLifetimeSecs != nil && *ss.KeyLifetimeSecs > 0 {
		dates = append(dates, e.PrimaryKey.CreationTime.Add(time.Duration(*ss.KeyLifetimeSecs)*time.Second))
	}
	for _, r := range e.Revocations {
		dates = append(dates, r.CreationTime)
	}
	for _, id := range e.Identities {
		for _, sig := range id.Signatures {
			dates = append(dates, sig.CreationTime)
		}
	}
	for _, sk := range e.Subkeys {
		dates = append(dates, sk.Sig.CreationTime)
	}
	return dates
}

// TestKeysAtAgreesWithVerifyAt: at every instant around the dates that
// change a key's validity (one second before, at, one second after), the
// key listing calls the key valid exactly when a package it signed
// verifies at that instant. The signature is made a day after the last
// certification, so the instants before it check a signature from the
// future (a clock running behind): gpg, and so pacman, accept it.
func TestKeysAtAgreesWithVerifyAt(t *testing.T) {
	t.Parallel()
	f := getFixture(t)
	kr := loadFixtureKeyring(t)
	hello := makePackage(t, "hello", "1.0-1", "x86_64", ".pkg.tar.zst")
	for _, key := range []string{kPackager, kRenewed, kExpired, kRSA, kDSA, kCertRev} {
		t.Run(key, func(t *testing.T) {
			t.Parallel()
			e := f.keys[key]
			fpr := fmt.Sprintf("%X", e.PrimaryKey.Fingerprint)
			dates := keyDates(e)
			signAt := e.PrimaryKey.CreationTime // a day after the last certification
			for _, id := range e.Identities {
				for _, sig := range id.Signatures {
					signAt = later(signAt, sig.CreationTime)
				}
			}
			signAt = signAt.Add(24 * time.Hour)
			dates = append(dates, signAt, fixtureNow)
			exp := Expect{CID: cidOf(t, hello), Size: int64(len(hello)), Filename: "hello-1.0-1-x86_64.pkg.tar.zst",
				Signature: f.signRaw(t, key, hello, signAt)}
			var valid, invalid, future int
			for _, d := range dates {
				for _, at := range []time.Time{d.Add(-time.Second), d, d.Add(time.Second)} {
					verdict := verdictOf(t, kr, fpr, at)
					err := verifyAt(kr, exp, hello, at)
					if (verdict == KeyValid) != (err == nil) {
						t.Errorf("at %s: keys says %s, verify says %v", at.Format(time.RFC3339), verdict, err)
					}
					switch {
					case err != nil:
						invalid++
					case at.Before(signAt):
						future++
						valid++
					default:
						valid++
					}
				}
			}
			if valid == 0 || invalid == 0 {
				t.Errorf("%d instants valid, %d invalid: the table proves nothing", valid, invalid)
			}
			if key == kPackager && future == 0 {
				t.Error("no instant checked a signature made after it")
			}
		})
	}
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func verdictOf(t *testing.T, kr *Keyring, fpr string, at time.Time) KeyVerdict {
	t.Helper()
	for _, k := range kr.Keys(at) {
		if k.Fingerprint == fpr {
			return k.Verdict
		}
	}
	t.Fatalf("key %s not listed", fpr)
	return ""
}

// TestClockBehind: the cases of issue 10 point 5, by name.
func TestClockBehind(t *testing.T) {
	t.Parallel()
	f := getFixture(t)
	kr := loadFixtureKeyring(t)
	hello := makePackage(t, "hello", "1.0-1", "x86_64", ".pkg.tar.zst")
	exp := func(key string, signAt time.Time) Expect {
		return Expect{CID: cidOf(t, hello), Size: int64(len(hello)), Filename: "hello-1.0-1-x86_64.pkg.tar.zst",
			Signature: f.signRaw(t, key, hello, signAt)}
	}
	renewedSelfSig, _ := f.keys[kRenewed].PrimarySelfSignature()
	packagerMade := f.keys[kPackager].PrimaryKey.CreationTime
	tests := []struct {
		name    string
		key     string
		signAt  time.Time
		at      time.Time
		want    error
		verdict KeyVerdict
	}{
		{"signature a week in the future", kPackager, fixtureNow.AddDate(0, 0, 7), fixtureNow, nil, KeyValid},
		{"signature a year in the future", kPackager, fixtureNow.AddDate(1, 0, 0), fixtureNow, nil, KeyValid},
		{"before the key was made", kPackager, fixtureNow, packagerMade.Add(-time.Second), ErrUntrustedKey, KeyNotYetValid},
		{"before the self-signature", kRenewed, fixtureNow, renewedSelfSig.CreationTime.Add(-time.Second),
			ErrUntrustedKey, KeyNotYetValid},
		{"signature older than its key", kPackager, packagerMade.Add(-time.Hour), fixtureNow, ErrBadSignature, KeyValid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := verifyAt(kr, exp(tt.key, tt.signAt), hello, tt.at)
			if tt.want == nil && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if tt.want != nil {
				checkSentinel(t, err, tt.want)
			}
			if got := verdictOf(t, kr, fmt.Sprintf("%X", f.keys[tt.key].PrimaryKey.Fingerprint), tt.at); got != tt.verdict {
				t.Errorf("keys at %s: %s, want %s", tt.at.Format(time.RFC3339), got, tt.verdict)
			}
		})
	}
}
