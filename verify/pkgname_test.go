package verify

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

func TestParsePkgFilename(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want PkgFile
		ok   bool
	}{
		{"rebuilderd-0.18.1-1-x86_64.pkg.tar.zst", PkgFile{"rebuilderd", "0.18.1-1", "x86_64", ".pkg.tar.zst"}, true},
		{"p2phello-1:1.2.10-1-any.pkg.tar.zst", PkgFile{"p2phello", "1:1.2.10-1", "any", ".pkg.tar.zst"}, true},
		{"libxx++-2.0-3.1-x86_64.pkg.tar.xz", PkgFile{"libxx++", "2.0-3.1", "x86_64", ".pkg.tar.xz"}, true},
		{"lib32-glibc-2.39+r52+gf8e4623421-1-x86_64.pkg.tar.zst", PkgFile{"lib32-glibc", "2.39+r52+gf8e4623421-1", "x86_64", ".pkg.tar.zst"}, true},
		{"a-b-c-1.0_beta-2-aarch64.pkg.tar.gz", PkgFile{"a-b-c", "1.0_beta-2", "aarch64", ".pkg.tar.gz"}, true},
		{"plain-1-1-any.pkg.tar", PkgFile{"plain", "1-1", "any", ".pkg.tar"}, true},
		{"hello-1.0-1-x86_64.pkg.tar.zst.sig", PkgFile{}, false},
		{"hello-1.0-x86_64.pkg.tar.zst", PkgFile{}, false},
		{"-hello-1.0-1-x86_64.pkg.tar.zst", PkgFile{}, false},
		{".hello-1.0-1-x86_64.pkg.tar.zst", PkgFile{}, false},
		{"../x-1.0-1-x86_64.pkg.tar.zst", PkgFile{}, false},
		{"a/b-1.0-1-x86_64.pkg.tar.zst", PkgFile{}, false},
		{"hello-1.0-1a-x86_64.pkg.tar.zst", PkgFile{}, false},
		{"hello-x:1.0-1-x86_64.pkg.tar.zst", PkgFile{}, false},
		{"hello-1.0-1-x86 64.pkg.tar.zst", PkgFile{}, false},
		{"hello-1 0-1-x86_64.pkg.tar.zst", PkgFile{}, false},
		{"core.db", PkgFile{}, false},
		{"", PkgFile{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := ParsePkgFilename(tt.in)
			if !tt.ok {
				if !errors.Is(err, ErrBadFilename) {
					t.Fatalf("got %+v, %v; want ErrBadFilename", got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
			}
			if got.String() != tt.in {
				t.Errorf("String() = %q", got.String())
			}
		})
	}
}

var vercmpTable = []struct {
	a, b string
	want int
}{
	{"1.0", "1.0", 0}, {"1.0", "1.1", -1}, {"1.1", "1.0", 1},
	{"1.0a", "1.0", -1}, {"1.0", "1.0.0", -1}, {"1", "1.0", -1},
	{"1:1.0-1", "2.0-1", 1}, {"0:1.0", "1.0", 0}, {"1.0-1", "1.0-2", -1},
	{"1.0-1", "1.0", 0}, {"1.0", "1.0-5", 0}, {"1.0.a", "1.0.1", -1},
	{"1.0alpha", "1.0beta", -1}, {"1.0rc1", "1.0", -1}, {"001", "1", 0},
	{"1..0", "1.0", 1}, {"1.0", "1_0", 0}, {"2.39+r52+gf8e4623421", "2.39+r48", 1},
	{"1.2.3-1.1", "1.2.3-1", 1}, {"a", "1", -1}, {"", "1", -1}, {"1:", "1", 1},
	{"r5", "5", -1}, {"1.0~rc1", "1.0", 1}, {"20231113", "20240101", -1},
}

func TestVercmp(t *testing.T) {
	t.Parallel()
	for _, tt := range vercmpTable {
		t.Run(tt.a+"_vs_"+tt.b, func(t *testing.T) {
			t.Parallel()
			if got := Vercmp(tt.a, tt.b); got != tt.want {
				t.Errorf("Vercmp(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
			}
			if got := Vercmp(tt.b, tt.a); got != -tt.want {
				t.Errorf("Vercmp(%q, %q) = %d, want %d", tt.b, tt.a, got, -tt.want)
			}
		})
	}
}

// randomVersion makes versions rich in the cases rpmvercmp distinguishes.
func randomVersion(rng *rand.Rand) string {
	parts := []string{"0", "1", "01", "2", "10", "a", "b", "rc", "alpha", "r", "9999999999999999999999"}
	seps := []string{".", "", "+", "_", "..", "~"}
	var b strings.Builder
	if rng.IntN(6) == 0 {
		b.WriteString(strconv.Itoa(rng.IntN(3)) + ":")
	}
	for i := range 1 + rng.IntN(4) {
		if i > 0 {
			b.WriteString(seps[rng.IntN(len(seps))])
		}
		b.WriteString(parts[rng.IntN(len(parts))])
	}
	if rng.IntN(2) == 0 {
		b.WriteString("-" + strconv.Itoa(1+rng.IntN(3)))
	}
	return b.String()
}

// TestVercmpAgainstPacman compares with libalpm itself (/usr/bin/vercmp) on
// the table and on random pairs.
func TestVercmpAgainstPacman(t *testing.T) {
	t.Parallel()
	bin, err := exec.LookPath("vercmp")
	if err != nil {
		t.Skip("vercmp (pacman) not installed; CI installs pacman")
	}
	rng := rand.New(rand.NewPCG(7, 11))
	type pair struct{ a, b string }
	var pairs []pair
	for _, tt := range vercmpTable {
		pairs = append(pairs, pair{tt.a, tt.b})
	}
	for range 300 {
		pairs = append(pairs, pair{randomVersion(rng), randomVersion(rng)})
	}
	// one shell runs every vercmp: far cheaper than one exec per pair
	var script strings.Builder
	for _, p := range pairs {
		fmt.Fprintf(&script, "%s %s %s\n", bin, shellQuote(p.a), shellQuote(p.b))
	}
	cmd := exec.CommandContext(t.Context(), "sh", "-s")
	cmd.Stdin = strings.NewReader(script.String())
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("vercmp: %v", err)
	}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for i := 0; sc.Scan(); i++ {
		want, err := strconv.Atoi(sc.Text())
		if err != nil || i >= len(pairs) {
			t.Fatalf("vercmp output line %d: %q", i, sc.Text())
		}
		if got := Vercmp(pairs[i].a, pairs[i].b); sign(got) != sign(want) {
			t.Errorf("Vercmp(%q, %q) = %d, libalpm %d", pairs[i].a, pairs[i].b, got, want)
		}
	}
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func sign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}

func FuzzVercmp(f *testing.F) {
	for _, tt := range vercmpTable {
		f.Add(tt.a, tt.b)
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		if x, y := Vercmp(a, b), Vercmp(b, a); sign(x) != -sign(y) {
			t.Fatalf("Vercmp(%q,%q)=%d but Vercmp(%q,%q)=%d", a, b, x, b, a, y)
		}
		if Vercmp(a, a) != 0 {
			t.Fatalf("Vercmp(%q,%q) != 0", a, a)
		}
	})
}
