package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/flocon/flocon/store"
	"github.com/flocon/flocon/verify"
)

func TestStatusOf(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"store not found", fmt.Errorf("entry core/x: %w", store.ErrNotFound), http.StatusNotFound},
		{"gateway not found", ErrNotFound, http.StatusNotFound},
		{"bad filename", verify.ErrBadFilename, http.StatusNotFound},
		{"digest", &verify.DigestMismatchError{Want: []byte{1}, Got: []byte{2}}, http.StatusBadGateway},
		{"signature", fmt.Errorf("x: %w", verify.ErrBadSignature), http.StatusBadGateway},
		{"revoked", verify.ErrRevokedKey, http.StatusBadGateway},
		{"aborted", store.ErrAborted, http.StatusBadGateway},
		{"deadline", fmt.Errorf("fetch: %w", context.DeadlineExceeded), http.StatusGatewayTimeout},
		{"busy", ErrBusy, http.StatusTooManyRequests},
		{"bad request", ErrBadRequest, http.StatusBadRequest},
		{"closed", store.ErrClosed, http.StatusServiceUnavailable},
		{"other", errors.New("connection refused"), http.StatusBadGateway},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := statusOf(tt.err); got != tt.want {
				t.Fatalf("statusOf(%v) = %d, want %d", tt.err, got, tt.want)
			}
		})
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		repos []Repo
	}{
		{"bad repo name", []Repo{{Name: "../etc"}}},
		{"duplicate repo", []Repo{{Name: "core"}, {Name: "core"}}},
		{"bad arch", []Repo{{Name: "core", Arches: []string{"x86/64"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := indexRepos(tt.repos); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	if _, err := New(Config{}); err == nil {
		t.Fatal("New without store and fetcher accepted")
	}
}
