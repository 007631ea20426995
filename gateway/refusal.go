package gateway

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/flocon/flocon/gateway/status"
	"github.com/flocon/flocon/store"
	"github.com/flocon/flocon/verify"
)

// RefusalHeader names why a request was refused, in one of the reasons
// below; the plain-text body says it in words. pacman only shows the
// status; curl users and the status page see the reason.
const RefusalHeader = "X-Flocon-Refusal"

// refusal is one reason a request is refused: its stable name (the header,
// the metric label) and what a person reads.
type refusal struct {
	reason  string
	message string
}

// refusals maps errors to reasons, first match wins; the order puts the
// most specific verdicts first (a wrapped chain may carry several).
var refusals = []struct {
	err error
	refusal
}{
	{verify.ErrUnknownKey, refusal{status.ReasonUnknownKey, "the package is signed by a key that is not in the keyring; update archlinux-keyring"}},
	{verify.ErrUntrustedKey, refusal{"untrusted-key", "the package's signing key is not trusted by the keyring"}},
	{verify.ErrRevokedKey, refusal{"revoked-key", "the package's signing key is revoked"}},
	{verify.ErrDisabledKey, refusal{"disabled-key", "the package's signing key is disabled (listed as revoked by the keyring)"}},
	{verify.ErrExpiredKey, refusal{"expired-key", "the package's signing key has expired"}},
	{verify.ErrNoSignature, refusal{"no-signature", "the package has no signature and its repository requires one"}},
	{verify.ErrBadSignature, refusal{"bad-signature", "the package's signature does not match its bytes"}},
	{verify.ErrIdentityMismatch, refusal{"identity-mismatch", "the bytes are another package than the one named"}},
	{verify.ErrDigestMismatch, refusal{"digest-mismatch", "the bytes received are not the ones the repository database lists"}},
	{verify.ErrSizeMismatch, refusal{"size-mismatch", "the bytes received do not have the size the repository database lists"}},
	{store.ErrAborted, refusal{"download-aborted", "the download was abandoned before its bytes were proven"}},
	{ErrBadRequest, refusal{"bad-request", "not a file of a configured repository"}},
	{ErrBusy, refusal{"busy", "too many downloads in flight; retry shortly"}},
	{ErrTooLarge, refusal{"too-large", "the file exceeds its size limit"}},
	{ErrNotFound, refusal{"not-found", "no peer or mirror has this file"}},
	{store.ErrNotFound, refusal{"not-found", "no peer or mirror has this file"}},
	{verify.ErrBadFilename, refusal{"not-found", "not a package file name"}},
	{context.DeadlineExceeded, refusal{"timeout", "the sources did not answer in time"}},
	{store.ErrClosed, refusal{"shutting-down", "the daemon is shutting down"}},
	{ErrUpstream, refusal{"upstream", "the mirrors answered unexpectedly"}},
}

// refusalOf is why err refuses a request; anything unclassified is a
// source failure (unreachable mirrors, stalls).
func refusalOf(err error) refusal {
	for _, r := range refusals {
		if errors.Is(err, r.err) {
			return r.refusal
		}
	}
	return refusal{"sources-failed", "no source could deliver the file (mirrors unreachable or stalled)"}
}

// recentRefusals is how many refused requests the status page lists.
const recentRefusals = 10

// served counts what the gateway sent, for the status page.
type served struct {
	mu       sync.Mutex
	cache    int64
	download int64
	requests map[string]int64
	refusals map[string]int64
	recent   []status.Refusal // newest last
}

func newServed() *served {
	return &served{requests: map[string]int64{}, refusals: map[string]int64{}}
}

// request records one finished request.
func (s *served) request(kind, outcome string, bytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests[outcome]++
	if kind != kindPkg.String() {
		return
	}
	switch outcome {
	case outcomeHit:
		s.cache += bytes
	case outcomeMiss, outcomeJoin:
		s.download += bytes
	}
}

// refused records one refusal; path is empty unless validated.
func (s *served) refused(r refusal, code int, path string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refusals[r.reason]++
	if code == http.StatusNotFound {
		return // routine: pacman asks every server in turn
	}
	s.recent = append(s.recent, status.Refusal{Time: time.Now(), Path: path, Status: code, Reason: r.reason})
	if len(s.recent) > recentRefusals {
		s.recent = s.recent[len(s.recent)-recentRefusals:]
	}
}

// Served returns what the gateway sent since it started, for the status page.
func (g *Gateway) Served() status.Served {
	s := g.served
	s.mu.Lock()
	defer s.mu.Unlock()
	out := status.Served{
		CacheBytes: s.cache, DownloadBytes: s.download,
		Requests: make(map[string]int64, len(s.requests)), Refusals: make(map[string]int64, len(s.refusals)),
	}
	for k, v := range s.requests {
		out.Requests[k] = v
	}
	for k, v := range s.refusals {
		out.Refusals[k] = v
	}
	for i := len(s.recent) - 1; i >= 0; i-- {
		out.Recent = append(out.Recent, s.recent[i])
	}
	return out
}
