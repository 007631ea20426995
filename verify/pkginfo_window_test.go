package verify

import (
	"bytes"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// BenchmarkReadPKGINFOArchWindow: the identity check of a real package,
// whose frame declares Arch's 32 MiB window. B/op and the heap in use
// show whether the decoder's ring is allocated (and zeroed) per package:
// with the frame's own window, 34 MB/op, 8.4-18 ms/op and a 101 MiB heap
// peak; with zstdReadWindow, 8 KB/op, 0.16 ms/op, 7.2 MiB.
func BenchmarkReadPKGINFOArchWindow(b *testing.B) {
	pkg, err := os.ReadFile(realPackage) // makepkg's zstd --ultra -20: a 32 MiB window
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	var ms runtime.MemStats
	var peak uint64
	for b.Loop() {
		if _, err := ReadPKGINFO(bytes.NewReader(pkg)); err != nil {
			b.Fatal(err)
		}
		runtime.ReadMemStats(&ms)
		peak = max(peak, ms.HeapInuse)
	}
	b.ReportMetric(float64(peak)/(1<<20), "MiB-heap-peak")
}

// longMatchPackage is a zstd package whose .PKGINFO comes after 3 MiB of
// members, the last of which repeats the first: the encoder, with an 8 MiB
// window, refers back about 2.5 MiB, beyond zstdReadWindow.
func longMatchPackage(t *testing.T) []byte {
	t.Helper()
	rnd := rand.New(rand.NewPCG(1, 2))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rnd.Uint32())
		}
		return b
	}
	x := random(1 << 20)
	raw := tarOf(t, tarMember{".BUILDINFO", x}, tarMember{".MTREE", random(3 << 19)}, tarMember{".MTREE2", x},
		tarMember{".PKGINFO", []byte("pkgname = far\npkgver = 1.0-1\narch = x86_64\n")})
	out := zstdOf(t, raw, zstd.WithWindowSize(8<<20),
		zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithSingleSegment(false))
	if len(out) > len(raw)-(1<<19) {
		t.Fatalf("compressed to %d of %d bytes: the repeated member was not matched", len(out), len(raw))
	}
	return out
}

// TestReadPKGINFOWindowCapped: a package declaring Arch's 32 MiB window is
// read with zstdReadWindow at the first try; one whose .PKGINFO needs a
// match further back than that fails that try and is read with its own
// window after it, from a reader that can be rewound and from one that
// cannot (a pipe, as while a download streams).
func TestReadPKGINFOWindowCapped(t *testing.T) {
	t.Parallel()
	real, err := os.ReadFile(realPackage)
	if err != nil {
		t.Fatal(err)
	}
	if info, capped, err := readPKGINFO(bytes.NewReader(real), true); err != nil || capped || info.Name != "rebuilderd" {
		t.Fatalf("real package with a capped window: %+v, capped %v, %v", info, capped, err)
	}
	far := longMatchPackage(t)
	if _, capped, err := readPKGINFO(bytes.NewReader(far), true); err == nil || !capped {
		t.Fatalf("long match with a capped window: capped %v, err %v; want a capped failure", capped, err)
	}
	want := PKGINFO{Name: "far", Version: "1.0-1", Arch: "x86_64"}
	for _, tc := range []struct {
		name string
		r    io.Reader
	}{
		{"seeker", bytes.NewReader(far)},
		{"stream", struct{ io.Reader }{bytes.NewReader(far)}},
	} {
		if got, err := ReadPKGINFO(tc.r); err != nil || got != want {
			t.Errorf("%s: %+v, %v; want %+v", tc.name, got, err, want)
		}
	}
}
