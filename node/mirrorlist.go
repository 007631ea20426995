package node

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
)

// DefaultMirrorlist is where pacman keeps its upstream mirrors.
const DefaultMirrorlist = "/etc/pacman.d/mirrorlist"

// selfAddrs are the addresses at which pacman usually reaches flocon; a
// mirrorlist line pointing there is flocon itself and would loop.
var selfAddrs = []string{"127.0.0.1:19433", "localhost:19433", "[::1]:19433"}

// ParseMirrorlist reads a pacman mirrorlist: every `Server = URL` line, in
// order. Comments (also commented-out `#Server` lines), blank lines, section
// headers and other directives (CacheServer, Include, ...) are skipped, as
// are servers pacman can reach but flocon cannot fetch from (file://, ftp://)
// and any server at flocon's own address: the usual local ones and each
// host:port of self (e.g. the configured listen address; a listen host of
// "", 0.0.0.0 or :: matches any loopback host). An empty result is not an
// error: the caller picks its fallback (BuiltinMirrors).
func ParseMirrorlist(r io.Reader, self []string) ([]string, error) {
	selves := append(append([]string(nil), selfAddrs...), self...)
	var out []string
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		server, err := parseMirrorlistLine(sc.Text())
		if err != nil {
			return nil, fmt.Errorf("mirrorlist line %d: %w", line, err)
		}
		if server == "" {
			continue
		}
		u, err := url.Parse(server)
		if err != nil {
			return nil, fmt.Errorf("mirrorlist line %d: %w: %w", line, ErrBadMirror, err)
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			continue
		}
		if u.Host == "" {
			return nil, fmt.Errorf("mirrorlist line %d: %q has no host: %w", line, server, ErrBadMirror)
		}
		if pointsAtSelf(u, selves) {
			continue
		}
		out = append(out, server)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mirrorlist: %w", err)
	}
	return out, nil
}

// parseMirrorlistLine returns the URL of a `Server = URL` line, "" for any
// line to skip, and an error for a line that is not pacman config syntax.
func parseMirrorlistLine(text string) (string, error) {
	if i := strings.IndexByte(text, '#'); i >= 0 {
		text = text[:i]
	}
	text = strings.TrimSpace(text)
	if text == "" || (strings.HasPrefix(text, "[") && strings.HasSuffix(text, "]")) {
		return "", nil
	}
	key, value, ok := strings.Cut(text, "=")
	if !ok {
		return "", fmt.Errorf("%q is not a `Key = value` line: %w", text, ErrBadMirror)
	}
	if strings.TrimSpace(key) != "Server" {
		return "", nil
	}
	value = strings.TrimSpace(value)
	if value == "" {
		return "", fmt.Errorf("server without URL: %w", ErrBadMirror)
	}
	return value, nil
}

// pointsAtSelf reports whether u's host:port is one of selves.
func pointsAtSelf(u *url.URL, selves []string) bool {
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	for _, s := range selves {
		sHost, sPort, err := net.SplitHostPort(s)
		if err != nil || sPort != port {
			continue
		}
		sHost = strings.ToLower(sHost)
		switch {
		case sHost == host:
			return true
		case isLoopback(host) && (isLoopback(sHost) || isUnspecified(sHost)):
			return true
		}
	}
	return false
}

func isLoopback(host string) bool {
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func isUnspecified(host string) bool {
	if host == "" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsUnspecified()
}
