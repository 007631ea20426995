package verify

import (
	"archive/tar"
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
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	info := "pkgname = far\npkgver = 1.0-1\narch = x86_64\n"
	for _, m := range []struct {
		name string
		body []byte
	}{{".BUILDINFO", x}, {".MTREE", random(3 << 19)}, {".MTREE2", x}, {".PKGINFO", []byte(info)}} {
		if err := tw.WriteHeader(&tar.Header{Name: m.name, Mode: 0o644, Size: int64(len(m.body))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(m.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	w, err := zstd.NewWriter(&out, zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(8<<20),
		zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithSingleSegment(false))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(raw.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if out.Len() > raw.Len()-(1<<19) {
		t.Fatalf("compressed to %d of %d bytes: the repeated member was not matched", out.Len(), raw.Len())
	}
	return out.Bytes()
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
