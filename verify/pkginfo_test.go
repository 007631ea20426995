package verify

import (
	"archive/tar"
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

// realPackage is a real Arch package: one zstd frame with a 32 MiB window.
const (
	realPackage       = "testdata/rebuilderd-0.18.1-1-x86_64.pkg.tar.zst"
	realPackageSHA256 = "1c29f7b58939c1ebee799bbac8bd7d04cdbe9677e8961e1dc20eed877f9399ac"
)

func TestReadPKGINFO(t *testing.T) {
	t.Parallel()
	real, err := os.ReadFile(realPackage)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		data []byte
		want PKGINFO
	}{
		{"real zstd 32MiB window", real, PKGINFO{Name: "rebuilderd", Base: "rebuilderd", Version: "0.18.1-1", Arch: "x86_64"}},
		{"zstd", makePackage(t, "hello", "1.0-1", "x86_64", ".pkg.tar.zst"), PKGINFO{"hello", "hello", "1.0-1", "x86_64"}},
		{"xz", makePackage(t, "hello", "2:1.0-1", "any", ".pkg.tar.xz"), PKGINFO{"hello", "hello", "2:1.0-1", "any"}},
		{"gzip", makePackage(t, "libxx++", "1.0-1.1", "x86_64", ".pkg.tar.gz"), PKGINFO{"libxx++", "libxx++", "1.0-1.1", "x86_64"}},
		{"plain tar", makePackage(t, "hello", "1.0-1", "x86_64", ".pkg.tar"), PKGINFO{"hello", "hello", "1.0-1", "x86_64"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ReadPKGINFO(bytes.NewReader(tt.data))
			if err != nil || got != tt.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestReadPKGINFOErrors(t *testing.T) {
	t.Parallel()
	pkg := makePackage(t, "hello", "1.0-1", "x86_64", ".pkg.tar.zst")
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"not an archive", []byte("hello world, not a tar")},
		{"truncated", pkg[:len(pkg)/3]},
		{"no pkgname", compressAs(t, tarOf(t, tarMember{".PKGINFO", []byte("pkgver = 1-1\narch = any\n")}), ".pkg.tar.gz")},
		{"no .PKGINFO", compressAs(t, tarOf(t, tarMember{"usr/bin/x", []byte("x")}), ".pkg.tar.xz")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := ReadPKGINFO(bytes.NewReader(tt.data)); !errors.Is(err, ErrNoPKGINFO) {
				t.Fatalf("err = %v, want ErrNoPKGINFO", err)
			}
		})
	}
}

// TestZstdWindowLimit documents why the decoder's window limit is raised:
// the real package cannot be read with a small limit.
func TestZstdWindowLimit(t *testing.T) {
	t.Parallel()
	f, err := os.Open(realPackage)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := zstd.NewReader(f, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(8<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	if _, err := io.Copy(io.Discard, zr); err == nil {
		t.Fatal("an 8 MiB window limit read a 32 MiB window package: fixture is not what it claims")
	}
}

// TestVerifierRealPackage checks the real package by CID and by identity
// (Policy Never: no signature for it is available offline).
func TestVerifierRealPackage(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(realPackage)
	if err != nil {
		t.Fatal(err)
	}
	sum, _ := hex.DecodeString(realPackageSHA256)
	if got := sha256.Sum256(data); !bytes.Equal(got[:], sum) {
		t.Fatalf("testdata changed: sha256 %x", got)
	}
	c, err := CIDFromSHA256(sum)
	if err != nil {
		t.Fatal(err)
	}
	name := "rebuilderd-0.18.1-1-x86_64.pkg.tar.zst"
	for _, exp := range []Expect{
		{CID: c, Size: int64(len(data)), Filename: name, Policy: SigNever},
		{Size: -1, Filename: name, Policy: SigNever},
	} {
		v, err := NewVerifier(nil, exp)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(v, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		res, err := v.Finish()
		if err != nil || res.CID != c {
			t.Fatalf("got %v, %v", res.CID, err)
		}
	}
	v, err := NewVerifier(nil, Expect{Size: -1, Filename: "rebuilderd-0.18.2-1-x86_64.pkg.tar.zst", Policy: SigNever})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(v, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Finish(); !errors.Is(err, ErrIdentityMismatch) {
		t.Fatalf("renamed real package: %v, want ErrIdentityMismatch", err)
	}
}

func FuzzParseSignature(f *testing.F) {
	fx := getFixture(f)
	data := []byte("data")
	for _, k := range []string{kPackager, kRSA, kSubkey, kDSA} {
		f.Add(fx.sign(f, k, data, crypto.SHA512, fixtureNow))
	}
	f.Add([]byte("-----BEGIN PGP SIGNATURE-----\n\n-----END PGP SIGNATURE-----\n"))
	f.Add([]byte{0xc2, 0x01, 0x04})
	kr, err := LoadKeyring(fx.dir, WithClock(func() time.Time { return fixtureNow }))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		sig, err := ParseSignature(b)
		if err != nil {
			if !errors.Is(err, ErrBadSignature) {
				t.Fatalf("error %v does not wrap ErrBadSignature", err)
			}
			return
		}
		if !allowedHashes[sig.Hash] {
			t.Fatalf("accepted hash %v", sig.Hash)
		}
		// whatever parses must give a verdict, never a panic
		v, err := NewVerifierAt(kr, Expect{Size: -1, CID: cidOf(t, data), Signature: b}, fixtureNow)
		if err != nil {
			return
		}
		_, _ = v.Write(data)
		_, _ = v.Finish()
	})
}

// A .PKGINFO buried behind more than maxBeforePKGINFO decompressed bytes is
// not searched for: that bound is what keeps a hostile xz stream (whose
// dictionary the decoder reserves at the size the stream declares) from
// making resident more than it, before the bytes are proven.
func TestReadPKGINFOStopsAfterBound(t *testing.T) {
	t.Parallel()
	const pkginfo = "pkgname = hello\npkgver = 1.0-1\narch = x86_64\n"
	withFiller := func(size int64) []byte {
		var raw bytes.Buffer
		tw := tar.NewWriter(&raw)
		if err := tw.WriteHeader(&tar.Header{Name: "filler", Mode: 0o644, Size: size}); err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(tw, io.LimitReader(zeros{}, size)); err != nil {
			t.Fatal(err)
		}
		if err := tw.WriteHeader(&tar.Header{Name: ".PKGINFO", Mode: 0o644, Size: int64(len(pkginfo))}); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, pkginfo); err != nil {
			t.Fatal(err)
		}
		if err := tw.Close(); err != nil {
			t.Fatal(err)
		}
		return raw.Bytes()
	}
	if _, err := ReadPKGINFO(bytes.NewReader(withFiller(maxBeforePKGINFO))); !errors.Is(err, ErrNoPKGINFO) {
		t.Fatalf("a .PKGINFO after %d bytes was read (err %v)", maxBeforePKGINFO, err)
	}
	// The same layout with a small filler is read: the bound refuses, not the layout.
	if got, err := ReadPKGINFO(bytes.NewReader(withFiller(4096))); err != nil || got.Name != "hello" {
		t.Fatalf("small filler: %+v, %v", got, err)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
