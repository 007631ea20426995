// Package verify proves that package bytes are the ones Arch signed: the
// sha256 named by a CID, and an OpenPGP detached signature checked against an
// Arch-style keyring (NAME.gpg, NAME-trusted, NAME-revoked) with pacman's own
// trust rules. Everything here is a pure function or an io.Writer over bytes
// the caller supplies: no network, no disk except LoadKeyring, no globals.
//
//	kr, err := verify.LoadKeyring(verify.DefaultKeyringDir())
//	v, err := verify.NewVerifier(kr, verify.Expect{CID: c, Size: n, Signature: sig})
//	defer v.Close()                       // ends the .PKGINFO reader if abandoned
//	io.Copy(io.MultiWriter(v, tmp), body) // one pass: sha256 and signature hash
//	res, err := v.Finish()                // errors.Is(err, verify.ErrDigestMismatch) ...
//
// # Trust model
//
// LoadKeyring reproduces what `pacman-key --populate` makes GnuPG believe
// (checked key by key against gpg on the real Arch keyring, see
// gnupg_test.go): keys listed in NAME-trusted are masters, valid through the
// local master key's lsign, with the listed ownertrust (4 marginal, 5 full,
// 6 ultimate). Any other key is valid when, on one of its live user IDs, the
// latest statement of each master is a live certification and those count
// to 3 marginal or 1 full masters (gpg's marginals-needed 3 and
// completes-needed 1); 1 or 2 marginal ones make it marginal, which pacman
// refuses ("unknown trust"). Self-revocation wins over everything, then
// expiry, then being listed in NAME-revoked (pacman-key disables those).
// Masters' certifications are verified once at load; expiry of keys,
// subkeys, user IDs, certifications and signatures is evaluated at
// verification time (the keyring's clock, WithClock, or NewVerifierAt).
//
// # Signatures
//
// One binary (0x00) v4 or v6 signature, by RSA, EdDSA, ECDSA or DSA keys or
// their signing subkeys. Allowed digests are SHA-224/256/384/512. SHA-1 and
// MD5 are refused although GnuPG 2.2 (and so pacman 6.0 on Debian) still
// accepts SHA-1 data signatures: collisions are practical, RFC 9580 and
// GnuPG ≥ 2.3/Sequoia-based pacman reject them, and makepkg has produced
// SHA-256/512 signatures for years. When the digest is SHA-256, the one hash
// pass gives both the signature's hash and the file's CID.
//
// # Identity
//
// A file without a db entry (or any file when Expect.CheckIdentity is set)
// must be the package its name says: the .PKGINFO pkgname, pkgver and arch
// are read from the same bytes (zstd with windows up to 128 MiB, xz, gzip,
// bzip2, plain tar) while they stream.
package verify
