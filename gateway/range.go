package gateway

import (
	"errors"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"time"
)

// Range requests are answered by http.ServeContent, stored or in flight.
// The gateway still reads the Range header itself, the same way, for two
// reasons: to refuse a resume that would complete a partial file holding
// discarded bytes (refuseTaintedResume), and to correct the two answers of
// ServeContent that break RFC 9110 §14 (normalizeRange). FuzzParseRanges
// and FuzzIfRange hold these readings to what ServeContent does.

var (
	errBadRange  = errors.New("invalid range")
	errNoOverlap = errors.New("range starts past the end")
)

// byteRange is a range of a file of known size: [start, start+length).
type byteRange struct{ start, length int64 }

// parseRanges reads a Range header against a file of size bytes exactly as
// http.ServeContent does: nil for no header, errBadRange for a malformed
// one or another unit, errNoOverlap when every range starts past the end.
// Like ServeContent, a zero suffix ("-0") gives a range of length 0.
func parseRanges(h string, size int64) ([]byteRange, error) {
	if h == "" {
		return nil, nil
	}
	spec, ok := strings.CutPrefix(h, "bytes=")
	if !ok {
		return nil, errBadRange
	}
	var ranges []byteRange
	pastEnd := false
	for one := range strings.SplitSeq(spec, ",") {
		one = textproto.TrimString(one)
		if one == "" {
			continue
		}
		rg, err := parseOneRange(one, size)
		if errors.Is(err, errNoOverlap) {
			pastEnd = true
			continue
		}
		if err != nil {
			return nil, err
		}
		ranges = append(ranges, rg)
	}
	if pastEnd && len(ranges) == 0 {
		return nil, errNoOverlap
	}
	return ranges, nil
}

// parseOneRange reads "first-last", "first-" or "-suffix".
func parseOneRange(one string, size int64) (byteRange, error) {
	first, last, ok := strings.Cut(one, "-")
	if !ok {
		return byteRange{}, errBadRange
	}
	first, last = textproto.TrimString(first), textproto.TrimString(last)
	if first == "" { // the last n bytes
		if last == "" || last[0] == '-' {
			return byteRange{}, errBadRange
		}
		n, err := strconv.ParseInt(last, 10, 64)
		if err != nil || n < 0 {
			return byteRange{}, errBadRange
		}
		n = min(n, size)
		return byteRange{size - n, n}, nil
	}
	start, err := strconv.ParseInt(first, 10, 64)
	if err != nil || start < 0 {
		return byteRange{}, errBadRange
	}
	if start >= size {
		return byteRange{}, errNoOverlap
	}
	if last == "" {
		return byteRange{start, size - start}, nil
	}
	end, err := strconv.ParseInt(last, 10, 64)
	if err != nil || start > end {
		return byteRange{}, errBadRange
	}
	end = min(end, size-1)
	return byteRange{start, end - start + 1}, nil
}

// normalizeRange corrects, before ServeContent sees the request, the two
// Range headers it answers against RFC 9110 §14: a unit other than bytes
// must be ignored (ServeContent says 416), and a set whose only ranges are
// zero suffixes ("bytes=-0") is unsatisfiable (ServeContent sends a 206
// with an inverted Content-Range); zero suffixes among other ranges are
// dropped. It reports false when the answer is a 416.
func normalizeRange(r *http.Request) bool {
	h := r.Header.Get("Range")
	if h == "" {
		return true
	}
	spec, ok := strings.CutPrefix(h, "bytes=")
	if !ok {
		if unit, _, found := strings.Cut(h, "="); found && validRangeUnit(unit) {
			r.Header.Del("Range")
		}
		return true
	}
	var kept []string
	dropped := false
	for one := range strings.SplitSeq(spec, ",") {
		if isZeroSuffix(one) {
			dropped = true
			continue
		}
		kept = append(kept, one)
	}
	if !dropped {
		return true
	}
	rest := strings.Join(kept, ",")
	if textproto.TrimString(strings.ReplaceAll(rest, ",", "")) == "" {
		return false
	}
	r.Header.Set("Range", "bytes="+rest)
	return true
}

// validRangeUnit: a range unit is a token (RFC 9110 §14.1).
func validRangeUnit(u string) bool {
	if u == "" {
		return false
	}
	for _, c := range u {
		if c > 0x7e || c <= 0x20 || strings.ContainsRune("\"(),/:;<=>?@[\\]{}", c) {
			return false
		}
	}
	return true
}

// isZeroSuffix reports whether one range spec is "-0" (or "-000").
func isZeroSuffix(one string) bool {
	first, last, ok := strings.Cut(textproto.TrimString(one), "-")
	if !ok || textproto.TrimString(first) != "" {
		return false
	}
	last = textproto.TrimString(last)
	return last != "" && strings.Trim(last, "0") == ""
}

// ifRangeHolds reports whether the Range header applies given If-Range, as
// http.ServeContent decides it for GET and HEAD: no If-Range, an ETag that
// matches strongly, or an HTTP date equal to modtime to the second.
func ifRangeHolds(ir, etag string, modtime time.Time) bool {
	if ir == "" {
		return true
	}
	if tag, ok := leadingETag(textproto.TrimString(ir)); ok {
		return tag == etag && strings.HasPrefix(etag, `"`)
	}
	if modtime.IsZero() {
		return false
	}
	t, err := http.ParseTime(ir)
	return err == nil && t.Unix() == modtime.Unix()
}

// leadingETag reads the entity tag ("x" or W/"x") that opens s, if any.
func leadingETag(s string) (string, bool) {
	body := strings.TrimPrefix(s, "W/")
	if len(body) < 2 || body[0] != '"' {
		return "", false
	}
	for i := 1; i < len(body); i++ {
		switch c := body[i]; {
		case c == '"':
			return s[:len(s)-len(body)+i+1], true
		case c == 0x21 || (c >= 0x23 && c <= 0x7e) || c >= 0x80:
		default:
			return "", false
		}
	}
	return "", false
}
