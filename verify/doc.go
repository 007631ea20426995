// Package verify proves that package bytes are the ones Arch signed: the
// sha256 named by a CID, and an OpenPGP detached signature checked against an
// Arch-style keyring (NAME.gpg, NAME-trusted, NAME-revoked) with pacman's own
// trust rules. Everything here is a pure function or an io.Writer over bytes
// the caller supplies: no network, no disk except LoadKeyring, no globals.
//
//	kr, err := verify.LoadKeyring(verify.DefaultKeyringDir())
//	v, err := verify.NewVerifier(kr, verify.Expect{CID: c, Size: n, Signature: sig})
//	io.Copy(io.MultiWriter(v, tmp), body) // one pass: sha256 and signature hash
//	res, err := v.Finish()                // errors.Is(err, verify.ErrDigestMismatch) ...
package verify
