package gateway

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// FuzzParseTarget: whatever is accepted is a plain name of a configured repo
// and could never walk a file system.
func FuzzParseTarget(f *testing.F) {
	for _, s := range [][3]string{
		{"core", "x86_64", "core.db"}, {"core", "x86_64", "epochpkg-1:2.0-1-x86_64.pkg.tar.zst.sig"},
		{"extra", "x86_64", "libxx++-1.0-1-x86_64.pkg.tar.zst"}, {"core", "x86_64", ".."},
		{"core", "x86_64", "../../etc/passwd"}, {"core", "any", "a\x00b"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	repos, err := indexRepos(DefaultRepos)
	if err != nil {
		f.Fatal(err)
	}
	g := &Gateway{repos: repos}
	f.Fuzz(func(t *testing.T, repo, arch, file string) {
		tg, err := g.parseTarget(repo, arch, file)
		if err != nil {
			return
		}
		if _, ok := repos[tg.repo.Name]; !ok {
			t.Fatalf("accepted unknown repo %q", repo)
		}
		for _, s := range []string{tg.arch, tg.file, tg.pkg} {
			if strings.ContainsAny(s, "/\\\x00") || s == "." || s == ".." || strings.HasPrefix(s, ".") {
				t.Fatalf("accepted unsafe name %q", s)
			}
		}
		if tg.kind != kindDB && (tg.pkg == "" || !strings.HasPrefix(tg.file, tg.pkg)) {
			t.Fatalf("package target %+v", tg)
		}
	})
}

// FuzzCheckRawPath: an accepted path has no segment that could climb out of
// the layout, raw or decoded.
func FuzzCheckRawPath(f *testing.F) {
	for _, s := range []string{"/core/os/x86_64/core.db", "/core/os/x86_64/%2e%2e", "/a//b", "/a/..%2fb", "/a/%00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := url.ParseRequestURI(raw)
		if err != nil {
			return
		}
		if checkRawPath(&http.Request{URL: u}) != nil {
			return
		}
		segs := strings.Split(u.Path, "/")
		for i, s := range segs[1:] {
			if s == "." || s == ".." || (s == "" && i != len(segs)-2) || strings.ContainsAny(s, "\\\x00") {
				t.Fatalf("accepted %q (decoded %q)", raw, u.Path)
			}
		}
	})
}
