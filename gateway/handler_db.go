package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/flocon/flocon/store"
)

const (
	maxDBSize  = 128 << 20 // pacman's own limit for a database
	maxSigSize = 16 << 10  // pacman's own limit for a .sig
	// dbFetchTimeout bounds one upstream database download (shared by every
	// client waiting on it, so not tied to any one of them).
	dbFetchTimeout = 5 * time.Minute
	// dbRecheckFloor: a package missing from the index refreshes its repo's
	// database at most this often, so unknown names cannot hammer mirrors.
	dbRecheckFloor = 10 * time.Second
)

// serveDB answers a repo database file (or its .sig) after revalidating it
// upstream; http.ServeContent turns the client's If-Modified-Since into 304.
func (g *Gateway) serveDB(w http.ResponseWriter, r *http.Request, t *target) {
	outcome, err := g.refreshDB(r.Context(), t.repo.Name, t.arch, t.file, g.cfg.DBMaxAge)
	if err != nil {
		g.fail(w, r, t, err)
		return
	}
	f, meta, err := g.cfg.Store.OpenDB(t.repo.Name, t.arch, t.file)
	if err != nil {
		g.fail(w, r, t, fmt.Errorf("open db %s/%s/%s: %w", t.repo.Name, t.arch, t.file, err))
		return
	}
	defer f.Close()
	setOutcome(w, outcome)
	w.Header().Set("Content-Type", "application/octet-stream")
	pw := g.progress(w)
	defer pw.finish()
	http.ServeContent(pw, r, "", meta.LastModified, f)
}

func dbKey(repo, arch, name string) string { return repo + "/" + arch + "/" + name }

// refreshDB makes sure the stored copy of a database file is the mirror's
// current one: a conditional GET shared by every concurrent caller. A copy
// confirmed less than maxAge ago is trusted without asking. It returns the
// outcome for the metrics.
func (g *Gateway) refreshDB(ctx context.Context, repo, arch, name string, maxAge time.Duration) (string, error) {
	key := dbKey(repo, arch, name)
	if maxAge > 0 && time.Since(g.dbState(key).confirmed) < maxAge {
		return outcomeHit, nil
	}
	ch := g.dbGroup.DoChan(key, func() (any, error) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dbFetchTimeout)
		defer cancel()
		return g.fetchDB(fctx, repo, arch, name)
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return "", res.Err
		}
		return res.Val.(string), nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

func (g *Gateway) dbState(key string) dbState {
	g.dbMu.Lock()
	defer g.dbMu.Unlock()
	return g.dbSeen[key]
}

func (g *Gateway) noteDB(key string, confirmed bool) {
	now := time.Now()
	g.dbMu.Lock()
	defer g.dbMu.Unlock()
	st := g.dbSeen[key]
	st.attempted = now
	if confirmed {
		st.confirmed = now
	}
	g.dbSeen[key] = st
}

// fetchDB does the conditional GET. When no mirror can be reached the stored
// copy is served (stale beats nothing); a mirror's 404 is final.
func (g *Gateway) fetchDB(ctx context.Context, repo, arch, name string) (outcome string, err error) {
	key := dbKey(repo, arch, name)
	confirmed := false
	defer func() { g.noteDB(key, confirmed) }()

	stored, have, err := g.storedDB(repo, arch, name)
	if err != nil {
		return "", err
	}
	resp, err := g.cfg.Fetcher.FetchDB(ctx, repo, arch, name, stored.LastModified)
	if err != nil {
		if have && !errors.Is(err, store.ErrNotFound) {
			g.log.Warn("upstream unreachable, serving stored db", "repo", repo, "arch", arch, "file", name, "err", err)
			return outcomeStale, nil
		}
		return "", err // the Fetcher's error names the db already
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
		if !have {
			return "", fmt.Errorf("fetch db %s: %w: 304 without a stored copy", key, ErrUpstream)
		}
		confirmed = true
		return outcomeHit, nil
	case http.StatusOK:
	default:
		return "", fmt.Errorf("fetch db %s: %w: status %d", key, ErrUpstream, resp.StatusCode)
	}
	lastMod := upstreamLastModified(resp)
	if have && lastMod.Before(stored.LastModified) {
		// A mirror lagging behind another must not roll the db back.
		g.log.Warn("upstream db older than stored, keeping stored", "repo", repo, "arch", arch, "file", name,
			"upstream", lastMod, "stored", stored.LastModified)
		confirmed = true
		return outcomeHit, nil
	}
	limit := int64(maxDBSize)
	if strings.HasSuffix(name, ".sig") {
		limit = maxSigSize
	}
	if _, err := g.cfg.Store.PutDB(repo, arch, name, &limitedReader{r: resp.Body, left: limit}, lastMod); err != nil {
		if have {
			g.log.Warn("upstream db unreadable, serving stored db", "repo", repo, "arch", arch, "file", name, "err", err)
			return outcomeStale, nil
		}
		return "", fmt.Errorf("store db %s: %w", key, err)
	}
	confirmed = true
	return outcomeMiss, nil
}

// storedDB is the stored copy's metadata, if any.
func (g *Gateway) storedDB(repo, arch, name string) (store.DBFile, bool, error) {
	f, meta, err := g.cfg.Store.OpenDB(repo, arch, name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return store.DBFile{}, false, nil
	case err != nil:
		return store.DBFile{}, false, fmt.Errorf("open db %s: %w", dbKey(repo, arch, name), err)
	}
	f.Close()
	return meta, true, nil
}

// upstreamLastModified is the mirror's Last-Modified, or now when it sent
// none (pacman needs one to send If-Modified-Since next time).
func upstreamLastModified(resp *http.Response) time.Time {
	if t, err := http.ParseTime(resp.Header.Get("Last-Modified")); err == nil {
		return t.UTC()
	}
	return time.Now().UTC().Truncate(time.Second)
}

// limitedReader fails, rather than truncating silently, past its limit.
type limitedReader struct {
	r    io.Reader
	left int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if int64(len(p)) > l.left+1 {
		p = p[:l.left+1] // one byte more than allowed tells too large from exact
	}
	n, err := l.r.Read(p)
	if int64(n) > l.left {
		return 0, ErrTooLarge
	}
	l.left -= int64(n)
	return n, err
}
