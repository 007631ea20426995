package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/flocon/flocon/gateway/status"
	"github.com/flocon/flocon/store"
	"github.com/flocon/flocon/verify"
)

func TestRefusalOf(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"unknown key", fmt.Errorf("fetch x: %w", verify.ErrUnknownKey), status.ReasonUnknownKey},
		{"bad bytes", &verify.DigestMismatchError{}, "digest-mismatch"},
		{"aborted for bad bytes", fmt.Errorf("%w: %w", store.ErrAborted, verify.ErrDigestMismatch), "digest-mismatch"},
		{"nowhere", fmt.Errorf("fetch: %w", store.ErrNotFound), "not-found"},
		{"busy", ErrBusy, "busy"},
		{"mirrors down", errors.New("dial tcp: connection refused"), "sources-failed"},
		{"slow", context.DeadlineExceeded, "timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := refusalOf(tt.err); got.reason != tt.want || got.message == "" {
				t.Errorf("refusalOf(%v) = %+v, want reason %q with a message", tt.err, got, tt.want)
			}
		})
	}
}

func TestRefusalIsReadable(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	pkg := newTestPkg(t, "newkey", "1.0-1", 1000, nil)
	e.publish(t, dbTime, pkg)
	e.sync(t)
	ch := make(chan *http.Response, 1)
	go func() {
		resp := e.do(t, http.MethodGet, "/core/os/x86_64/"+pkg.filename, nil)
		ch <- resp
	}()
	p := e.awaitStart(t)
	p.Abort(fmt.Errorf("fetch %s: %w", pkg.filename, verify.ErrUnknownKey))
	resp := <-ch
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || resp.Header.Get(RefusalHeader) != status.ReasonUnknownKey {
		t.Fatalf("status %d, %s %q; want 502 with reason %q", resp.StatusCode, RefusalHeader,
			resp.Header.Get(RefusalHeader), status.ReasonUnknownKey)
	}
	if !strings.Contains(string(body), "not in the keyring") || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Errorf("body %q (%s), want the reason in words as plain text", body, resp.Header.Get("Content-Type"))
	}
	s := e.g.Served()
	if s.Refusals[status.ReasonUnknownKey] != 1 || len(s.Recent) != 1 ||
		s.Recent[0].Path != "core/os/x86_64/"+pkg.filename || s.Recent[0].Status != http.StatusBadGateway {
		t.Errorf("served = %+v, want the refusal counted and listed", s)
	}
}

// fixedSource is a status.Source with nothing to say.
type fixedSource struct{}

func (fixedSource) Snapshot(context.Context) (status.Snapshot, error) {
	return status.Snapshot{Version: "test", Keyring: status.Keyring{Valid: 1}}, nil
}

func TestStatusPageOnTheGateway(t *testing.T) {
	t.Parallel()
	without := newEnv(t, Config{})
	if resp, _ := without.get(t, http.MethodGet, "/", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("without a status source, / = %d, want 404", resp.StatusCode)
	}
	e := newEnv(t, Config{Status: fixedSource{}})
	pkg := newTestPkg(t, "cached", "1.0-1", 5000, nil)
	e.publishStored(t, pkg)
	// Served in-process: the request is counted when ServeHTTP returns
	// (over a socket the client may see the body first).
	hit := httptest.NewRecorder()
	e.g.ServeHTTP(hit, httptest.NewRequest(http.MethodGet, "/core/os/x86_64/"+pkg.filename, nil))
	if hit.Code != http.StatusOK {
		t.Fatalf("hit: %d", hit.Code)
	}
	resp, body := e.get(t, http.MethodGet, "/", nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `data-cache-bytes="5000"`) {
		t.Errorf("page: %d, want 200 with 5000 bytes from cache:\n%s", resp.StatusCode, body)
	}
	resp, body = e.get(t, http.MethodGet, "/status.json", nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"cacheBytes": 5000`) {
		t.Errorf("status.json: %d %s", resp.StatusCode, body)
	}
	if resp, _ := e.get(t, http.MethodGet, "/index.html", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("/index.html = %d, want 404 (only / is the page)", resp.StatusCode)
	}
	_, body = e.get(t, http.MethodGet, "/metrics", nil)
	if !strings.Contains(string(body), `flocon_served_bytes_total{source="cache"} 5000`) {
		t.Errorf("metrics lack the cache bytes:\n%s", body)
	}
}
