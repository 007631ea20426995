package store_test

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flocon/flocon/store"
	"github.com/flocon/flocon/store/repodb"
	"github.com/flocon/flocon/store/storetest"
)

// BenchmarkPendingWriteRead: one leader writes 16 MiB in 64 KiB chunks while
// four readers follow the growing file; bytes/s is the leader's payload.
func BenchmarkPendingWriteRead(b *testing.B) {
	s := openAt(b, store.Config{Dir: b.TempDir()})
	const size, chunk, readers = 16 << 20, 64 << 10, 4
	data := storetest.RandomBytes(1, size)
	c := storetest.CIDOf(b, data)
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		p, _, err := s.Begin(c, size)
		if err != nil {
			b.Fatal(err)
		}
		var wg sync.WaitGroup
		for range readers {
			r := p.NewReader(b.Context(), 0)
			wg.Go(func() {
				defer r.Close()
				if n, err := io.Copy(io.Discard, r); err != nil || n != size {
					b.Errorf("reader: %d bytes, %v", n, err)
				}
			})
		}
		for off := 0; off < size; off += chunk {
			if _, err := p.Write(data[off : off+chunk]); err != nil {
				b.Fatal(err)
			}
		}
		if err := p.Commit(store.BlobInfo{CID: c}, nil); err != nil {
			b.Fatal(err)
		}
		wg.Wait()
		b.StopTimer()
		if err := s.RemoveBlob(c); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkOpenBlob: index lookup, open and last-access touch of a blob.
func BenchmarkOpenBlob(b *testing.B) {
	s := openAt(b, store.Config{Dir: b.TempDir()})
	c := storetest.Put(b, s, storetest.RandomBytes(1, 4096), store.BlobInfo{}, nil)
	b.ReportAllocs()
	for b.Loop() {
		f, _, err := s.OpenBlob(c)
		if err != nil {
			b.Fatal(err)
		}
		_ = f.Close()
	}
}

// BenchmarkPutDBRealCore: store, parse (twice: validate, then write) and
// index the real core.db (265 entries). Two encodings of it alternate so
// every round does the whole work (the same bytes again are a no-op).
func BenchmarkPutDBRealCore(b *testing.B) {
	raw, err := os.ReadFile(realCoreDB)
	if err != nil {
		b.Fatal(err)
	}
	gens := [2][]byte{raw, regzip(b, raw)}
	s := openAt(b, store.Config{Dir: b.TempDir()})
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := s.PutDB("core", "x86_64", "core.db", bytes.NewReader(gens[i%2]), time.Now()); err != nil {
			b.Fatal(err)
		}
	}
}

// regzip returns the same tar in other gzip bytes.
func regzip(b *testing.B, raw []byte) []byte {
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		b.Fatal(err)
	}
	var out bytes.Buffer
	zw, err := gzip.NewWriterLevel(&out, gzip.BestSpeed)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(zw, zr); err != nil {
		b.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		b.Fatal(err)
	}
	return out.Bytes()
}

// BenchmarkEntry: Entry lookups in an index holding 20 000 entries.
func BenchmarkEntry(b *testing.B) {
	const n = 20000
	entries := make([]repodb.Entry, n)
	for i := range entries {
		entries[i] = storetest.NewPackage(fmt.Sprintf("pkg%05d", i), "1.0-1", "x86_64", 64).Entry
	}
	s := openAt(b, store.Config{Dir: b.TempDir()})
	if _, err := s.PutDB("extra", "x86_64", "extra.db", bytes.NewReader(storetest.DB(b, entries, false)), time.Now()); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		e := entries[(i*7919)%n]
		got, err := s.Entry("extra", "x86_64", e.Filename)
		if err != nil || got.SHA256 != e.SHA256 {
			b.Fatalf("Entry %s = %v", e.Filename, err)
		}
	}
}

// BenchmarkPutDBLarge: a 15 000-entry db (the size of extra) stored and
// indexed; B/op shows the memory stays bounded by one entry plus the names.
func BenchmarkPutDBLarge(b *testing.B) {
	const n = 15000
	entries := make([]repodb.Entry, n)
	for i := range entries {
		entries[i] = storetest.NewPackage(fmt.Sprintf("pkg%05d", i), "1.0-1", "x86_64", 64).Entry
	}
	// Two generations: each round replaces one package and its entry.
	gen2 := append([]repodb.Entry(nil), entries...)
	gen2[0] = storetest.NewPackage("pkg00000", "1.1-1", "x86_64", 64).Entry
	gens := [2][]byte{storetest.DB(b, entries, false), storetest.DB(b, gen2, false)}
	s := openAt(b, store.Config{Dir: b.TempDir()})
	b.SetBytes(int64(len(gens[0])))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := s.PutDB("extra", "x86_64", "extra.db", bytes.NewReader(gens[i%2]), time.Now()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCommitSmall: one 50 KiB download from Begin to a durable blob
// (temp file, write + sha256, fsync, rename, dir fsync, index row), one at
// a time and eight at once (the shape of a pacman -Syu of small packages).
func BenchmarkCommitSmall(b *testing.B) {
	for _, parallel := range []int{1, 8} {
		b.Run(fmt.Sprintf("parallel=%d", parallel), func(b *testing.B) {
			s := openAt(b, store.Config{Dir: b.TempDir()})
			b.SetBytes(50 << 10)
			b.SetParallelism(parallel) // × GOMAXPROCS goroutines
			var seed atomic.Uint64
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					data := storetest.RandomBytes(seed.Add(1), 50<<10)
					c := storetest.CIDOf(b, data)
					p, _, err := s.Begin(c, int64(len(data)))
					if err != nil {
						b.Error(err)
						return
					}
					if _, err := p.Write(data); err != nil {
						b.Error(err)
						return
					}
					if err := p.Commit(store.BlobInfo{CID: c, Filename: fmt.Sprintf("p%d-1-1-any.pkg.tar.zst", seed.Load())}, nil); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
