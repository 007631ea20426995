package verify

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
)

// Sentinel errors. Every refusal wraps exactly one of them so callers can map
// it (gateway: status code and log; node: ban decision).
var (
	ErrDigestMismatch   = errors.New("sha256 does not match the expected content")
	ErrSizeMismatch     = errors.New("size does not match the expected content")
	ErrBadSignature     = errors.New("signature is invalid")
	ErrNoSignature      = errors.New("no signature")
	ErrUnknownKey       = errors.New("signing key is not in the keyring")
	ErrUntrustedKey     = errors.New("signing key is not trusted")
	ErrRevokedKey       = errors.New("signing key is revoked")
	ErrDisabledKey      = errors.New("signing key is disabled")
	ErrExpiredKey       = errors.New("signing key is expired")
	ErrIdentityMismatch = errors.New("package identity does not match its filename")
	ErrBadFilename      = errors.New("not a package filename")
)

// DigestMismatchError carries the evidence of a digest mismatch (used for bans).
type DigestMismatchError struct {
	Want, Got []byte // sha256 digests
}

func (e *DigestMismatchError) Error() string {
	return fmt.Sprintf("%v: want %x, got %x", ErrDigestMismatch, e.Want, e.Got)
}

// Is makes errors.Is(err, ErrDigestMismatch) true.
func (e *DigestMismatchError) Is(target error) bool { return target == ErrDigestMismatch }

// SigPolicy is a repo's signature requirement, like pacman's SigLevel.
// The zero value is SigRequired.
type SigPolicy int

const (
	SigRequired SigPolicy = iota // a valid trusted signature is required
	SigOptional                  // checked when present; absence is accepted
	SigNever                     // not checked
)

// ParseSigPolicy reads "required", "optional" or "never" (case-insensitive).
func ParseSigPolicy(s string) (SigPolicy, error) {
	switch s {
	case "", "required", "Required":
		return SigRequired, nil
	case "optional", "Optional":
		return SigOptional, nil
	case "never", "Never":
		return SigNever, nil
	}
	return 0, fmt.Errorf("unknown signature policy %q (want required, optional or never)", s)
}

// CIDFromSHA256 returns the CIDv1 (raw, sha2-256) of a 32-byte digest.
func CIDFromSHA256(sum []byte) (cid.Cid, error) {
	if len(sum) != sha256.Size {
		return cid.Undef, fmt.Errorf("sha256 digest must be %d bytes, got %d", sha256.Size, len(sum))
	}
	m, err := mh.Encode(sum, mh.SHA2_256)
	if err != nil {
		return cid.Undef, err
	}
	return cid.NewCidV1(cid.Raw, m), nil
}

// CIDFromHex parses a hex sha256 (a db's %SHA256SUM%) into its CID.
func CIDFromHex(s string) (cid.Cid, error) {
	b, err := hex.DecodeString(s)
	if err != nil {
		return cid.Undef, fmt.Errorf("sha256 hex %q: %w", s, err)
	}
	return CIDFromSHA256(b)
}

// SHA256Of returns the 32-byte digest named by c; it refuses any CID that is
// not v1/raw/sha2-256.
func SHA256Of(c cid.Cid) ([]byte, error) {
	if !c.Defined() || c.Version() != 1 || c.Type() != cid.Raw {
		return nil, fmt.Errorf("cid %s: not a v1 raw cid", c)
	}
	d, err := mh.Decode(c.Hash())
	if err != nil {
		return nil, fmt.Errorf("cid %s: %w", c, err)
	}
	if d.Code != mh.SHA2_256 || len(d.Digest) != sha256.Size {
		return nil, fmt.Errorf("cid %s: not sha2-256", c)
	}
	return d.Digest, nil
}
