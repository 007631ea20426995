package verify

import "strings"

// The one grammar of names in flocon. Every name that comes from a request,
// a peer, a database or a configuration (repo, architecture, file) is
// checked by these functions and nothing else, so that gateway, node and
// store agree on what exists. A name they accept is one path segment that
// never needs escaping except ':': no '/', '\', NUL, control or space, no
// leading '.' or '-', at most 255 bytes.

// maxName is the longest name: a file name longer than this exists on no
// file system.
const maxName = 255

// maxArch bounds an architecture name (x86_64, aarch64, any, ...).
const maxArch = 32

// ValidName reports whether s is a package name (alpm-package-name(7):
// [a-zA-Z0-9@._+-], not starting with '-' or '.'). Repository names and
// store namespaces follow the same rule.
func ValidName(s string) bool {
	if s == "" || len(s) > maxName || s[0] == '-' || s[0] == '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isNameChar(s[i]) {
			return false
		}
	}
	return true
}

func isNameChar(c byte) bool { return isAlnum(c) || strings.IndexByte("@._+-", c) >= 0 }

// ValidArch reports whether s is an architecture name: [a-z0-9_], at most
// 32 bytes. makepkg would also take upper case in arch=(), but pacman's
// Architecture (uname -m, "any") and every Arch port are lower case, and a
// request's arch must name one folder only.
func ValidArch(s string) bool {
	if s == "" || len(s) > maxArch {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || isDigit(c) || c == '_') {
			return false
		}
	}
	return true
}

// dbSuffixes are the names a repo database is published under
// (REPO.db is a link to REPO.db.tar.gz on Arch mirrors).
var dbSuffixes = []string{
	".db", ".files",
	".db.tar.gz", ".db.tar.zst", ".db.tar.xz", ".db.tar.bz2",
	".files.tar.gz", ".files.tar.zst", ".files.tar.xz", ".files.tar.bz2",
}

// DBFileRepo returns the repository whose database name is the file name
// (core.db, core.files.tar.gz, ...; no .sig), and whether it is one.
func DBFileRepo(name string) (string, bool) {
	for _, suf := range dbSuffixes {
		if repo, ok := strings.CutSuffix(name, suf); ok && ValidName(repo) {
			return repo, true
		}
	}
	return "", false
}

// ValidFileName reports whether name is a file pacman asks a repository
// folder for: a package file (ParsePkgFilename), a repo database
// (DBFileRepo), or the detached .sig of either.
func ValidFileName(name string) bool {
	if len(name) > maxName {
		return false
	}
	base := strings.TrimSuffix(name, ".sig")
	if _, ok := DBFileRepo(base); ok {
		return true
	}
	_, err := ParsePkgFilename(base)
	return err == nil
}
