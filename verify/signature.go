package verify

import (
	"bytes"
	"crypto"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// allowedHashes are the digests accepted in a package signature. SHA-1 and
// MD5 are refused, as GnuPG ≥ 2.3 / RFC 9580 implementations do by default
// (GnuPG 2.2 still accepts SHA-1 data signatures); makepkg has produced
// SHA-256/512 signatures for many years, so no current Arch package is
// affected (package doc, Signatures).
var allowedHashes = map[crypto.Hash]bool{
	crypto.SHA224: true, crypto.SHA256: true, crypto.SHA384: true, crypto.SHA512: true,
}

// maxSignatures bounds the signatures one .sig may hold: each costs a hash
// pass over the package. Real packages carry one (pacman accepts several).
const maxSignatures = 16

// ParseSignature reads exactly one detached OpenPGP signature (binary, as in
// a .sig file or a decoded %PGPSIG%, or armored) over binary data. Errors
// wrap ErrBadSignature.
func ParseSignature(b []byte) (*packet.Signature, error) {
	sigs, err := ParseSignatures(b)
	if err != nil {
		return nil, err
	}
	if len(sigs) != 1 {
		return nil, fmt.Errorf("parse signature: %w: %d signatures, want one", ErrBadSignature, len(sigs))
	}
	return sigs[0], nil
}

// ParseSignatures reads every detached OpenPGP signature of a .sig (or a
// decoded %PGPSIG%), binary or armored. Like pacman, which checks each
// signature gpg finds, a .sig may hold several; every one must be a usable
// binary-document signature, or the whole is refused. Errors wrap
// ErrBadSignature.
func ParseSignatures(b []byte) ([]*packet.Signature, error) {
	bad := func(format string, a ...any) ([]*packet.Signature, error) {
		return nil, fmt.Errorf("parse signature: %w: %s", ErrBadSignature, fmt.Sprintf(format, a...))
	}
	if len(b) == 0 {
		return bad("empty")
	}
	var r io.Reader = bytes.NewReader(b)
	if bytes.HasPrefix(bytes.TrimSpace(b), []byte("-----BEGIN PGP SIGNATURE-----")) {
		block, err := armor.Decode(r)
		if err != nil {
			return bad("armor: %v", err)
		}
		r = block.Body
	}
	var sigs []*packet.Signature
	for {
		p, err := packet.Read(r)
		if errors.Is(err, io.EOF) && len(sigs) > 0 {
			return sigs, nil
		}
		if err != nil {
			return bad("%v", err)
		}
		sig, ok := p.(*packet.Signature)
		if !ok {
			return bad("not a signature packet (%T)", p)
		}
		if err := checkSignaturePacket(sig); err != nil {
			return bad("%v", err)
		}
		if sigs = append(sigs, sig); len(sigs) > maxSignatures {
			return bad("more than %d signatures", maxSignatures)
		}
	}
}

// checkSignaturePacket refuses what no package signature may be.
func checkSignaturePacket(sig *packet.Signature) error {
	switch {
	case sig.SigType != packet.SigTypeBinary:
		return fmt.Errorf("signature type %#x, want binary document (0x00)", sig.SigType)
	case sig.Version != 4 && sig.Version != 6:
		return fmt.Errorf("signature version %d", sig.Version)
	case !allowedHashes[sig.Hash]:
		return fmt.Errorf("hash algorithm %v is not allowed", sig.Hash)
	case sig.IssuerKeyId == nil && sig.IssuerFingerprint == nil:
		return errors.New("no issuer")
	}
	return nil
}

// issuerKeyID is the 64-bit key ID that made sig.
func issuerKeyID(sig *packet.Signature) uint64 {
	if sig.IssuerKeyId != nil {
		return *sig.IssuerKeyId
	}
	fp := sig.IssuerFingerprint
	if len(fp) == 20 { // v4: low 64 bits
		var id uint64
		for _, c := range fp[12:] {
			id = id<<8 | uint64(c)
		}
		return id
	}
	var id uint64 // v6: high 64 bits
	for _, c := range fp[:8] {
		id = id<<8 | uint64(c)
	}
	return id
}

// signingKey is the key that made a signature and the entry it belongs to.
type signingKey struct {
	entry  *keyEntry
	pub    *packet.PublicKey
	subkey int // index in entity.Subkeys, -1 for the primary key
}

// findSigner resolves the issuer of sig and checks, at now, that pacman
// would trust it. Errors wrap exactly one key sentinel.
func (k *Keyring) findSigner(sig *packet.Signature, now time.Time) (signingKey, error) {
	id := issuerKeyID(sig)
	entries := k.byKeyID[id]
	if len(entries) == 0 {
		return signingKey{}, fmt.Errorf("key %016X: %w", id, ErrUnknownKey)
	}
	var firstErr error
	for _, e := range entries {
		sk, err := k.checkSigner(e, id, now)
		if err == nil {
			return sk, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return signingKey{}, firstErr
}

func (k *Keyring) checkSigner(e *keyEntry, id uint64, now time.Time) (signingKey, error) {
	switch v := k.verdict(e, now); v {
	case KeyValid:
	case KeyRevoked:
		return signingKey{}, fmt.Errorf("key %s (%s): %w", e.fpr, e.uid, ErrRevokedKey)
	case KeyExpired:
		return signingKey{}, fmt.Errorf("key %s (%s): %w", e.fpr, e.uid, ErrExpiredKey)
	case KeyDisabled:
		return signingKey{}, fmt.Errorf("key %s (%s): %w", e.fpr, e.uid, ErrDisabledKey)
	case KeyNotYetValid:
		return signingKey{}, fmt.Errorf("key %s (%s): %w: made or self-signed after %s (clock behind?)",
			e.fpr, e.uid, ErrUntrustedKey, now.UTC().Format(time.RFC3339))
	default:
		return signingKey{}, fmt.Errorf("key %s (%s): validity %s: %w", e.fpr, e.uid, v, ErrUntrustedKey)
	}
	ent := e.entity
	if ent.PrimaryKey.KeyId == id {
		selfSig, _ := ent.PrimarySelfSignature() // non-nil: the verdict is valid
		// gpg lets a primary key without key flags sign (RFC 4880 keys of old)
		if selfSig.FlagsValid && !selfSig.FlagSign {
			return signingKey{}, fmt.Errorf("key %s (%s): %w: primary key is not a signing key",
				e.fpr, e.uid, ErrUntrustedKey)
		}
		return signingKey{entry: e, pub: ent.PrimaryKey, subkey: -1}, nil
	}
	for i, sub := range ent.Subkeys {
		if sub.PublicKey.KeyId != id {
			continue
		}
		switch {
		case sub.Revoked(now):
			return signingKey{}, fmt.Errorf("key %s (%s): subkey %X: %w", e.fpr, e.uid, sub.PublicKey.Fingerprint, ErrRevokedKey)
		case sub.PublicKey.CreationTime.After(now) || sub.Sig.CreationTime.After(now):
			return signingKey{}, fmt.Errorf("key %s (%s): %w: subkey %X made after %s (clock behind?)",
				e.fpr, e.uid, ErrUntrustedKey, sub.PublicKey.Fingerprint, now.UTC().Format(time.RFC3339))
		case sub.PublicKey.KeyExpired(sub.Sig, now) || sigLifetimeOver(sub.Sig, now):
			return signingKey{}, fmt.Errorf("key %s (%s): subkey %X: %w", e.fpr, e.uid, sub.PublicKey.Fingerprint, ErrExpiredKey)
		case !sub.Sig.FlagsValid || !sub.Sig.FlagSign || !sub.PublicKey.CanSign():
			return signingKey{}, fmt.Errorf("key %s (%s): %w: subkey %X is not a signing key",
				e.fpr, e.uid, ErrUntrustedKey, sub.PublicKey.Fingerprint)
		}
		return signingKey{entry: e, pub: sub.PublicKey, subkey: i}, nil
	}
	return signingKey{}, fmt.Errorf("key %016X: %w", id, ErrUnknownKey)
}

// signer describes sk for a Result.
func (sk signingKey) signer() Signer {
	s := Signer{Fingerprint: sk.entry.fpr, UID: sk.entry.uid}
	if sk.subkey >= 0 {
		s.SubKey = fmt.Sprintf("%X", sk.pub.Fingerprint)
	}
	return s
}
