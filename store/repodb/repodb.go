package repodb

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"

	"github.com/ipfs/go-cid"
	"github.com/klauspost/compress/zstd"
	mh "github.com/multiformats/go-multihash"
	"github.com/ulikunitz/xz"
)

// Sentinel errors.
var (
	// ErrFormat reports a database that cannot be read.
	ErrFormat = errors.New("malformed repo database")
	// ErrEntry reports one desc that cannot be used; Walk skips such entries.
	ErrEntry = errors.New("malformed repo database entry")
)

// maxDescSize bounds the memory one desc may take: real ones are a few KiB.
const maxDescSize = 1 << 20

// zstdMaxWindow is the largest zstd window a database may declare: 2 GiB,
// so that a db made with `zstd --long=31` reads. The decoder allocates the
// declared window up front (virtual memory, touched as output is written),
// so a frame of a few hundred bytes can reserve that much. A var: the fuzz
// target lowers it to fuzz at speed (export_test.go).
var zstdMaxWindow uint64 = 1 << 31

// maxSkipReasons bounds how many skip reasons a walk keeps (the count is exact).
const maxSkipReasons = 32

// Entry is one package of a sync database (every field of its desc).
type Entry struct {
	Filename  string              `json:"filename"`
	Name      string              `json:"name"`
	Base      string              `json:"base,omitempty"`
	Version   string              `json:"version"`
	Desc      string              `json:"desc,omitempty"`
	Arch      string              `json:"arch"`
	CSize     int64               `json:"csize"`
	ISize     int64               `json:"isize"`
	SHA256    string              `json:"sha256"` // hex
	MD5       string              `json:"md5,omitempty"`
	PGPSig    []byte              `json:"pgpsig,omitempty"` // decoded %PGPSIG%
	BuildDate int64               `json:"builddate,omitempty"`
	Packager  string              `json:"packager,omitempty"`
	Fields    map[string][]string `json:"fields,omitempty"` // every other %FIELD%
}

// CID is the content address of the package file, derived from %SHA256SUM%.
func (e Entry) CID() (cid.Cid, error) {
	sum, err := hex.DecodeString(e.SHA256)
	if err != nil || len(sum) != 32 {
		return cid.Undef, fmt.Errorf("entry %s: sha256 %q: %w", e.Filename, e.SHA256, ErrEntry)
	}
	m, err := mh.Encode(sum, mh.SHA2_256)
	if err != nil {
		return cid.Undef, fmt.Errorf("entry %s: %w", e.Filename, err)
	}
	return cid.NewCidV1(cid.Raw, m), nil
}

// Skip is one entry left out of a database, with the reason.
type Skip struct {
	Path string // tar member, e.g. "acl-2.3.2-1/desc"
	Err  error
}

// Stats summarises a walk over a database.
type Stats struct {
	Entries int    // entries delivered
	Skipped int    // entries skipped (exact count)
	Reasons []Skip // the first few skip reasons
}

func (st *Stats) skip(name string, err error) {
	st.Skipped++
	if len(st.Reasons) < maxSkipReasons {
		st.Reasons = append(st.Reasons, Skip{Path: name, Err: err})
	}
}

// DB is a parsed sync database.
type DB struct {
	Entries    []Entry
	ByFilename map[string]*Entry
	Stats      Stats
}

// Parse reads a whole database, sniffing its compression. Broken entries are
// skipped and counted in DB.Stats; a broken archive is an error (ErrFormat).
func Parse(r io.Reader) (*DB, error) {
	db := &DB{}
	st, err := Walk(r, func(e Entry) error {
		db.Entries = append(db.Entries, e)
		return nil
	})
	if err != nil {
		return nil, err
	}
	db.Stats = st
	db.ByFilename = make(map[string]*Entry, len(db.Entries))
	for i := range db.Entries {
		db.ByFilename[db.Entries[i].Filename] = &db.Entries[i]
	}
	return db, nil
}

// Walk streams a database, calling fn for every valid entry in archive order
// with bounded memory (one desc at a time). A duplicate filename or a broken
// desc is skipped and counted; an error from fn stops the walk and is returned.
func Walk(r io.Reader, fn func(Entry) error) (Stats, error) {
	var st Stats
	dr, closeFn, err := decompress(r)
	if err != nil {
		return st, err
	}
	defer closeFn()
	seen := make(map[string]struct{})
	tr := tar.NewReader(dr)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return st, nil
		}
		if err != nil {
			return st, fmt.Errorf("read archive: %w: %w", ErrFormat, err)
		}
		if hdr.Typeflag != tar.TypeReg || path.Base(hdr.Name) != "desc" {
			continue // directories, files lists and anything else
		}
		e, err := readDesc(tr, hdr)
		if errors.Is(err, ErrEntry) {
			st.skip(hdr.Name, err)
			continue
		}
		if err != nil {
			return st, err
		}
		if _, dup := seen[e.Filename]; dup {
			st.skip(hdr.Name, fmt.Errorf("duplicate filename %s: %w", e.Filename, ErrEntry))
			continue
		}
		seen[e.Filename] = struct{}{}
		if err := fn(e); err != nil {
			return st, err
		}
		st.Entries++
	}
}

func readDesc(tr *tar.Reader, hdr *tar.Header) (Entry, error) {
	if hdr.Size > maxDescSize {
		return Entry{}, fmt.Errorf("desc %s: %d bytes: %w", hdr.Name, hdr.Size, ErrEntry)
	}
	b, err := io.ReadAll(tr)
	if err != nil {
		return Entry{}, fmt.Errorf("read %s: %w: %w", hdr.Name, ErrFormat, err)
	}
	e, err := ParseDesc(b)
	if err != nil {
		return Entry{}, fmt.Errorf("parse %s: %w", hdr.Name, err)
	}
	return e, nil
}

// decompress sniffs the magic bytes of r and returns the tar stream.
func decompress(r io.Reader) (io.Reader, func(), error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, err := br.Peek(6)
	if len(magic) == 0 {
		if err == nil || errors.Is(err, io.EOF) {
			err = errors.New("empty file")
		}
		return nil, nil, fmt.Errorf("sniff: %w: %w", ErrFormat, err)
	}
	noop := func() {}
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("gzip: %w: %w", ErrFormat, err)
		}
		return zr, func() { _ = zr.Close() }, nil
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br,
			zstd.WithDecoderMaxWindow(zstdMaxWindow),
			zstd.WithDecoderLowmem(true),
			zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, nil, fmt.Errorf("zstd: %w: %w", ErrFormat, err)
		}
		return zr, zr.Close, nil
	case bytes.HasPrefix(magic, []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}):
		zr, err := xz.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("xz: %w: %w", ErrFormat, err)
		}
		return zr, noop, nil
	case bytes.HasPrefix(magic, []byte("BZh")):
		return bzip2.NewReader(br), noop, nil
	}
	return br, noop, nil // plain tar; the tar reader judges it
}

// Fields held in Entry's own members; everything else goes to Entry.Fields.
var knownFields = []string{
	"FILENAME", "NAME", "BASE", "VERSION", "DESC", "CSIZE", "ISIZE", "MD5SUM",
	"SHA256SUM", "PGPSIG", "ARCH", "BUILDDATE", "PACKAGER",
}

// ParseDesc parses one desc file. It requires %FILENAME%, %NAME%, %VERSION%
// and a valid %SHA256SUM%; errors wrap ErrEntry.
func ParseDesc(b []byte) (Entry, error) {
	sections, err := splitSections(b)
	if err != nil {
		return Entry{}, err
	}
	var e Entry
	seen := make(map[string]bool, len(sections))
	for _, s := range sections {
		if seen[s.name] && slices.Contains(knownFields, s.name) {
			return Entry{}, fmt.Errorf("%%%s%% appears twice: %w", s.name, ErrEntry)
		}
		seen[s.name] = true
		if err := e.set(s.name, s.values); err != nil {
			return Entry{}, err
		}
	}
	if err := e.validate(); err != nil {
		return Entry{}, err
	}
	return e, nil
}

type section struct {
	name   string
	values []string
}

// splitSections reads "%NAME%" headers each followed by value lines up to a
// blank line, the way libalpm's sync db reader does.
func splitSections(b []byte) ([]section, error) {
	var out []section
	inSection := false
	for line := range strings.Lines(string(b)) {
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "":
			inSection = false
		case inSection:
			out[len(out)-1].values = append(out[len(out)-1].values, line)
		case len(line) > 2 && line[0] == '%' && line[len(line)-1] == '%' &&
			!strings.ContainsAny(line[1:len(line)-1], "% \t"):
			out = append(out, section{name: line[1 : len(line)-1]})
			inSection = true
		default:
			return nil, fmt.Errorf("desc line %q outside a section: %w", truncate(line), ErrEntry)
		}
	}
	return out, nil
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
