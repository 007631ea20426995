package verify

import (
	"fmt"
	"strings"
)

// PkgFile is a parsed package file name NAME-[EPOCH:]PKGVER-PKGREL-ARCH.pkg.tar[.EXT].
type PkgFile struct {
	Name    string
	Version string // [epoch:]pkgver-pkgrel
	Arch    string
	Ext     string // e.g. ".pkg.tar.zst"
}

// pkgExts are the package extensions makepkg can produce (PKGEXT).
var pkgExts = []string{
	".pkg.tar.zst", ".pkg.tar.xz", ".pkg.tar.gz", ".pkg.tar.bz2", ".pkg.tar.lrz",
	".pkg.tar.lzo", ".pkg.tar.lz4", ".pkg.tar.lz", ".pkg.tar.Z", ".pkg.tar",
}

// ParsePkgFilename parses a package file name (no directory, no .sig);
// errors wrap ErrBadFilename.
func ParsePkgFilename(name string) (PkgFile, error) {
	bad := func(why string) (PkgFile, error) {
		return PkgFile{}, fmt.Errorf("parse %q: %w: %s", name, ErrBadFilename, why)
	}
	if len(name) > maxName {
		return bad("longer than 255 bytes")
	}
	var f PkgFile
	for _, ext := range pkgExts {
		if strings.HasSuffix(name, ext) {
			f.Ext = ext
			break
		}
	}
	if f.Ext == "" {
		return bad("no package extension")
	}
	parts := strings.Split(strings.TrimSuffix(name, f.Ext), "-")
	if len(parts) < 4 {
		return bad("want NAME-VERSION-REL-ARCH")
	}
	n := len(parts)
	f.Name = strings.Join(parts[:n-3], "-")
	ver, rel := parts[n-3], parts[n-2]
	f.Version = ver + "-" + rel
	f.Arch = parts[n-1]
	switch {
	case !ValidName(f.Name):
		return bad("invalid package name")
	case !validPkgver(ver):
		return bad("invalid pkgver")
	case !validPkgrel(rel):
		return bad("invalid pkgrel")
	case !ValidArch(f.Arch):
		return bad("invalid arch")
	}
	return f, nil
}

// String is the file name again.
func (f PkgFile) String() string { return f.Identity() + f.Ext }

// Identity is NAME-VERSION-ARCH: what a package is, whatever its file is called.
func (f PkgFile) Identity() string { return f.Name + "-" + f.Version + "-" + f.Arch }

// validPkgver accepts [epoch:]pkgver. alpm-pkgver(7) allows any printable
// ASCII but ':', '/', '-', '<', '>', '=' and space; flocon keeps to the
// characters of package names ([a-zA-Z0-9@._+]), the ones every Arch
// version uses and a URL carries unescaped (names.go).
func validPkgver(s string) bool {
	if i := strings.IndexByte(s, ':'); i >= 0 {
		if i == 0 || !allDigits(s[:i]) {
			return false
		}
		s = s[i+1:]
	}
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isNameChar(s[i]) || s[i] == '-' {
			return false
		}
	}
	return true
}

// validPkgrel accepts N or N.M (alpm-pkgrel(7)).
func validPkgrel(s string) bool {
	maj, minor, dot := strings.Cut(s, ".")
	return allDigits(maj) && (!dot || allDigits(minor))
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isAlpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isAlnum(c byte) bool { return isDigit(c) || isAlpha(c) }

// Vercmp compares two [epoch:]ver[-rel] versions exactly like libalpm's
// alpm_pkg_vercmp: <0, 0, >0.
func Vercmp(a, b string) int {
	// libalpm works on C strings: anything after a NUL does not exist.
	a, _, _ = strings.Cut(a, "\x00")
	b, _, _ = strings.Cut(b, "\x00")
	if a == b {
		return 0
	}
	e1, v1, r1, hasRel1 := parseEVR(a)
	e2, v2, r2, hasRel2 := parseEVR(b)
	if c := rpmvercmp(e1, e2); c != 0 {
		return c
	}
	if c := rpmvercmp(v1, v2); c != 0 || !hasRel1 || !hasRel2 {
		return c
	}
	return rpmvercmp(r1, r2)
}

// parseEVR splits [epoch:]version[-release] like libalpm's parseEVR.
func parseEVR(evr string) (epoch, version, release string, hasRel bool) {
	s := 0
	for s < len(evr) && isDigit(evr[s]) {
		s++
	}
	rest := evr
	epoch = "0"
	if s < len(evr) && evr[s] == ':' {
		if s > 0 {
			epoch = evr[:s]
		}
		rest = evr[s+1:]
		s = 0
	} else {
		rest = evr
	}
	// the release separator is the last '-' after the epoch digits
	if i := strings.LastIndexByte(rest[s:], '-'); i >= 0 {
		return epoch, rest[:s+i], rest[s+i+1:], true
	}
	return epoch, rest, "", false
}

// rpmvercmp is libalpm's rpmvercmp (lib/libalpm/version.c), segment by
// segment; one function, like the C, so the two can be compared line by line.
func rpmvercmp(a, b string) int {
	if a == b {
		return 0
	}
	one, two := 0, 0   // start of the current segment
	ptr1, ptr2 := 0, 0 // end of the previous segment
	at := func(s string, i int) byte {
		if i < len(s) {
			return s[i]
		}
		return 0
	}
	for one < len(a) && two < len(b) {
		for one < len(a) && !isAlnum(a[one]) {
			one++
		}
		for two < len(b) && !isAlnum(b[two]) {
			two++
		}
		if one >= len(a) || two >= len(b) {
			break
		}
		if one-ptr1 != two-ptr2 { // separator lengths differ
			if one-ptr1 < two-ptr2 {
				return -1
			}
			return 1
		}
		ptr1, ptr2 = one, two
		isNum := isDigit(a[ptr1])
		class := isAlpha
		if isNum {
			class = isDigit
		}
		for ptr1 < len(a) && class(a[ptr1]) {
			ptr1++
		}
		for ptr2 < len(b) && class(b[ptr2]) {
			ptr2++
		}
		if two == ptr2 { // different segment types: numeric is newer
			if isNum {
				return 1
			}
			return -1
		}
		seg1, seg2 := a[one:ptr1], b[two:ptr2]
		if isNum {
			seg1 = strings.TrimLeft(seg1, "0")
			seg2 = strings.TrimLeft(seg2, "0")
			if len(seg1) != len(seg2) {
				if len(seg1) > len(seg2) {
					return 1
				}
				return -1
			}
		}
		if c := strings.Compare(seg1, seg2); c != 0 {
			return c
		}
		one, two = ptr1, ptr2
	}
	c1, c2 := at(a, one), at(b, two)
	if c1 == 0 && c2 == 0 {
		return 0
	}
	// a remaining alpha segment never beats an empty string
	if (c1 == 0 && !isAlpha(c2)) || isAlpha(c1) {
		return -1
	}
	return 1
}
