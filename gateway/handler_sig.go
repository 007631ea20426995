package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/flocon/flocon/store"
	"github.com/flocon/flocon/store/repodb"
	"github.com/flocon/flocon/verify"
)

// serveSig serves the detached signature of a package. pacman 6 fetches it
// from the server that gave it the package, with no failover, so it must be
// here whenever the package is.
func (g *Gateway) serveSig(w http.ResponseWriter, r *http.Request, t *target) {
	e, c, err := g.entry(r.Context(), t)
	if err != nil {
		g.fail(w, r, t, err)
		return
	}
	sig, outcome, err := g.signature(r.Context(), t, c, e)
	if err != nil {
		g.fail(w, r, t, err)
		return
	}
	setOutcome(w, outcome)
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, "", modTime(e, time.Time{}), bytes.NewReader(sig))
}

// signature is, in order: the db's %PGPSIG% (what pacman checks), the one
// stored with the blob, or the one the package's download brings (started
// or joined here, awaited at most SigWait).
func (g *Gateway) signature(ctx context.Context, t *target, c cid.Cid, e repodb.Entry) ([]byte, string, error) {
	if len(e.PGPSig) > 0 {
		return e.PGPSig, outcomeHit, nil
	}
	sig, err := g.cfg.Store.Sig(c)
	switch {
	case err == nil:
		return sig, outcomeHit, nil
	case !errors.Is(err, store.ErrNotFound):
		return nil, "", fmt.Errorf("sig %s: %w", t.pkg, err)
	case t.repo.SigPolicy == verify.SigNever:
		return nil, "", fmt.Errorf("sig %s: %w", t.pkg, ErrNotFound)
	}
	outcome := outcomeMiss
	if g.cfg.Store.Inflight(c) != nil {
		outcome = outcomeJoin
	}
	p, err := g.cfg.Fetcher.Fetch(ctx, t.repo.Name, t.arch, verify.Expect{
		CID: c, Size: expectedSize(e), Filename: t.pkg, Policy: t.repo.SigPolicy,
	})
	if err != nil {
		return nil, "", fmt.Errorf("fetch %s: %w", t.pkg, err)
	}
	if p != nil { // nil: the blob is stored already, with whatever sig it has
		wctx, cancel := context.WithTimeout(ctx, g.cfg.SigWait)
		defer cancel()
		select {
		case <-p.Done():
		case <-wctx.Done():
			return nil, "", fmt.Errorf("wait for sig %s: %w", t.pkg, wctx.Err())
		}
		if err := p.Err(); err != nil {
			return nil, "", fmt.Errorf("download %s: %w", t.pkg, err)
		}
	}
	sig, err = g.cfg.Store.Sig(c)
	if err != nil {
		return nil, "", fmt.Errorf("sig %s: %w", t.pkg, err)
	}
	return sig, outcome, nil
}
