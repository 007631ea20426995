package verify

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"hash"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

// benchSize is the stream size of the throughput benchmarks (a big package);
// FLOCON_BENCH_MB overrides it.
func benchSize() int {
	if mb, err := strconv.Atoi(os.Getenv("FLOCON_BENCH_MB")); err == nil && mb > 0 {
		return mb << 20
	}
	return 200 << 20
}

var (
	benchOnce sync.Once
	benchData []byte
)

func benchBytes(b *testing.B) []byte {
	benchOnce.Do(func() {
		benchData = make([]byte, benchSize())
		_, _ = rand.Read(benchData)
	})
	return benchData
}

const benchChunk = 128 << 10

// BenchmarkSHA256 is the floor: a bare sha256 over the same chunks.
func BenchmarkSHA256(b *testing.B) { benchHash(b, sha256.New) }

// BenchmarkSHA512 is the floor of SHA-512 signatures (Arch's ed25519 ones):
// no CPU here has SHA-512 instructions, so it is slower than sha256 alone.
func BenchmarkSHA512(b *testing.B) { benchHash(b, sha512.New) }

func benchHash(b *testing.B, newHash func() hash.Hash) {
	data := benchBytes(b)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		h := newHash()
		for off := 0; off < len(data); off += benchChunk {
			h.Write(data[off:min(off+benchChunk, len(data))])
		}
		_ = h.Sum(nil)
	}
}

// BenchmarkVerifier is one verification pass (sha256 + signature hash +
// signature check) over the same stream, per signature kind.
func BenchmarkVerifier(b *testing.B) {
	f := getFixture(b)
	data := benchBytes(b)
	kr, err := LoadKeyring(f.dir, WithClock(func() time.Time { return fixtureNow }))
	if err != nil {
		b.Fatal(err)
	}
	sum := sha256.Sum256(data)
	c, _ := CIDFromSHA256(sum[:])
	for _, bc := range []struct {
		name string
		key  string
		hash crypto.Hash
	}{
		{"ed25519-sha512", kPackager, crypto.SHA512},
		{"ed25519-sha256", kPackager, crypto.SHA256},
		{"rsa2048-sha256", kRSA, crypto.SHA256},
		{"rsa2048-sha512", kRSA, crypto.SHA512},
	} {
		sig := f.sign(b, bc.key, data, bc.hash, fixtureNow)
		exp := Expect{CID: c, Size: int64(len(data)), Filename: "big-1-1-any.pkg.tar.zst", Signature: sig}
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				v, err := NewVerifier(kr, exp)
				if err != nil {
					b.Fatal(err)
				}
				for off := 0; off < len(data); off += benchChunk {
					_, _ = v.Write(data[off:min(off+benchChunk, len(data))])
				}
				if _, err := v.Finish(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkVerifierIdentity adds the .PKGINFO identity check (no db entry)
// to the pass, over a real zstd package of the same size.
func BenchmarkVerifierIdentity(b *testing.B) {
	f := getFixture(b)
	kr, err := LoadKeyring(f.dir, WithClock(func() time.Time { return fixtureNow }))
	if err != nil {
		b.Fatal(err)
	}
	pkg := bigPackage(b)
	sig := f.sign(b, kPackager, pkg, crypto.SHA512, fixtureNow)
	exp := Expect{Size: int64(len(pkg)), Filename: "big-1.0-1-x86_64.pkg.tar.zst", Signature: sig}
	b.SetBytes(int64(len(pkg)))
	for b.Loop() {
		v, err := NewVerifier(kr, exp)
		if err != nil {
			b.Fatal(err)
		}
		for off := 0; off < len(pkg); off += benchChunk {
			_, _ = v.Write(pkg[off:min(off+benchChunk, len(pkg))])
		}
		if _, err := v.Finish(); err != nil {
			b.Fatal(err)
		}
	}
}

// bigPackage is a zstd package whose payload is the random bench bytes
// (stored: random data does not compress).
func bigPackage(b *testing.B) []byte {
	raw := tarOf(b, tarMember{".PKGINFO", []byte("pkgname = big\npkgver = 1.0-1\narch = x86_64\n")},
		tarMember{"usr/share/big/payload", benchBytes(b)})
	return zstdOf(b, raw, zstd.WithEncoderLevel(zstd.SpeedFastest))
}

// BenchmarkLoadKeyring parses the real Arch keyring and verifies every
// master certification (done once per daemon start).
func BenchmarkLoadKeyring(b *testing.B) {
	if _, err := os.Stat(archKeyringDir + "/archlinux.gpg"); err != nil {
		b.Skip("archlinux-keyring not installed")
	}
	for b.Loop() {
		if _, err := LoadKeyring(archKeyringDir); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNewVerifier is the per-download cost before the first byte:
// signature parsing, key lookup and the trust verdict at now.
func BenchmarkNewVerifier(b *testing.B) {
	f := getFixture(b)
	kr, err := LoadKeyring(f.dir, WithClock(func() time.Time { return fixtureNow }))
	if err != nil {
		b.Fatal(err)
	}
	data := []byte("payload")
	sum := sha256.Sum256(data)
	c, _ := CIDFromSHA256(sum[:])
	exp := Expect{CID: c, Size: int64(len(data)), Filename: "x-1-1-any.pkg.tar.zst",
		Signature: f.sign(b, kPackager, data, crypto.SHA512, fixtureNow)}
	for b.Loop() {
		if _, err := NewVerifier(kr, exp); err != nil {
			b.Fatal(err)
		}
	}
}
