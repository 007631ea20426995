package gateway

import (
	"context"
	"fmt"

	"github.com/flocon/flocon/store"
	"github.com/flocon/flocon/store/repodb"
	"github.com/flocon/flocon/verify"
)

// checkIdentity refuses to serve blob info under the file name pkg unless
// the identity its .PKGINFO proved (NAME-VERSION-ARCH) is the one the name
// claims: a db entry may point a name at another package's signed bytes, and
// one CID is stored once whatever names point at it.
func checkIdentity(info store.BlobInfo, pkg string) error {
	f, err := verify.ParsePkgFilename(pkg)
	if err != nil {
		return fmt.Errorf("serve %s: %w", pkg, err)
	}
	if info.Identity == f.Identity() || (info.Identity == "" && info.Filename == pkg) {
		return nil
	}
	return fmt.Errorf("serve %s: %w: the blob is %s", pkg, verify.ErrIdentityMismatch, info.Identity)
}

// committedIdentity waits for p's bytes to be proven (its last byte is
// released only then) and checks the identity they were proven to have
// against pkg.
func (g *Gateway) committedIdentity(ctx context.Context, p *store.Pending, pkg string) error {
	select {
	case <-p.Verified():
	case <-p.Done():
	case <-ctx.Done():
		return ctx.Err()
	}
	info, ok := p.Info()
	if !ok {
		if err := p.Err(); err != nil {
			return err
		}
		return fmt.Errorf("serve %s: %w: download ended unverified", pkg, ErrUpstream)
	}
	return checkIdentity(info, pkg)
}

// identityGate passes a download through but holds its last byte until
// check proves the finished blob may carry the requested name; otherwise the
// reader fails and the client never holds the complete file.
type identityGate struct {
	rd    *followReader
	left  int64 // bytes to the end of the file
	check func() error
	err   error
}

func (g *identityGate) Read(b []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	if len(b) == 0 {
		return 0, nil
	}
	if int64(len(b)) >= g.left {
		if g.left > 1 {
			b = b[:g.left-1]
		} else {
			// The download gives its last byte only once the bytes are
			// proven (or fails, when they are thrown away): read it
			// first, then check what they were proven to be.
			n, err := g.rd.Read(b[:1])
			if n == 1 {
				if g.err = g.check(); g.err != nil {
					return 0, g.err
				}
			}
			g.left -= int64(n)
			return n, err
		}
	}
	n, err := g.rd.Read(b)
	g.left -= int64(n)
	return n, err
}

// sendTo is Read for a send: every byte but the last goes as the download
// gives it; the last one only through Read, after the check.
func (g *identityGate) sendTo(w *clientWriter, n int64) (int64, error) {
	if g.err != nil {
		return 0, g.err
	}
	var sent int64
	if body := min(n, g.left-1); body > 0 {
		k, err := g.rd.sendTo(w, body)
		g.left -= k
		sent = k
		if err != nil {
			return sent, err
		}
	}
	if sent == n || g.left != 1 {
		return sent, nil
	}
	var last [1]byte
	k, err := readSome(g, last[:])
	if k == 1 {
		if _, werr := w.Write(last[:]); werr != nil {
			return sent, werr
		}
		sent++
	}
	return sent, err
}

// expectedSize is the entry's %CSIZE%, or -1 (unknown) when the db has none.
func expectedSize(e repodb.Entry) int64 {
	if e.CSize <= 0 {
		return -1
	}
	return e.CSize
}
