package verify

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"runtime"
	"sync"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
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
	// CheckIdentity also checks .PKGINFO against Filename when CID is
	// defined: a db entry can name the validly signed bytes of another
	// package (unsigned dbs come from any mirror). Always on without a CID.
	CheckIdentity bool
}

// Result is a successful verification.
type Result struct {
	CID    cid.Cid
	Size   int64
	Signer *Signer // nil when the policy allowed no signature; else Signers[0]
	// Signers made the signatures of the .sig, in order: every one was
	// checked and valid (pacman accepts a package only then).
	Signers []Signer
	// Identity is the package's .PKGINFO when it was checked against the
	// file name (no CID, or Expect.CheckIdentity): a store can keep it with
	// the blob so that the same bytes are never served under another name.
	Identity *PKGINFO
}

// Signer identifies the key that made a valid signature.
type Signer struct {
	Fingerprint string `json:"fingerprint"`      // primary key fingerprint, upper-case hex
	UID         string `json:"uid"`              // primary user ID
	SubKey      string `json:"subkey,omitempty"` // signing subkey fingerprint when not the primary
}

// Verifier checks bytes as they are written, in one pass: sha256 for the CID
// and the signature's hash together. Write never fails on bad content (only
// once the stream exceeds Expect.Size); Finish gives the verdict.
//
// When Expect.CID is undefined (or Expect.CheckIdentity is set) the
// package's .PKGINFO is read from the same bytes by a goroutine: call Finish
// or Close so that it ends.
type Verifier struct {
	kr      *Keyring
	exp     Expect
	now     func() time.Time
	wantSum []byte
	file    PkgFile

	sum     hash.Hash   // sha256 of the file
	sumBy   bool        // the writer hashes the file: see SumByWriter
	sigs    []sigCheck  // every signature of the .sig, all must pass
	extra   []hash.Hash // signature hashes that are not sum
	written int64
	tooLong bool

	ident *identityCheck
}

// sigCheck is one signature of a .sig, its signing key and its hash.
type sigCheck struct {
	sig    *packet.Signature
	signer signingKey
	hash   hash.Hash // == Verifier.sum for the first v4 SHA-256 signature
	shared bool      // hash is Verifier.sum
}

// NewVerifier prepares a verifier. It fails early (before any byte is read)
// when the signature cannot be parsed or its key is unknown, untrusted,
// revoked, disabled or expired, so a doomed download is never started. Key
// validity is evaluated with the keyring's clock, now and again at Finish.
func NewVerifier(kr *Keyring, exp Expect) (*Verifier, error) {
	now := time.Now
	if kr != nil {
		now = kr.now
	}
	return newVerifier(kr, exp, now)
}

// NewVerifierAt is NewVerifier with every time check made at the instant now.
func NewVerifierAt(kr *Keyring, exp Expect, now time.Time) (*Verifier, error) {
	return newVerifier(kr, exp, func() time.Time { return now })
}

func newVerifier(kr *Keyring, exp Expect, now func() time.Time) (*Verifier, error) {
	v := &Verifier{kr: kr, exp: exp, now: now, sum: sha256.New()}
	if exp.CID.Defined() {
		want, err := SHA256Of(exp.CID)
		if err != nil {
			return nil, fmt.Errorf("verify %s: %w: %w", exp.Filename, ErrDigestMismatch, err)
		}
		v.wantSum = want
	}
	if !exp.CID.Defined() || exp.CheckIdentity {
		f, err := ParsePkgFilename(exp.Filename)
		if err != nil {
			return nil, fmt.Errorf("verify %s: identity: %w", exp.Filename, err)
		}
		v.file = f
	}
	if err := v.prepareSignature(); err != nil {
		return nil, fmt.Errorf("verify %s: %w", exp.Filename, err)
	}
	if v.file.Name != "" {
		if inlineIdentity(exp) {
			v.ident = &identityCheck{inline: true, size: exp.Size} // read at the verdict
		} else {
			v.ident = &identityCheck{} // its reader starts with the first Write
			// safety net for callers that drop a verifier without Finish or Close
			runtime.AddCleanup(v, (*identityCheck).abandon, v.ident)
		}
	}
	return v, nil
}

// prepareSignature applies the policy, parses the signatures and resolves
// their keys, so that all key-related refusals happen before any byte.
func (v *Verifier) prepareSignature() error {
	switch {
	case v.exp.Policy == SigNever:
		return nil
	case len(v.exp.Signature) == 0 && v.exp.Policy == SigOptional:
		return nil
	case len(v.exp.Signature) == 0:
		return ErrNoSignature
	case v.kr == nil:
		return fmt.Errorf("no keyring: %w", ErrUnknownKey)
	}
	sigs, err := ParseSignatures(v.exp.Signature)
	if err != nil {
		return err
	}
	now := v.now()
	shared := false
	for i, sig := range sigs {
		sk, err := v.kr.findSigner(sig, now)
		if err != nil {
			return fmt.Errorf("%s: %w", sigLabel(i, len(sigs)), err)
		}
		h, err := sig.PrepareVerify()
		if err != nil {
			return fmt.Errorf("%s: %w: %w", sigLabel(i, len(sigs)), ErrBadSignature, err)
		}
		sc := sigCheck{sig: sig, signer: sk, hash: h}
		if sig.Hash == crypto.SHA256 && sig.Version == 4 && !shared {
			v.sum, shared, sc.shared = h, true, true // one pass: the signed hash is the file's sha256 until the trailer
		} else {
			v.extra = append(v.extra, h)
		}
		v.sigs = append(v.sigs, sc)
	}
	return nil
}

// sigLabel names signature i of n in messages ("signature" when alone).
func sigLabel(i, n int) string {
	if n == 1 {
		return "signature"
	}
	return fmt.Sprintf("signature %d of %d", i+1, n)
}

// Write hashes p. It fails only once more than Expect.Size bytes arrived
// (ErrSizeMismatch), to cut a lying source early.
func (v *Verifier) Write(p []byte) (int, error) {
	if v.exp.Size >= 0 && v.written+int64(len(p)) > v.exp.Size {
		v.tooLong = true
		v.written += int64(len(p))
		return 0, fmt.Errorf("verify %s: %w: more than %d bytes", v.exp.Filename, ErrSizeMismatch, v.exp.Size)
	}
	v.written += int64(len(p))
	var wg sync.WaitGroup
	for _, h := range v.extra {
		if len(p) < parallelMin {
			h.Write(p)
			continue
		}
		// Still one pass over p, but the hashes run side by side: a
		// SHA-512 signature hash costs three times SHA-256 here.
		wg.Go(func() { h.Write(p) })
	}
	if !v.sumBy {
		v.sum.Write(p)
	}
	if v.ident != nil {
		v.ident.write(p)
	}
	wg.Wait()
	return len(p), nil
}

// parallelMin is the chunk size from which Write hashes the signature on
// another goroutine; below it the hand-off costs more than it saves.
const parallelMin = 32 << 10

// SumByWriter hands the file's sha256 to the writer of the bytes: Write no
// longer computes it, and the verdict comes from FinishWithSum with the
// writer's own sha256 of exactly the bytes it kept. A store that must hash
// what it writes anyway (to refuse a commit under the wrong CID) so hashes
// every byte once instead of twice, and the digest and signature are checked
// over the bytes that were kept, not over a copy of them. Signature hashes
// other than SHA-256 are still computed by Write. Call it before any Write.
func (v *Verifier) SumByWriter() { v.sumBy = true }

// KeptByWriter tells the verifier that its writer keeps every byte it
// takes, in order, in memory (the store holds a small body until it is
// proven) and hands them to FinishWithKept: a stream whose .PKGINFO is read
// at the verdict (identityInline) is then read from the writer's bytes, the
// very bytes the writer hashed, instead of from a copy the verifier keeps
// (one allocation and one copy of the body less per small package). A
// verdict without those bytes fails the identity check. Call it before any
// Write.
func (v *Verifier) KeptByWriter() {
	if v.ident != nil && v.ident.inline {
		v.ident.byWriter = true
	}
}

// FinishWithKept is FinishWithSum after KeptByWriter: kept is every byte
// written, kept by the writer (it is only read). Bytes that are not as many
// as were written fail the identity check.
func (v *Verifier) FinishWithKept(sum hash.Hash, kept []byte) (Result, error) {
	if c := v.ident; c != nil && c.byWriter {
		if int64(len(kept)) == v.written {
			c.held = kept
		} else {
			c.held = nil // read as an empty stream: refused
		}
	}
	return v.FinishWithSum(sum)
}

// Written is the number of bytes hashed so far.
func (v *Verifier) Written() int64 { return v.written }

// Close releases the verifier without a verdict (an abandoned download). It
// is safe to call after Finish and more than once.
func (v *Verifier) Close() error {
	if v.ident != nil {
		v.ident.stop(errAbandoned)
	}
	return nil
}

// Finish returns the verdict over everything written. The error wraps
// exactly one sentinel; a digest mismatch is a *DigestMismatchError.
func (v *Verifier) Finish() (Result, error) {
	if v.sumBy {
		v.Close()
		return Result{}, fmt.Errorf("verify %s: %w: the sha256 was left to the writer (SumByWriter)", v.exp.Filename, ErrDigestMismatch)
	}
	return v.finish()
}

// FinishWithSum is Finish after SumByWriter: sum is the writer's sha256
// state over exactly the bytes written (it is not written to, but a clone
// of it may be). It takes the place of the verifier's own hash for the CID
// and for the signature that shares it.
func (v *Verifier) FinishWithSum(sum hash.Hash) (Result, error) {
	if !v.sumBy || sum == nil || sum.Size() != sha256.Size {
		v.Close()
		return Result{}, fmt.Errorf("verify %s: %w: FinishWithSum needs SumByWriter and a sha256", v.exp.Filename, ErrDigestMismatch)
	}
	for i := range v.sigs {
		if !v.sigs[i].shared {
			continue
		}
		c, ok := sum.(hash.Cloner)
		if !ok {
			v.Close()
			return Result{}, fmt.Errorf("verify %s: %w: the writer's sha256 cannot be cloned", v.exp.Filename, ErrDigestMismatch)
		}
		clone, err := c.Clone()
		if err != nil {
			v.Close()
			return Result{}, fmt.Errorf("verify %s: %w: %w", v.exp.Filename, ErrDigestMismatch, err)
		}
		v.sigs[i].hash = clone // the signature check appends its trailer to this state
	}
	v.sum = sum
	return v.finish()
}

func (v *Verifier) finish() (Result, error) {
	name := v.exp.Filename
	var ident identityResult
	if v.ident != nil {
		ident = v.ident.stop(nil)
	}
	if v.tooLong || (v.exp.Size >= 0 && v.written != v.exp.Size) {
		return Result{}, fmt.Errorf("verify %s: %w: want %d bytes, got %d", name, ErrSizeMismatch, v.exp.Size, v.written)
	}
	got := v.sum.Sum(nil)
	if v.wantSum != nil && !bytes.Equal(got, v.wantSum) {
		return Result{}, fmt.Errorf("verify %s: %w", name, &DigestMismatchError{Want: v.wantSum, Got: got})
	}
	res := Result{Size: v.written}
	var err error
	if res.CID, err = CIDFromSHA256(got); err != nil {
		return Result{}, fmt.Errorf("verify %s: %w", name, err)
	}
	for i, sc := range v.sigs {
		if err := v.checkSignature(sc); err != nil {
			return Result{}, fmt.Errorf("verify %s: %s: %w", name, sigLabel(i, len(v.sigs)), err)
		}
		res.Signers = append(res.Signers, sc.signer.signer())
	}
	if len(res.Signers) > 0 {
		res.Signer = &res.Signers[0]
	}
	if v.ident != nil {
		if ident.err != nil {
			return Result{}, fmt.Errorf("verify %s: %w: %v", name, ErrIdentityMismatch, ident.err)
		}
		if !ident.info.Matches(v.file) {
			return Result{}, fmt.Errorf("verify %s: %w: .PKGINFO says %s %s %s", name, ErrIdentityMismatch,
				ident.info.Name, ident.info.Version, ident.info.Arch)
		}
		res.Identity = &ident.info
	}
	return res, nil
}

// checkSignature re-checks the key at the verification instant, then the
// signature itself. A signature made after that instant is accepted, as gpg
// does; its key must have existed then (package doc, Time).
func (v *Verifier) checkSignature(sc sigCheck) error {
	now := v.now()
	if _, err := v.kr.checkSigner(sc.signer.entry, issuerKeyID(sc.sig), now); err != nil {
		return err
	}
	if sigLifetimeOver(sc.sig, now) {
		return fmt.Errorf("%w: signature expired", ErrBadSignature)
	}
	if sc.sig.CreationTime.Before(sc.signer.pub.CreationTime) {
		// gpg: "public key is N seconds newer than the signature"
		return fmt.Errorf("%w: made before its key %s existed", ErrBadSignature, sc.signer.entry.fpr)
	}
	if err := sc.signer.pub.VerifySignature(sc.hash, sc.sig); err != nil {
		return fmt.Errorf("%w: by %s: %v", ErrBadSignature, sc.signer.entry.fpr, err)
	}
	return nil
}

var errAbandoned = errors.New("verification abandoned")

// identityResult is what the .PKGINFO reader found.
type identityResult struct {
	info PKGINFO
	err  error
}

// identityCheck reads .PKGINFO from a copy of the written bytes, through a
// pipe, while they are written. Once .PKGINFO is found the reader closes
// the pipe and later writes skip it. A small stream (inline, see
// identityInline) is kept instead and read at the verdict.
type identityCheck struct {
	pw     *io.PipeWriter // nil until the first Write
	done   chan struct{}
	res    identityResult
	closed bool // the reader is gone (or never started): stop copying
	once   sync.Once

	inline   bool   // keep the bytes and read them at stop: no goroutine
	size     int64  // the expected size (inline)
	held     []byte // the bytes so far (inline)
	byWriter bool   // inline, but the writer keeps the bytes (KeptByWriter)
}

// start runs the .PKGINFO reader; a verifier that never sees a byte never
// starts a goroutine.
func (c *identityCheck) start() {
	pr, pw := io.Pipe()
	c.pw, c.done = pw, make(chan struct{})
	go func() {
		defer close(c.done)
		c.res.info, c.res.err = ReadPKGINFO(pr)
		pr.CloseWithError(errIdentityRead) // unblocks and fails any later write
	}()
}

var errIdentityRead = errors.New(".PKGINFO already read")

func (c *identityCheck) write(p []byte) {
	if c.closed {
		return
	}
	if c.inline {
		c.keep(p)
		return
	}
	if c.pw == nil {
		c.start()
	}
	if _, err := c.pw.Write(p); err != nil {
		c.closed = true
	}
}

// abandon ends the reader of an unreachable verifier without waiting.
func (c *identityCheck) abandon() {
	if c.pw != nil {
		c.pw.CloseWithError(errAbandoned)
	}
}

// stop ends the input (EOF, or cause) and waits for the reader goroutine.
func (c *identityCheck) stop(cause error) identityResult {
	c.once.Do(func() {
		c.closed = true
		switch {
		case c.inline && cause != nil:
			c.res.err, c.held = cause, nil
			return
		case c.inline && len(c.held) > 0:
			c.res = c.readKept()
			return
		case c.pw == nil: // no byte was written
			c.res.err = fmt.Errorf("%w: empty stream", ErrNoPKGINFO)
			return
		}
		if cause != nil {
			c.pw.CloseWithError(cause)
		} else {
			c.pw.Close()
		}
		<-c.done
	})
	return c.res
}
