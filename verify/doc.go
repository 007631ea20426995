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
// # Time
//
// Everything is decided at one instant (the keyring's clock, or the t of
// NewVerifierAt), and Keyring.Keys at that instant gives the same verdict
// on each key. A signature created after that instant is accepted, as gpg
// 2.2 and so pacman accept it (no note, no limit; checked with
// --faked-system-time): a clock running behind must not refuse fresh
// packages. The bound is the key: a key, or its latest self-signature,
// made after the instant is not yet valid (gpg: "key … was created N
// seconds in the future (time warp or clock problem)"), and a signature
// older than its signing key is bad (gpg: "public key … is newer than the
// signature"). So the tolerance is how long the signing key existed before
// the clock's time; an Arch packager key is years old.
//
// # Signatures
//
// One or more binary (0x00) v4 or v6 signatures, by RSA, EdDSA, ECDSA or DSA
// keys or their signing subkeys. A .sig holding several is accepted only
// when every one is valid and made by a trusted key (libalpm's
// _alpm_process_siglist); at most 16 are read. Allowed digests are SHA-224/256/384/512. SHA-1 and
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
