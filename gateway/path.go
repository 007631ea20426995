package gateway

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/flocon/flocon/verify"
)

// fileKind is what a request names inside a repo directory.
type fileKind int

const (
	kindDB     fileKind = iota // a repo database or files database, or its .sig
	kindPkg                    // a package file
	kindPkgSig                 // the detached signature of a package file
)

func (k fileKind) String() string {
	switch k {
	case kindDB:
		return "db"
	case kindPkg:
		return "pkg"
	default:
		return "sig"
	}
}

// target is a validated request: every field is safe to log and to use as a
// store key; none of it is ever a file-system path.
type target struct {
	repo Repo
	arch string
	file string // the requested file name
	pkg  string // the package file name (file without .sig) for kindPkg/kindPkgSig
	kind fileKind
}

// checkRawPath refuses, before any routing, the paths Go's mux would clean
// and redirect and the segments that only make sense as file-system tricks:
// empty, "." and ".." segments (also %-encoded), an encoded "/" or "\", NUL
// and other control characters.
func checkRawPath(r *http.Request) error {
	return checkEscapedPath(r.URL.EscapedPath())
}

// checkEscapedPath is checkRawPath of a request's escaped path.
func checkEscapedPath(path string) error {
	segs := strings.Split(path, "/")
	if len(segs) < 2 || segs[0] != "" {
		return fmt.Errorf("%w: not an absolute path", ErrBadRequest)
	}
	for i, raw := range segs[1:] {
		seg, err := url.PathUnescape(raw)
		if err != nil {
			return fmt.Errorf("%w: bad escape", ErrBadRequest)
		}
		last := i == len(segs)-2
		switch {
		case seg == "" && !last, seg == ".", seg == "..":
			return fmt.Errorf("%w: empty or dot segment", ErrBadRequest)
		case strings.ContainsAny(seg, "/\\"):
			return fmt.Errorf("%w: encoded separator", ErrBadRequest)
		case strings.ContainsFunc(seg, isControl):
			return fmt.Errorf("%w: control character", ErrBadRequest)
		}
	}
	return nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// parseTarget validates the three path values of a pacman mirror request.
// Unknown repos, arches and file kinds are not found (404); malformed values
// are bad requests (400).
func (g *Gateway) parseTarget(repoName, arch, file string) (target, error) {
	repo, ok := g.repos[repoName]
	if !ok {
		return target{}, fmt.Errorf("%w: unknown repo", ErrNotFound)
	}
	if !verify.ValidArch(arch) {
		return target{}, fmt.Errorf("%w: malformed arch", ErrBadRequest)
	}
	if len(repo.Arches) > 0 && !contains(repo.Arches, arch) {
		return target{}, fmt.Errorf("%w: arch not served for this repo", ErrNotFound)
	}
	if !verify.ValidFileName(file) {
		if verify.ValidName(file) { // well formed, but no file pacman asks for
			return target{}, fmt.Errorf("%w: neither a database nor a package", ErrNotFound)
		}
		return target{}, fmt.Errorf("%w: malformed file name", ErrBadRequest)
	}
	t := target{repo: repo, arch: arch, file: file}
	base, isSig := strings.CutSuffix(file, ".sig")
	if r, ok := verify.DBFileRepo(base); ok && r == repo.Name {
		t.kind = kindDB
		return t, nil
	}
	if _, err := verify.ParsePkgFilename(base); err != nil {
		return target{}, fmt.Errorf("%w: neither a database nor a package", ErrNotFound)
	}
	t.pkg, t.kind = base, kindPkg
	if isSig {
		t.kind = kindPkgSig
	}
	return t, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
