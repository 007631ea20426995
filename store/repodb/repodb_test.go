package repodb_test

import (
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
	"go.uber.org/goleak"

	"github.com/flocon/flocon/store/repodb"
	"github.com/flocon/flocon/verify"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const realDB = "testdata/arch-core-2025-02.db" // Arch core.db, February 2025

// realTar returns the uncompressed tar of the real core.db.
func realTar(t testing.TB) []byte {
	t.Helper()
	f, err := os.Open(realDB)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if _, err := b.ReadFrom(zr); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func compressZstd(t testing.TB, plain []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	zw, err := zstd.NewWriter(&b, zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithWindowSize(1<<22))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(plain); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func compressXZ(t testing.TB, plain []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	// a 4 KiB dictionary: the reader allocates what the stream declares
	// (8 MiB by default), which made FuzzParse crawl
	xw, err := xz.WriterConfig{DictCap: 4096}.NewWriter(&b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := xw.Write(plain); err != nil {
		t.Fatal(err)
	}
	if err := xw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func compressGzip(t testing.TB, plain []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write(plain); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// compressZstdLong uses the zstd command reading stdin, as Arch's tools do:
// the frame then declares a 2 GiB window, which the decoder must accept.
func compressZstdLong(t testing.TB, plain []byte) []byte {
	t.Helper()
	if _, err := exec.LookPath("zstd"); err != nil {
		t.Skip("zstd command not found: cannot build the long-window fixture")
	}
	cmd := exec.CommandContext(t.Context(), "zstd", "-q", "--long=31", "-c")
	cmd.Stdin = bytes.NewReader(plain)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("zstd: %v", err)
	}
	return out
}

// compressBzip2 uses the bzip2 command: the Go library has no writer.
func compressBzip2(t testing.TB, plain []byte) []byte {
	t.Helper()
	if _, err := exec.LookPath("bzip2"); err != nil {
		t.Skip("bzip2 command not found: cannot build the bzip2 fixture")
	}
	cmd := exec.CommandContext(t.Context(), "bzip2", "-c")
	cmd.Stdin = bytes.NewReader(plain)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("bzip2: %v", err)
	}
	return out
}

func TestParseRealCoreDB(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		data func(t testing.TB) []byte
	}{
		{"gzip (as published)", func(t testing.TB) []byte {
			b, err := os.ReadFile(realDB)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}},
		{"zstd", func(t testing.TB) []byte { return compressZstd(t, realTar(t)) }},
		{"zstd, 2 GiB window (zstd command)", func(t testing.TB) []byte { return compressZstdLong(t, realTar(t)) }},
		{"xz", func(t testing.TB) []byte { return compressXZ(t, realTar(t)) }},
		{"bzip2", func(t testing.TB) []byte { return compressBzip2(t, realTar(t)) }},
		{"plain tar", realTar},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			db, err := repodb.Parse(bytes.NewReader(tt.data(t)))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			checkCoreDB(t, db)
		})
	}
}

func checkCoreDB(t *testing.T, db *repodb.DB) {
	t.Helper()
	if len(db.Entries) != 265 || len(db.ByFilename) != 265 || db.Stats.Skipped != 0 {
		t.Fatalf("entries %d, byFilename %d, skipped %d (%v); want 265, 265, 0",
			len(db.Entries), len(db.ByFilename), db.Stats.Skipped, db.Stats.Reasons)
	}
	for _, e := range db.Entries {
		if len(e.PGPSig) == 0 {
			t.Errorf("%s: no %%PGPSIG%%", e.Filename)
		}
		if _, err := e.CID(); err != nil {
			t.Errorf("%s: CID: %v", e.Filename, err)
		}
	}
	acl := db.ByFilename["acl-2.3.2-1-x86_64.pkg.tar.zst"]
	if acl == nil {
		t.Fatal("acl-2.3.2-1 missing")
	}
	want := repodb.Entry{
		Filename: "acl-2.3.2-1-x86_64.pkg.tar.zst", Name: "acl", Base: "acl", Version: "2.3.2-1",
		Desc: "Access control list utilities, libraries and headers", Arch: "x86_64",
		CSize: 141091, ISize: 337902, MD5: "33d329308c838e76498e4eac7e603291",
		SHA256:    "cbfb71e8ba9aca9e51cbdfd77d0ec51371eb865a9a098c77e2c6046962e6ae0a",
		BuildDate: 1706086640, Packager: "Christian Hesse <eworm@archlinux.org>",
		PGPSig: acl.PGPSig,
		Fields: map[string][]string{
			"URL": {"https://savannah.nongnu.org/projects/acl"}, "LICENSE": {"LGPL"},
			"REPLACES": {"xfsacl"}, "CONFLICTS": {"xfsacl"}, "PROVIDES": {"xfsacl", "libacl.so=1-64"},
			"DEPENDS": {"glibc"}, "MAKEDEPENDS": {"attr"},
		},
	}
	if !reflect.DeepEqual(*acl, want) {
		t.Errorf("acl entry:\n got %+v\nwant %+v", *acl, want)
	}
	if len(acl.PGPSig) != 119 || acl.PGPSig[0] != 0x88 {
		t.Errorf("acl PGPSig: %d bytes starting %#x, want 119 bytes of a signature packet", len(acl.PGPSig), acl.PGPSig[0])
	}
	zstdE := db.ByFilename["zstd-1.5.6-1-x86_64.pkg.tar.zst"]
	if zstdE == nil || zstdE.SHA256 != "81ca89591caf52923f0f2543ca52cc4683aabc90ab390d419900be28d835f0d1" || zstdE.CSize != 511583 {
		t.Errorf("zstd entry: %+v", zstdE)
	}
	linux := db.ByFilename["linux-6.13.2.arch1-1-x86_64.pkg.tar.zst"]
	if linux == nil || linux.CSize != 144955470 || linux.Version != "6.13.2.arch1-1" {
		t.Errorf("linux entry: %+v", linux)
	}
}

func TestParseFilesDB(t *testing.T) {
	t.Parallel()
	entries := []repodb.Entry{
		sampleEntry("foo", "1.0-1", 1),
		sampleEntry("bar-baz", "2:0.1.r3-2", 2),
	}
	var plain bytes.Buffer
	if err := repodb.WriteTar(&plain, entries, true); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(plain.Bytes(), []byte("%FILES%")) {
		t.Fatal("fixture has no files lists")
	}
	db, err := repodb.Parse(bytes.NewReader(compressGzip(t, plain.Bytes())))
	if err != nil {
		t.Fatal(err)
	}
	if len(db.Entries) != 2 || db.Stats.Skipped != 0 {
		t.Fatalf("got %d entries, %d skipped, want 2, 0", len(db.Entries), db.Stats.Skipped)
	}
	for _, want := range entries {
		got := db.ByFilename[want.Filename]
		if got == nil || !reflect.DeepEqual(*got, want) {
			t.Errorf("entry %s:\n got %+v\nwant %+v", want.Filename, got, want)
		}
	}
}

func sampleEntry(name, version string, seed byte) repodb.Entry {
	return repodb.Entry{
		Filename: name + "-" + version + "-x86_64.pkg.tar.zst", Name: name, Base: name,
		Version: version, Desc: "a test package", Arch: "x86_64", CSize: 1000 + int64(seed),
		ISize: 5000, SHA256: strings.Repeat(string("0123456789abcdef"[seed%16]), 64),
		PGPSig: []byte{0x88, seed, 3}, BuildDate: 1700000000, Packager: "Test <t@example.org>",
		Fields: map[string][]string{"DEPENDS": {"glibc", "zlib"}, "LICENSE": {"MIT"}, "XDATA": {"pkgtype=pkg"}},
	}
}

func TestParseMalformed(t *testing.T) {
	t.Parallel()
	good := compressGzip(t, realTar(t))
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"garbage", []byte(strings.Repeat("this is not a tar archive\n", 40))},
		{"truncated gzip", good[:len(good)/2]},
		{"truncated tar", realTar(t)[:5000]},
		{"truncated zstd", compressZstd(t, realTar(t))[:3000]},
		{"gzip of garbage", compressGzip(t, bytes.Repeat([]byte{0xAB}, 4096))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			db, err := repodb.Parse(bytes.NewReader(tt.data))
			if !errors.Is(err, repodb.ErrFormat) {
				t.Fatalf("Parse = %v, %v; want ErrFormat", db, err)
			}
		})
	}
}

func TestParseSkipsBadEntries(t *testing.T) {
	t.Parallel()
	good := sampleEntry("good", "1-1", 1)
	badSum := sampleEntry("badsum", "1-1", 2)
	badSum.SHA256 = "xyz"
	noName := sampleEntry("noname", "1-1", 3)
	noName.Name = ""
	dup := sampleEntry("good", "1-1", 4) // same filename as good
	var plain bytes.Buffer
	if err := repodb.WriteTar(&plain, []repodb.Entry{good, badSum, noName, dup}, false); err != nil {
		t.Fatal(err)
	}
	db, err := repodb.Parse(&plain)
	if err != nil {
		t.Fatal(err)
	}
	if len(db.Entries) != 1 || db.Entries[0].Filename != good.Filename {
		t.Fatalf("entries = %+v, want only %s", db.Entries, good.Filename)
	}
	if db.Stats.Skipped != 3 || len(db.Stats.Reasons) != 3 {
		t.Fatalf("skipped %d (%v), want 3", db.Stats.Skipped, db.Stats.Reasons)
	}
	for _, r := range db.Stats.Reasons {
		if !errors.Is(r.Err, repodb.ErrEntry) {
			t.Errorf("reason %s: %v does not wrap ErrEntry", r.Path, r.Err)
		}
	}
}

func TestParseDesc(t *testing.T) {
	t.Parallel()
	const sum = "cbfb71e8ba9aca9e51cbdfd77d0ec51371eb865a9a098c77e2c6046962e6ae0a"
	base := "%FILENAME%\na-1-1-any.pkg.tar.zst\n\n%NAME%\na\n\n%VERSION%\n1-1\n\n%SHA256SUM%\n" + sum + "\n\n"
	tests := []struct {
		name    string
		desc    string
		wantErr bool
		check   func(t *testing.T, e repodb.Entry)
	}{
		{name: "minimal", desc: base, check: func(t *testing.T, e repodb.Entry) {
			if e.Filename != "a-1-1-any.pkg.tar.zst" || e.Name != "a" || e.Version != "1-1" || e.SHA256 != sum {
				t.Errorf("entry %+v", e)
			}
		}},
		{name: "crlf and no trailing blank", desc: strings.ReplaceAll(base, "\n", "\r\n") + "%URL%\r\nhttp://x", check: func(t *testing.T, e repodb.Entry) {
			if got := e.Fields["URL"]; len(got) != 1 || got[0] != "http://x" {
				t.Errorf("URL = %q", got)
			}
		}},
		{name: "uppercase sha", desc: strings.Replace(base, sum, strings.ToUpper(sum), 1), check: func(t *testing.T, e repodb.Entry) {
			if e.SHA256 != sum {
				t.Errorf("SHA256 = %q", e.SHA256)
			}
		}},
		{name: "unknown and multi-valued kept", desc: base + "%GROUPS%\nbase\nbase-devel\n\n%NEWTHING%\nx\n", check: func(t *testing.T, e repodb.Entry) {
			if !reflect.DeepEqual(e.Fields["GROUPS"], []string{"base", "base-devel"}) || !reflect.DeepEqual(e.Fields["NEWTHING"], []string{"x"}) {
				t.Errorf("Fields = %v", e.Fields)
			}
		}},
		{name: "missing filename", desc: strings.Replace(base, "%FILENAME%\na-1-1-any.pkg.tar.zst\n\n", "", 1), wantErr: true},
		{name: "filename with slash", desc: strings.Replace(base, "a-1-1-any", "../a-1-1-any", 1), wantErr: true},
		{name: "missing sha256", desc: strings.Replace(base, "%SHA256SUM%\n"+sum+"\n\n", "", 1), wantErr: true},
		{name: "short sha256", desc: strings.Replace(base, sum, sum[:62], 1), wantErr: true},
		{name: "non-hex sha256", desc: strings.Replace(base, sum, "zz"+sum[2:], 1), wantErr: true},
		{name: "bad csize", desc: base + "%CSIZE%\nbig\n", wantErr: true},
		{name: "negative isize", desc: base + "%ISIZE%\n-4\n", wantErr: true},
		{name: "bad pgpsig", desc: base + "%PGPSIG%\n!!!\n", wantErr: true},
		{name: "two names", desc: base + "%NAME%\nb\n", wantErr: true},
		{name: "text outside section", desc: "hello\n" + base, wantErr: true},
		{name: "empty", desc: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e, err := repodb.ParseDesc([]byte(tt.desc))
			if tt.wantErr {
				if !errors.Is(err, repodb.ErrEntry) {
					t.Fatalf("ParseDesc = %+v, %v; want ErrEntry", e, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, e)
		})
	}
}

func FuzzParseDesc(f *testing.F) {
	plain := realTar(f)
	for _, name := range []string{"acl-2.3.2-1/desc", "zstd-1.5.6-1/desc"} {
		i := bytes.Index(plain, []byte(name))
		if i < 0 {
			f.Fatalf("%s not in fixture", name)
		}
		// the desc body starts at the next 512-byte block after the header
		start := (i/512 + 1) * 512
		end := bytes.IndexByte(plain[start:], 0)
		f.Add(plain[start : start+end])
	}
	f.Add([]byte("%FILENAME%\nx\n\n%SHA256SUM%\n00\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := repodb.ParseDesc(b)
		if err != nil {
			if !errors.Is(err, repodb.ErrEntry) {
				t.Fatalf("error %v does not wrap ErrEntry", err)
			}
			return
		}
		if _, err := e.CID(); err != nil {
			t.Fatalf("accepted entry has no CID: %v", err)
		}
		again, err := repodb.ParseDesc(repodb.FormatDesc(e))
		if err != nil {
			t.Fatalf("reparse of formatted entry: %v", err)
		}
		normalize(&e)
		normalize(&again)
		if !reflect.DeepEqual(e, again) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", again, e)
		}
	})
}

// normalize drops empty sections, which FormatDesc does not write.
func normalize(e *repodb.Entry) {
	for k, v := range e.Fields {
		if len(v) == 0 {
			delete(e.Fields, k)
		}
	}
	if len(e.Fields) == 0 {
		e.Fields = nil
	}
	if len(e.PGPSig) == 0 {
		e.PGPSig = nil
	}
}

func BenchmarkParseRealCoreDB(b *testing.B) {
	data, err := os.ReadFile(realDB)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := repodb.Parse(bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzParse: any bytes give a database or an ErrFormat error, never a panic,
// and every entry returned is usable (valid file name, CID).
func FuzzParse(f *testing.F) {
	repodb.SetZstdMaxWindow(8 << 20)
	var plain bytes.Buffer
	if err := repodb.WriteTar(&plain, []repodb.Entry{sampleEntry("foo", "1-1", 1)}, true); err != nil {
		f.Fatal(err)
	}
	f.Add(plain.Bytes())
	f.Add(compressGzip(f, plain.Bytes()))
	f.Add(compressZstd(f, plain.Bytes()))
	f.Add(compressXZ(f, plain.Bytes()))
	f.Add([]byte("BZh9"))
	f.Fuzz(func(t *testing.T, b []byte) {
		db, err := repodb.Parse(bytes.NewReader(b))
		if err != nil {
			if !errors.Is(err, repodb.ErrFormat) {
				t.Fatalf("error %v does not wrap ErrFormat", err)
			}
			return
		}
		for _, e := range db.Entries {
			if !verify.ValidFileName(e.Filename) || db.ByFilename[e.Filename] == nil {
				t.Fatalf("entry with file name %q", e.Filename)
			}
			if _, err := e.CID(); err != nil {
				t.Fatal(err)
			}
		}
	})
}
