package node

import (
	"errors"
	"slices"
	"strings"
	"testing"

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
			if (err != nil) != tt.wantErr {
				t.Fatalf("New err = %v, want error %v", err, tt.wantErr)
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
