package verify

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"runtime"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// TestReadPKGINFOReusedDecoders: the kept zstd decoders give the right
// identity whatever the previous package was (a 32 MiB window, a small one,
// a truncated one that failed mid-frame), one after another and at once.
func TestReadPKGINFOReusedDecoders(t *testing.T) {
	t.Parallel()
	real, err := os.ReadFile(realPackage)
	if err != nil {
		t.Fatal(err)
	}
	small := makePackage(t, "hello", "1.0-1", "x86_64", ".pkg.tar.zst")
	inputs := []struct {
		data []byte
		want PKGINFO // zero: must fail
	}{
		{real, PKGINFO{Name: "rebuilderd", Base: "rebuilderd", Version: "0.18.1-1", Arch: "x86_64"}},
		{small[:len(small)/3], PKGINFO{}},
		{small, PKGINFO{"hello", "hello", "1.0-1", "x86_64"}},
	}
	var wg sync.WaitGroup
	for w := range runtime.GOMAXPROCS(0) + 1 {
		wg.Go(func() {
			for i := range 12 {
				in := inputs[(i+w)%len(inputs)]
				got, err := ReadPKGINFO(bytes.NewReader(in.data))
				switch {
				case in.want == (PKGINFO{}) && !errors.Is(err, ErrNoPKGINFO):
					t.Errorf("truncated package: %+v, %v; want ErrNoPKGINFO", got, err)
				case in.want != (PKGINFO{}) && (err != nil || got != in.want):
					t.Errorf("got %+v, %v; want %+v", got, err, in.want)
				}
			}
		})
	}
	wg.Wait()
}

// BenchmarkReadPKGINFOZstd: the identity check of a small zstd package;
// B/op shows the decoder and its history ring are reused, not allocated per
// package (6 KiB against 31 KiB per package with a new decoder each time;
// on the 2 MiB windows of scripts/bench.sh's packages, 2.3 MiB each).
func BenchmarkReadPKGINFOZstd(b *testing.B) {
	var pkg bytes.Buffer
	zw, err := zstd.NewWriter(&pkg, zstd.WithWindowSize(2<<20))
	if err != nil {
		b.Fatal(err)
	}
	var tarball bytes.Buffer
	tw := tar.NewWriter(&tarball)
	info := "pkgname = hello\npkgver = 1.0-1\narch = x86_64\n"
	if err := tw.WriteHeader(&tar.Header{Name: ".PKGINFO", Mode: 0o644, Size: int64(len(info))}); err != nil {
		b.Fatal(err)
	}
	if _, err := tw.Write([]byte(info)); err != nil {
		b.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		b.Fatal(err)
	}
	if _, err := zw.Write(tarball.Bytes()); err != nil {
		b.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ReadPKGINFO(bytes.NewReader(pkg.Bytes())); err != nil {
			b.Fatal(err)
		}
	}
}

// TestZstdDecoderKeptOnlyForSmallWindows: after the real package (a frame
// declaring 32 MiB, decoded with zstdReadWindow) a decoder is kept idle;
// after a single-segment frame whose window, its content, is above
// zstdKeepWindow none is, so its ring is garbage. Not parallel: the idle
// slot is shared by the package.
func TestZstdDecoderKeptOnlyForSmallWindows(t *testing.T) {
	real, err := os.ReadFile(realPackage)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithSingleSegment(true))
	if err != nil {
		t.Fatal(err)
	}
	big := enc.EncodeAll(make([]byte, zstdKeepWindow+1<<20), nil)
	var h zstd.Header
	if err := h.Decode(big); err != nil || !h.SingleSegment || h.FrameContentSize <= zstdKeepWindow {
		t.Fatalf("big frame header %+v, %v: want a single segment above zstdKeepWindow", h, err)
	}
	drain := func() {
		for len(zstdIdle) > 0 {
			<-zstdIdle
		}
	}
	drain()
	if _, err := ReadPKGINFO(bytes.NewReader(real)); err != nil {
		t.Fatal(err)
	}
	if n := len(zstdIdle); n != 1 {
		t.Fatalf("%d decoders kept after a 32 MiB window read with %d, want 1", n, zstdReadWindow)
	}
	drain()
	if _, err := ReadPKGINFO(bytes.NewReader(big)); !errors.Is(err, ErrNoPKGINFO) {
		t.Fatalf("zeros: %v, want ErrNoPKGINFO", err)
	}
	if n := len(zstdIdle); n != 0 {
		t.Fatalf("%d decoders kept after a %d-byte single segment, want 0", n, h.FrameContentSize)
	}
}
