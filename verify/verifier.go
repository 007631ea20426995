package verify

import (
	"github.com/ipfs/go-cid"
)

// Expect describes what a stream of bytes must be.
type Expect struct {
	// CID is the expected content (from the db's %SHA256SUM%); cid.Undef when
	// the file has no db entry, in which case Filename's identity is checked
	// against the package's .PKGINFO instead.
	CID cid.Cid
	// Size is the expected length, or -1 when unknown.
	Size int64
	// Filename is the package file name (for the identity check and messages).
	Filename string
	// Signature is the binary detached OpenPGP signature (db %PGPSIG% or .sig).
	Signature []byte
	// Policy is the repo's signature policy.
	Policy SigPolicy
}

// Result is a successful verification.
type Result struct {
	CID    cid.Cid
	Size   int64
	Signer *Signer // nil when the policy allowed no signature
}

// Signer identifies the key that made a valid signature.
type Signer struct {
	Fingerprint string // primary key fingerprint, upper-case hex
	UID         string // primary user ID
	SubKey      string // signing subkey fingerprint when not the primary
}

// Verifier checks bytes as they are written, in one pass: sha256 for the CID
// and the signature's hash together. Write never fails on bad content; Finish
// gives the verdict.
type Verifier struct {
	// STUB: the verify implementation fills this in.
}

// NewVerifier prepares a verifier. It fails early (before any byte is read)
// when the signature cannot be parsed or its key is unknown, untrusted,
// revoked, disabled or expired, so a doomed download is never started.
func NewVerifier(kr *Keyring, exp Expect) (*Verifier, error) {
	panic("unimplemented")
}

// Write hashes p.
func (v *Verifier) Write(p []byte) (int, error) { panic("unimplemented") }

// Written is the number of bytes hashed so far.
func (v *Verifier) Written() int64 { panic("unimplemented") }

// Finish returns the verdict over everything written.
func (v *Verifier) Finish() (Result, error) { panic("unimplemented") }
