package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/flocon/flocon/store"
)

// failingReader gives its data, then err.
type failingReader struct {
	data []byte
	err  error
}

func (f *failingReader) Read(b []byte) (int, error) {
	if len(f.data) == 0 {
		return 0, f.err
	}
	n := copy(b, f.data)
	f.data = f.data[n:]
	return n, nil
}

func (f *failingReader) Close() error { return nil }

func TestFollowReader(t *testing.T) {
	t.Parallel()
	blob := bytes.Repeat([]byte("0123456789"), 1000)
	errGone := errors.New("open tmp/dl-1: no such file or directory")
	errThrownAway := fmt.Errorf("read: %w", store.ErrTruncated)
	tests := []struct {
		name      string
		start     int64
		before    int // bytes the download reader gives before failing
		readErr   error
		committed bool
		wantErr   bool
	}{
		{"fails at once, committed", 0, 0, errGone, true, false},
		{"fails midway, committed", 0, 4000, errGone, true, false},
		{"ranged, fails midway, committed", 2500, 3000, errGone, true, false},
		{"fails midway, aborted", 0, 4000, errGone, false, true},
		// A lying source's bytes were discarded: never glue the good tail on.
		{"truncated under the reader, committed", 0, 4000, errThrownAway, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var reopenedAt int64 = -1
			f := &followReader{
				rd:  &failingReader{data: blob[tt.start : tt.start+int64(tt.before)], err: tt.readErr},
				off: tt.start,
				reopen: func(off int64) (io.ReadCloser, bool) {
					reopenedAt = off
					if !tt.committed {
						return nil, false
					}
					return io.NopCloser(bytes.NewReader(blob[off:])), true
				},
			}
			got, err := io.ReadAll(f)
			if tt.wantErr {
				if !errors.Is(err, tt.readErr) || len(got) != tt.before {
					t.Fatalf("got %d bytes, err %v; want %d bytes then the reader's error", len(got), err, tt.before)
				}
				return
			}
			if err != nil || !bytes.Equal(got, blob[tt.start:]) {
				t.Fatalf("got %d bytes, err %v", len(got), err)
			}
			if reopenedAt != tt.start+int64(tt.before) {
				t.Fatalf("reopened at %d, want %d", reopenedAt, tt.start+int64(tt.before))
			}
		})
	}
}

func TestLimitedReader(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		size    int
		limit   int64
		wantErr error
	}{
		{"under", 10, 20, nil},
		{"exact", 20, 20, nil},
		{"over by one", 21, 20, ErrTooLarge},
		{"far over", 1 << 20, 20, ErrTooLarge},
		{"empty", 0, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			data := bytes.Repeat([]byte{'x'}, tt.size)
			got, err := io.ReadAll(&limitedReader{r: bytes.NewReader(data), left: tt.limit})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr == nil && !bytes.Equal(got, data) {
				t.Fatalf("got %d bytes, want %d", len(got), len(data))
			}
			if int64(len(got)) > tt.limit {
				t.Fatalf("passed %d bytes over a limit of %d", len(got), tt.limit)
			}
		})
	}
}
