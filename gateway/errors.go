package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/flocon/flocon/store"
	"github.com/flocon/flocon/verify"
)

// Sentinel errors of the gateway. Errors from store and verify are mapped
// alongside them by statusOf.
var (
	ErrBadRequest = errors.New("malformed request")
	ErrNotFound   = errors.New("not found")
	ErrBusy       = errors.New("too many downloads in flight")
	ErrUpstream   = errors.New("upstream answered unexpectedly")
	ErrTooLarge   = errors.New("file exceeds its size limit")
)

// retryAfter is what a busy gateway tells clients to wait, in seconds.
const retryAfter = 5

// statusOf is the one mapping from errors to HTTP status codes.
func statusOf(err error) int {
	switch {
	case errors.Is(err, ErrBadRequest):
		return http.StatusBadRequest
	case errors.Is(err, ErrBusy):
		return http.StatusTooManyRequests
	case errors.Is(err, ErrNotFound), errors.Is(err, store.ErrNotFound), errors.Is(err, verify.ErrBadFilename):
		return http.StatusNotFound
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	case errors.Is(err, store.ErrClosed):
		return http.StatusServiceUnavailable
	default:
		// Bytes that are not the ones Arch signed (the verify sentinels,
		// store.ErrAborted), ErrUpstream, ErrTooLarge and mirrors that
		// cannot be reached: as a gateway, 502.
		return http.StatusBadGateway
	}
}

// fail answers err with its status, the reason in the RefusalHeader and a
// plain-text body saying it in words, with no user input.
// Not-found is routine (pacman asks every server in turn), so it logs at
// debug level; every other refusal is a warning.
func (g *Gateway) fail(w http.ResponseWriter, r *http.Request, t *target, err error) {
	code := statusOf(err)
	level := slog.LevelWarn
	if code == http.StatusNotFound {
		level = slog.LevelDebug
	}
	why := refusalOf(err)
	args := []any{"status", code, "reason", why.reason, "err", err}
	path := ""
	if t != nil { // validated, so safe to log
		args = append(args, "repo", t.repo.Name, "arch", t.arch, "file", t.file)
		path = t.repo.Name + "/os/" + t.arch + "/" + t.file
	}
	g.log.Log(r.Context(), level, "request refused", args...)
	g.served.refused(why, code, path)
	if code == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
	}
	h := w.Header()
	h.Del("Content-Length")
	h.Del("Content-Range")
	h.Del("ETag")
	h.Del("Last-Modified")
	h.Set(RefusalHeader, why.reason)
	http.Error(w, fmt.Sprintf("%d %s: %s (%s)", code, http.StatusText(code), why.message, why.reason), code)
}
