package node

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
)

func TestContentRangeStart(t *testing.T) {
	t.Parallel()
	tests := []struct {
		h    string
		want int64
		ok   bool
	}{
		{"bytes 100-199/200", 100, true},
		{"bytes 0-0/1", 0, true},
		{"bytes 5-9/*", 5, true},
		{"bytes 100-199/150", 0, false}, // past the size
		{"bytes 9-5/10", 0, false},
		{"bytes +5-9/10", 0, false},
		{"bytes -5-9/10", 0, false},
		{"bytes 5-9", 0, false},
		{"bytes */10", 0, false},
		{"items 5-9/10", 0, false},
		{"bytes  5-9/10", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		got, err := contentRangeStart(tt.h)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("contentRangeStart(%q) = %d, %v; want %d ok=%v", tt.h, got, err, tt.want, tt.ok)
		}
	}
}

// FuzzContentRangeStart: an accepted Content-Range is exactly
// "bytes FIRST-LAST/SIZE" with FIRST <= LAST < SIZE, and its start is FIRST.
func FuzzContentRangeStart(f *testing.F) {
	for _, s := range []string{"bytes 0-9/10", "bytes 5-9/*", "bytes 9-5/10", "bytes +1-2/3", "bytes 1-2/2",
		"bytes 99999999999999999999-1/2", "bytes 0-0/0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		start, err := contentRangeStart(h)
		if err != nil {
			return
		}
		var first, last int64
		var size string
		spec := strings.TrimPrefix(h, "bytes ")
		if n, _ := fmt.Sscanf(strings.ReplaceAll(strings.Replace(spec, "-", " ", 1), "/", " "), "%d %d %s", &first, &last, &size); n != 3 {
			t.Fatalf("accepted %q", h)
		}
		if start != first || first < 0 || last < first {
			t.Fatalf("accepted %q as start %d", h, start)
		}
		if size != "*" {
			n, err := strconv.ParseInt(size, 10, 64)
			if err != nil || last >= n {
				t.Fatalf("accepted %q: range past the size", h)
			}
		}
		canon := strings.TrimLeft(spec, "0123456789-/*")
		if canon != "" {
			t.Fatalf("accepted %q with %q left over", h, canon)
		}
	})
}
