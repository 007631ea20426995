package gateway

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestParseTarget(t *testing.T) {
	t.Parallel()
	g := &Gateway{}
	repos, err := indexRepos(append([]Repo{{Name: "custom", Arches: []string{"aarch64"}}}, DefaultRepos...))
	if err != nil {
		t.Fatal(err)
	}
	g.repos = repos
	tests := []struct {
		name, repo, arch, file string
		kind                   fileKind
		pkg                    string
		wantErr                error
	}{
		{"db", "core", "x86_64", "core.db", kindDB, "", nil},
		{"db sig", "core", "x86_64", "core.db.sig", kindDB, "", nil},
		{"files", "extra", "x86_64", "extra.files", kindDB, "", nil},
		{"db tar zst", "core", "x86_64", "core.db.tar.zst", kindDB, "", nil},
		{"files tar gz sig", "core", "x86_64", "core.files.tar.gz.sig", kindDB, "", nil},
		{"hyphenated repo db", "core-testing", "x86_64", "core-testing.db", kindDB, "", nil},
		{"package", "core", "x86_64", "hello-1.0-1-x86_64.pkg.tar.zst", kindPkg, "hello-1.0-1-x86_64.pkg.tar.zst", nil},
		{"epoch package", "core", "x86_64", "epochpkg-1:2.0-1-x86_64.pkg.tar.zst", kindPkg, "epochpkg-1:2.0-1-x86_64.pkg.tar.zst", nil},
		{"plus package", "extra", "x86_64", "libxx++-1.0-1-x86_64.pkg.tar.zst", kindPkg, "libxx++-1.0-1-x86_64.pkg.tar.zst", nil},
		{"any package", "core", "x86_64", "pacman-mirrorlist-20240101-1-any.pkg.tar.zst", kindPkg, "pacman-mirrorlist-20240101-1-any.pkg.tar.zst", nil},
		{"package sig", "core", "x86_64", "hello-1.0-1-x86_64.pkg.tar.zst.sig", kindPkgSig, "hello-1.0-1-x86_64.pkg.tar.zst", nil},
		{"gz package", "core", "x86_64", "hello-1.0-1-x86_64.pkg.tar.gz", kindPkg, "hello-1.0-1-x86_64.pkg.tar.gz", nil},
		{"custom repo own arch", "custom", "aarch64", "custom.db", kindDB, "", nil},
		{"unknown repo", "nope", "x86_64", "nope.db", 0, "", ErrNotFound},
		{"custom repo other arch", "custom", "x86_64", "custom.db", 0, "", ErrNotFound},
		{"other repo's db", "core", "x86_64", "extra.db", 0, "", ErrNotFound},
		{"not a package", "core", "x86_64", "index.html", 0, "", ErrNotFound},
		{"upper-case arch", "core", "X86_64", "core.db", 0, "", ErrBadRequest},
		{"dotted arch", "core", "x86.64", "core.db", 0, "", ErrBadRequest},
		{"empty arch", "core", "", "core.db", 0, "", ErrBadRequest},
		{"dot-dot file", "core", "x86_64", "..", 0, "", ErrBadRequest},
		{"hidden file", "core", "x86_64", ".core.db", 0, "", ErrBadRequest},
		{"slash in file", "core", "x86_64", "a/b.pkg.tar.zst", 0, "", ErrBadRequest},
		{"NUL in file", "core", "x86_64", "core.db\x00", 0, "", ErrBadRequest},
		{"space in file", "core", "x86_64", "core db", 0, "", ErrBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := g.parseTarget(tt.repo, tt.arch, tt.file)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error %v", err)
			}
			if got.kind != tt.kind || got.pkg != tt.pkg || got.file != tt.file {
				t.Fatalf("got kind %v pkg %q file %q, want kind %v pkg %q", got.kind, got.pkg, got.file, tt.kind, tt.pkg)
			}
		})
	}
}

// TestPathRefusals sends hostile paths through the whole handler: each is
// refused with 404 or 400 and never reaches the fetcher (nor, before that,
// the store).
func TestPathRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	tests := []struct {
		name, target string
		method       string
		want         int
	}{
		{"dot-dot", "/core/os/x86_64/../../../etc/passwd", http.MethodGet, http.StatusBadRequest},
		{"encoded dot-dot", "/core/os/x86_64/%2e%2e/%2e%2e/etc/passwd", http.MethodGet, http.StatusBadRequest},
		{"encoded slash", "/core/os/x86_64/..%2F..%2Fetc%2Fpasswd", http.MethodGet, http.StatusBadRequest},
		{"encoded backslash", "/core/os/x86_64/..%5Cpasswd", http.MethodGet, http.StatusBadRequest},
		{"double slash absolute", "/core/os/x86_64//etc/passwd", http.MethodGet, http.StatusBadRequest},
		{"dot segment", "/core/os/./x86_64/core.db", http.MethodGet, http.StatusBadRequest},
		{"encoded NUL", "/core/os/x86_64/core.db%00.pkg.tar.zst", http.MethodGet, http.StatusBadRequest},
		{"encoded dot", "/core/os/%2E/x86_64/core.db", http.MethodGet, http.StatusBadRequest},
		{"unknown repo", "/secret/os/x86_64/secret.db", http.MethodGet, http.StatusNotFound},
		{"bad arch", "/core/os/X86_64/core.db", http.MethodGet, http.StatusBadRequest},
		{"not a repo file", "/core/os/x86_64/passwd", http.MethodGet, http.StatusNotFound},
		{"outside the layout", "/etc/passwd", http.MethodGet, http.StatusNotFound},
		{"too deep", "/core/os/x86_64/a/core.db", http.MethodGet, http.StatusNotFound},
		{"directory", "/core/os/x86_64/", http.MethodGet, http.StatusNotFound},
		{"method", "/core/os/x86_64/core.db", http.MethodPost, http.StatusMethodNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := httptest.NewRecorder()
			e.g.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), tt.method, tt.target, nil))
			if rec.Code != tt.want {
				t.Fatalf("%s %s: status %d, want %d", tt.method, tt.target, rec.Code, tt.want)
			}
			if loc := rec.Header().Get("Location"); loc != "" {
				t.Fatalf("redirected to %q", loc)
			}
		})
	}
	t.Run("fetcher untouched", func(t *testing.T) {
		t.Parallel()
		e.f.mu.Lock()
		defer e.f.mu.Unlock()
		if len(e.f.dbCalls) != 0 || e.f.fetches != 0 {
			t.Fatalf("hostile paths reached the fetcher: db %v, fetches %d", e.f.dbCalls, e.f.fetches)
		}
	})
}
