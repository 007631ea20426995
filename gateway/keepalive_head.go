package gateway

import (
	"bytes"
	"net/http"
)

// Which requests the keep-alive path answers: plainRequest judges a
// request net/http parsed (the one that hijacks a connection), headEnd and
// parseHead a raw head the path peeked at (every request after it), by the
// same rules. Anything they refuse is net/http's.

// plainRequest: r (as net/http parsed it) is a GET the keep-alive path may
// answer, judged as parseHead judges a raw head.
func plainRequest(r *http.Request) bool {
	if r.Method != http.MethodGet || r.ProtoMajor != 1 || r.ProtoMinor != 1 || r.Close ||
		r.ContentLength != 0 || len(r.TransferEncoding) > 0 || len(r.Trailer) > 0 ||
		r.RequestURI != r.URL.Path || !plainPath([]byte(r.RequestURI)) || !validHost([]byte(r.Host)) {
		return false
	}
	for name, values := range r.Header {
		for _, v := range values {
			if !plainHeader([]byte(name), []byte(v)) {
				return false
			}
		}
	}
	return true
}

// plainHeaders are the request headers that change nothing in the answer
// to a GET of a stored file (besides Host, and Connection: keep-alive).
var plainHeaders = [][]byte{[]byte("Accept"), []byte("Accept-Encoding"), []byte("Accept-Language"),
	[]byte("Cache-Control"), []byte("Pragma"), []byte("User-Agent")}

func plainHeader(name, value []byte) bool {
	if !plainValue(value) {
		return false
	}
	if bytes.EqualFold(name, []byte("Connection")) {
		return bytes.EqualFold(value, []byte("keep-alive"))
	}
	for _, h := range plainHeaders {
		if bytes.EqualFold(name, h) {
			return true
		}
	}
	return false
}

// plainValue: visible ASCII, with spaces and tabs inside.
func plainValue(v []byte) bool {
	for _, c := range v {
		if (c < 0x20 && c != '\t') || c >= 0x7f {
			return false
		}
	}
	return true
}

func validHost(h []byte) bool {
	if len(h) == 0 {
		return false
	}
	for _, c := range h {
		if !isAlnumByte(c) && bytes.IndexByte([]byte(".-_:[]"), c) < 0 {
			return false
		}
	}
	return true
}

// plainPath: an absolute path with only the characters of repo, arch and
// file names, so its escaped and unescaped forms are the same bytes (no
// %, no query).
func plainPath(p []byte) bool {
	if len(p) == 0 || p[0] != '/' {
		return false
	}
	for _, c := range p {
		if !isAlnumByte(c) && bytes.IndexByte([]byte("/._+-@:"), c) < 0 {
			return false
		}
	}
	return true
}

func isAlnumByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// headEnd is the length of the request head at the start of buf (up to and
// including its blank line, bare LFs counted as net/http counts them), or 0
// while it is incomplete.
func headEnd(buf []byte) int {
	for i := 0; ; {
		j := bytes.IndexByte(buf[i:], '\n')
		if j < 0 {
			return 0
		}
		k := i + j + 1
		switch {
		case k < len(buf) && buf[k] == '\n':
			return k + 1
		case k+1 < len(buf) && buf[k] == '\r' && buf[k+1] == '\n':
			return k + 2
		}
		i = k
	}
}

// parseHead returns the path of a complete request head when it is a
// plain GET (see plainRequest), strictly formed: CRLF line ends, one Host.
func parseHead(head []byte) (string, bool) {
	line, rest, ok := cutLine(head)
	path, okGET := bytes.CutPrefix(line, []byte("GET "))
	path, okProto := bytes.CutSuffix(path, []byte(" HTTP/1.1"))
	if !ok || !okGET || !okProto || !plainPath(path) {
		return "", false
	}
	hosts := 0
	for {
		if line, rest, ok = cutLine(rest); !ok {
			return "", false
		}
		if len(line) == 0 {
			return string(path), hosts == 1 && len(rest) == 0
		}
		name, value, found := bytes.Cut(line, []byte(":"))
		value = bytes.Trim(value, " \t")
		switch {
		case !found:
			return "", false
		case bytes.EqualFold(name, []byte("Host")):
			hosts++
			if !validHost(value) {
				return "", false
			}
		case !plainHeader(name, value):
			return "", false
		}
	}
}

// cutLine cuts a CRLF-ended line holding no other CR or LF.
func cutLine(b []byte) (line, rest []byte, ok bool) {
	i := bytes.Index(b, []byte("\r\n"))
	if i < 0 || bytes.ContainsAny(b[:i], "\r\n") {
		return nil, nil, false
	}
	return b[:i], b[i+2:], true
}
