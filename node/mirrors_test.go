package node

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flocon/flocon/store"
	"github.com/flocon/flocon/verify"
)

func TestParseMirrorlist(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		input   string
		self    []string
		want    []string
		wantErr error
	}{
		{
			name: "reflector output",
			input: "##\n## Arch Linux repository mirrorlist\n##\n\n## Germany\n" +
				"Server = https://a.example/archlinux/$repo/os/$arch\n" +
				"#Server = https://commented.example/$repo/os/$arch\n" +
				"  Server=http://b.example/$repo/os/$arch   # trailing comment\n",
			want: []string{"https://a.example/archlinux/$repo/os/$arch", "http://b.example/$repo/os/$arch"},
		},
		{
			name: "flocon's own lines skipped",
			input: "Server = http://127.0.0.1:19433/$repo/os/$arch\n" +
				"Server = http://localhost:19433/$repo/os/$arch\n" +
				"Server = http://[::1]:19433/$repo/os/$arch\n" +
				"Server = https://up.example/$repo/os/$arch\n",
			want: []string{"https://up.example/$repo/os/$arch"},
		},
		{
			name:  "configured listen address skipped",
			input: "Server = http://10.0.0.5:8080/$repo/os/$arch\nServer = http://10.0.0.5:8081/$repo/os/$arch\n",
			self:  []string{"10.0.0.5:8080"},
			want:  []string{"http://10.0.0.5:8081/$repo/os/$arch"},
		},
		{
			name:  "wildcard listen address matches loopback",
			input: "Server = http://localhost:9000/$repo/os/$arch\nServer = http://up.example:9000/$repo/os/$arch\n",
			self:  []string{":9000"},
			want:  []string{"http://up.example:9000/$repo/os/$arch"},
		},
		{
			name: "sections, other directives and unfetchable schemes skipped",
			input: "[core]\nInclude = /etc/pacman.d/other\nCacheServer = http://cache.example/$repo\n" +
				"Server = file:///srv/repo/$repo\nServer = https://up.example/$repo/os/$arch\n",
			want: []string{"https://up.example/$repo/os/$arch"},
		},
		{name: "empty", input: "# nothing\n\n", want: nil},
		{name: "not a key = value line", input: "Server https://x.example\n", wantErr: ErrBadMirror},
		{name: "server without url", input: "Server =\n", wantErr: ErrBadMirror},
		{name: "url without host", input: "Server = http:///$repo\n", wantErr: ErrBadMirror},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseMirrorlist(strings.NewReader(tt.input), tt.self)
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestMirrorsURLs(t *testing.T) {
	t.Parallel()
	m := Mirrors{
		Default: []string{"https://a.example/$repo/os/$arch/", "https://b.example/arch/$repo/os/$arch"},
		PerRepo: map[string][]string{"custom": {"https://c.example/$repo/$arch"}},
	}
	tests := []struct {
		name, repo, arch string
		want             []string
	}{
		{"official repo", "core", "x86_64", []string{"https://a.example/core/os/x86_64", "https://b.example/arch/core/os/x86_64"}},
		{"custom layout", "custom", "aarch64", []string{"https://c.example/custom/aarch64"}},
		{"escaped, never a new segment", "a/b", "..", []string{"https://a.example/a%2Fb/os/..", "https://b.example/arch/a%2Fb/os/.."}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := m.URLs(tt.repo, tt.arch); !slices.Equal(got, tt.want) {
				t.Errorf("URLs(%q, %q) = %q, want %q", tt.repo, tt.arch, got, tt.want)
			}
		})
	}
}

func TestMirrorNewValidates(t *testing.T) {
	t.Parallel()
	st, kr := &store.Store{}, &verify.Keyring{}
	tests := []struct {
		name    string
		cfg     Config
		wantErr bool
	}{
		{"no store", Config{Keyring: kr}, true},
		{"no keyring", Config{Store: st}, true},
		{"ftp mirror", Config{Store: st, Keyring: kr, Mirrors: Mirrors{Default: []string{"ftp://x.example/$repo"}}}, true},
		{"relative per-repo mirror", Config{Store: st, Keyring: kr, Mirrors: Mirrors{PerRepo: map[string][]string{"c": {"/srv/$repo"}}}}, true},
		{"zero mirrors: built-in list", Config{Store: st, Keyring: kr}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			n, err := New(tt.cfg)
			if (err != nil) != tt.wantErr || (err != nil && !errors.Is(err, ErrBadConfig)) {
				t.Fatalf("New err = %v, want ErrBadConfig %v", err, tt.wantErr)
			}
			if err == nil && !slices.Equal(n.cfg.Mirrors.Default, BuiltinMirrors) {
				t.Errorf("default mirrors = %q", n.cfg.Mirrors.Default)
			}
		})
	}
}

func FuzzParseMirrorlist(f *testing.F) {
	f.Add("Server = https://a.example/$repo/os/$arch\n#Server = http://b\n")
	f.Add("[core]\nServer = http://127.0.0.1:19433/$repo/os/$arch\nServer=http://[::1]:80/x\n")
	f.Add("Server = http://%zz\n")
	f.Fuzz(func(t *testing.T, input string) {
		got, err := ParseMirrorlist(strings.NewReader(input), []string{":8080"})
		if err != nil {
			if !errors.Is(err, ErrBadMirror) && !strings.Contains(err.Error(), "read mirrorlist") {
				t.Fatalf("error without sentinel: %v", err)
			}
			return
		}
		for _, s := range got {
			if !strings.HasPrefix(s, "http://") && !strings.HasPrefix(s, "https://") {
				t.Fatalf("unfetchable server %q returned", s)
			}
			if strings.Contains(s, "#") || strings.TrimSpace(s) != s {
				t.Fatalf("comment or blanks kept in %q", s)
			}
		}
	})
}

func TestFetchDBConditional(t *testing.T) {
	t.Parallel()
	db := []byte("not really a tar, the node does not care")
	m := newFakeMirror(t, mirrorMode{}, map[string][]byte{"core.db": db})
	n, _ := newTestNode(t, []string{m.template()})
	tests := []struct {
		name       string
		ims        time.Time
		wantStatus int
	}{
		{"no If-Modified-Since", time.Time{}, http.StatusOK},
		{"not modified since", m.modTime, http.StatusNotModified},
		{"older copy", m.modTime.Add(-time.Hour), http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp, err := n.FetchDB(t.Context(), "core", "x86_64", "core.db", tt.ims)
			if err != nil {
				t.Fatalf("FetchDB: %v", err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("read body: %v", err)
			}
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if lm, _ := http.ParseTime(resp.Header.Get("Last-Modified")); tt.wantStatus == http.StatusOK && !lm.Equal(m.modTime) {
				t.Errorf("Last-Modified = %v, want %v", lm, m.modTime)
			}
			if tt.wantStatus == http.StatusOK && !bytes.Equal(body, db) {
				t.Errorf("body = %q", body)
			}
		})
	}
	t.Cleanup(func() {
		for _, r := range m.requests("core.db") {
			if !strings.HasPrefix(r.userAgent, "flocon/") {
				t.Errorf("User-Agent = %q", r.userAgent)
			}
		}
	})
}

func TestFetchDBFailover(t *testing.T) {
	t.Parallel()
	db := []byte("db bytes")
	broken := newFakeMirror(t, mirrorMode{status: http.StatusInternalServerError}, nil)
	good := newFakeMirror(t, mirrorMode{}, map[string][]byte{"core.db": db})
	n, _ := newTestNode(t, []string{deadMirror(t), broken.template(), good.template()})
	resp, err := n.FetchDB(t.Context(), "core", "x86_64", "core.db", time.Time{})
	if err != nil {
		t.Fatalf("FetchDB: %v", err)
	}
	defer resp.Body.Close()
	if body, _ := io.ReadAll(resp.Body); resp.StatusCode != http.StatusOK || !bytes.Equal(body, db) {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	if len(broken.requests("core.db")) != 1 || len(good.requests("core.db")) != 1 {
		t.Errorf("requests: broken %d, good %d; want 1 each", len(broken.requests("core.db")), len(good.requests("core.db")))
	}
}

func TestFetchDBErrors(t *testing.T) {
	t.Parallel()
	notFound1 := newFakeMirror(t, mirrorMode{}, nil)
	notFound2 := newFakeMirror(t, mirrorMode{}, nil)
	broken := newFakeMirror(t, mirrorMode{status: http.StatusBadGateway}, nil)
	redirect := httptest.NewServer(http.RedirectHandler("ftp://example.org/core.db", http.StatusFound))
	t.Cleanup(redirect.Close)
	tests := []struct {
		name    string
		mirrors []string
		file    string
		want    error
	}{
		{"404 everywhere", []string{notFound1.template(), notFound2.template()}, "core.db.sig", store.ErrNotFound},
		{"dead and 404", []string{deadMirror(t), notFound1.template()}, "core.db.sig", store.ErrNotFound},
		{"5xx and 404", []string{broken.template(), notFound1.template()}, "core.db", ErrAllSourcesFailed},
		{"redirect to ftp", []string{redirect.URL + "/$repo/os/$arch"}, "core.db", ErrBadMirror},
		{"path in name", []string{notFound1.template()}, "../core.db", ErrBadName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			n, _ := newTestNode(t, tt.mirrors, noTimeouts)
			resp, err := n.FetchDB(t.Context(), "core", "x86_64", tt.file, time.Time{})
			if err == nil {
				resp.Body.Close()
				t.Fatalf("FetchDB: status %d, want an error", resp.StatusCode)
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestFetchDBStalledBody(t *testing.T) {
	t.Parallel()
	db := bytes.Repeat([]byte("db"), 4096)
	m := newFakeMirror(t, mirrorMode{stallAfter: 100}, map[string][]byte{"core.db": db})
	n, _ := newTestNode(t, []string{m.template()})
	resp, err := n.FetchDB(t.Context(), "core", "x86_64", "core.db", time.Time{})
	if err != nil {
		t.Fatalf("FetchDB: %v", err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if !errors.Is(err, ErrStalled) {
		t.Fatalf("read err = %v after %d bytes, want ErrStalled", err, len(got))
	}
}
