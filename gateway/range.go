package gateway

import (
	"errors"
	"strconv"
	"strings"
)

var (
	errMultiRange    = errors.New("multiple ranges")
	errUnsatisfiable = errors.New("range not satisfiable")
)

// byteRange is a validated range of a file of known size: length >= 1.
type byteRange struct{ start, length int64 }

// parseRange reads a Range header against a file of size bytes (size < 0:
// unknown). ranged is false when the whole file is wanted: no header, or a
// unit other than bytes (which must be ignored). A set of several ranges is
// errMultiRange; a malformed or unsatisfiable one is errUnsatisfiable.
func parseRange(h string, size int64) (rng byteRange, ranged bool, err error) {
	spec, ok := strings.CutPrefix(h, "bytes=")
	if h == "" || !ok {
		return byteRange{0, size}, false, nil
	}
	if strings.Contains(spec, ",") {
		return byteRange{}, true, errMultiRange
	}
	if size < 0 {
		return byteRange{}, true, errMultiRange // only the finished file can answer
	}
	first, last, ok := strings.Cut(strings.TrimSpace(spec), "-")
	if !ok {
		return byteRange{}, true, errUnsatisfiable
	}
	if first == "" { // suffix: the last n bytes
		n, err := strconv.ParseInt(last, 10, 64)
		if err != nil || n <= 0 || size == 0 {
			return byteRange{}, true, errUnsatisfiable
		}
		n = min(n, size)
		return byteRange{size - n, n}, true, nil
	}
	start, err := strconv.ParseInt(first, 10, 64)
	if err != nil || start < 0 || start >= size {
		return byteRange{}, true, errUnsatisfiable
	}
	end := size - 1
	if last != "" {
		e, err := strconv.ParseInt(last, 10, 64)
		if err != nil || e < start {
			return byteRange{}, true, errUnsatisfiable
		}
		end = min(e, size-1)
	}
	return byteRange{start, end - start + 1}, true, nil
}
