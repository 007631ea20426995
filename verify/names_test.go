package verify

import (
	"errors"
	"strings"
	"testing"
)

func TestNames(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", 250)
	tests := []struct {
		name             string
		in               string
		validName, arch  bool
		fileName, dbFile bool
	}{
		{name: "repo", in: "core", validName: true, arch: true},
		{name: "repo with symbols", in: "my-repo_1.x+y@z", validName: true},
		{name: "arch", in: "x86_64", validName: true, arch: true},
		{name: "upper-case arch", in: "ARMv7H", validName: true},
		{name: "db", in: "core.db", validName: true, fileName: true, dbFile: true},
		{name: "files db tar", in: "extra.files.tar.zst", validName: true, fileName: true, dbFile: true},
		{name: "db sig", in: "core.db.sig", validName: true, fileName: true},
		{name: "package", in: "hello-1.0-1-x86_64.pkg.tar.zst", validName: true, fileName: true},
		{name: "package sig", in: "hello-1.0-1-x86_64.pkg.tar.zst.sig", validName: true, fileName: true},
		{name: "epoch", in: "p2phello-1:1.2.10-1-any.pkg.tar.zst", fileName: true},
		{name: "empty", in: ""},
		{name: "dot", in: "."},
		{name: "dotdot", in: ".."},
		{name: "hidden", in: ".core.db"},
		{name: "dash", in: "-core.db"},
		{name: "slash", in: "a/core.db"},
		{name: "backslash", in: `a\core.db`},
		{name: "nul", in: "core\x00.db"},
		{name: "space", in: "my repo"},
		{name: "tilde version", in: "hello-1.0~rc1-1-x86_64.pkg.tar.zst"},
		{name: "percent", in: "hello-1%2e0-1-x86_64.pkg.tar.zst"},
		{name: "db without repo", in: ".db"},
		{name: "sig alone", in: ".sig"},
		{name: "long arch", in: strings.Repeat("x", 33), validName: true},
		{name: "too long", in: long + "-1-1-any.pkg.tar"},
		{name: "colon in name", in: "a:b", arch: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := ValidName(tt.in); got != tt.validName {
				t.Errorf("ValidName(%q) = %v", tt.in, got)
			}
			if got := ValidArch(tt.in); got != tt.arch {
				t.Errorf("ValidArch(%q) = %v", tt.in, got)
			}
			if got := ValidFileName(tt.in); got != tt.fileName {
				t.Errorf("ValidFileName(%q) = %v", tt.in, got)
			}
			if _, got := DBFileRepo(tt.in); got != tt.dbFile {
				t.Errorf("DBFileRepo(%q) = %v", tt.in, got)
			}
		})
	}
}

// FuzzNames is the one fuzz target of the name grammar: whatever any of its
// functions accepts is a single safe path segment, and the functions agree
// with each other.
func FuzzNames(f *testing.F) {
	for _, s := range []string{"rebuilderd-0.18.1-1-x86_64.pkg.tar.zst", "p2phello-1:1.2.10-1-any.pkg.tar.zst",
		"a-b-1-1-any.pkg.tar", "../x-1-1-any.pkg.tar.xz", "x-1-1-any.pkg.tar.zst.sig", "core.db", "core.files.tar.gz.sig",
		"x86_64", ".", "..", "a\\b", "-x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		safe := s != "" && len(s) <= maxName && s[0] != '.' && s[0] != '-' &&
			!strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r >= 0x7f || r == '/' || r == '\\' })
		name, arch, file := ValidName(s), ValidArch(s), ValidFileName(s)
		repo, isDB := DBFileRepo(s)
		p, err := ParsePkgFilename(s)
		if err != nil && !errors.Is(err, ErrBadFilename) {
			t.Fatalf("error %v does not wrap ErrBadFilename", err)
		}
		switch {
		case (name || arch || file || isDB || err == nil) && !safe:
			t.Fatalf("%q accepted (name %v arch %v file %v db %v pkg %v) but not a safe segment",
				s, name, arch, file, isDB, err == nil)
		case arch && !name:
			t.Fatalf("arch %q is not a name", s)
		case err == nil && (p.String() != s || !file || !ValidName(p.Name) || !ValidArch(p.Arch)):
			t.Fatalf("package %q parsed as %+v, file %v", s, p, file)
		case isDB && (!file || !ValidName(repo) || err == nil):
			t.Fatalf("db %q of repo %q: file %v, also a package %v", s, repo, file, err == nil)
		case file && err != nil && !isDB && !strings.HasSuffix(s, ".sig"):
			t.Fatalf("file %q is neither a package nor a db", s)
		}
	})
}
