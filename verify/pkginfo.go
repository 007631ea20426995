package verify

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// ErrNoPKGINFO reports a package archive without a readable .PKGINFO.
var ErrNoPKGINFO = errors.New("no readable .PKGINFO in package")

// zstdMaxWindow bounds the zstd window a package may ask for: Arch packages
// use up to 32 MiB (zstd --long); 128 MiB leaves room while keeping a hostile
// file from reserving gigabytes.
const zstdMaxWindow = 128 << 20

// An idle zstd decoder is kept for the next package. A new decoder
// allocates and zeroes a history ring the size of the frame's window (2 MiB
// at zstd's default level, more for Arch's --ultra -20) for every package
// whose .PKGINFO is read: that was the largest CPU cost of a small cold
// fetch and set the daemon's peak memory (scripts/bench.sh, rows 5a and 6).
// A kept decoder keeps its ring; only the pages it decodes into are ever
// touched. One is kept, not one per P as a sync.Pool does (two rings, 4.6
// MiB of an 11 MiB live heap during a burst of small packages, and dropped
// and zeroed again after two collections); decoders used at the same time
// by concurrent downloads beyond the first are garbage after use, and so is
// one whose frame asked for a window above zstdKeepWindow. Synchronous
// decoders (concurrency 1) run no goroutine, so a dropped one is simply
// collected.
var zstdIdle = make(chan *zstd.Decoder, 1)

// zstdKeepWindow is the largest frame window whose decoder is kept idle.
const zstdKeepWindow = 8 << 20

func getZstd() (*zstd.Decoder, error) {
	select {
	case zr := <-zstdIdle:
		return zr, nil
	default:
		return zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(zstdMaxWindow))
	}
}

// putZstd keeps zr for the next package unless one is kept already or its
// ring is larger than zstdKeepWindow needs.
func putZstd(zr *zstd.Decoder, window uint64) {
	_ = zr.Reset(nil) // drop the package's reader before reuse
	if window > zstdKeepWindow {
		return
	}
	select {
	case zstdIdle <- zr:
	default:
	}
}

// maxPKGINFO bounds the size of the .PKGINFO member that is read in memory.
const maxPKGINFO = 1 << 20

// maxBeforePKGINFO bounds the decompressed bytes read until .PKGINFO ends.
// makepkg puts the metadata members (.BUILDINFO, .MTREE, .PKGINFO) first, a
// few KiB. The bound matters for xz: its decoder reserves the dictionary the
// stream declares (up to 4 GiB, no cap in ulikunitz/xz), and only the part
// written to becomes resident, so bounding the output bounds the memory a
// hostile stream can take while it is still unverified.
const maxBeforePKGINFO = 64 << 20

// PKGINFO is the identity part of a package's .PKGINFO.
type PKGINFO struct {
	Name    string // pkgname
	Base    string // pkgbase
	Version string // pkgver: [epoch:]pkgver-pkgrel
	Arch    string
}

// Matches reports whether the package is the one its file name says.
func (p PKGINFO) Matches(f PkgFile) bool {
	return p.Name == f.Name && p.Version == f.Version && p.Arch == f.Arch
}

// ReadPKGINFO reads a package archive (zstd, xz, gzip, bzip2 or plain tar)
// up to its .PKGINFO and parses it. It does not read the rest of r.
func ReadPKGINFO(r io.Reader) (PKGINFO, error) {
	dr, closeFn, err := decompress(r)
	if err != nil {
		return PKGINFO{}, fmt.Errorf("read .PKGINFO: %w: %w", ErrNoPKGINFO, err)
	}
	defer closeFn()
	tr := tar.NewReader(io.LimitReader(dr, maxBeforePKGINFO))
	for {
		h, err := tr.Next()
		if err != nil {
			return PKGINFO{}, fmt.Errorf("read .PKGINFO: %w: %w", ErrNoPKGINFO, err)
		}
		if h.Name != ".PKGINFO" {
			continue
		}
		b, err := io.ReadAll(io.LimitReader(tr, maxPKGINFO+1))
		if err != nil {
			return PKGINFO{}, fmt.Errorf("read .PKGINFO: %w: %w", ErrNoPKGINFO, err)
		}
		if len(b) > maxPKGINFO {
			return PKGINFO{}, fmt.Errorf("read .PKGINFO: %w: larger than %d bytes", ErrNoPKGINFO, maxPKGINFO)
		}
		return parsePKGINFO(b)
	}
}

// decompress sniffs the compression of a package by its magic bytes.
func decompress(r io.Reader) (io.Reader, func(), error) {
	br := bufio.NewReader(r)
	magic, _ := br.Peek(6)
	nop := func() {}
	switch {
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		var window uint64 = zstdMaxWindow // unknown: not kept
		var h zstd.Header
		if hb, _ := br.Peek(zstd.HeaderMaxSize); h.Decode(hb) == nil {
			window = h.WindowSize
			if h.SingleSegment { // the window is the content
				window = h.FrameContentSize
			}
		}
		zr, err := getZstd()
		if err != nil {
			return nil, nop, err
		}
		if err := zr.Reset(br); err != nil {
			putZstd(zr, window)
			return nil, nop, err
		}
		return zr, func() { putZstd(zr, window) }, nil
	case bytes.HasPrefix(magic, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		xr, err := xz.NewReader(br)
		return xr, nop, err
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		gr, err := gzip.NewReader(br)
		if err != nil {
			return nil, nop, err
		}
		return gr, func() { _ = gr.Close() }, nil
	case bytes.HasPrefix(magic, []byte("BZh")):
		return bzip2.NewReader(br), nop, nil
	}
	return br, nop, nil // plain tar (.pkg.tar); tar.Reader reports anything else
}

// parsePKGINFO reads "key = value" lines.
func parsePKGINFO(b []byte) (PKGINFO, error) {
	var p PKGINFO
	for line := range strings.SplitSeq(string(b), "\n") {
		key, val, ok := strings.Cut(line, " = ")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		switch key {
		case "pkgname":
			p.Name = val
		case "pkgbase":
			p.Base = val
		case "pkgver":
			p.Version = val
		case "arch":
			p.Arch = val
		}
	}
	if p.Name == "" || p.Version == "" || p.Arch == "" {
		return PKGINFO{}, fmt.Errorf("parse .PKGINFO: %w: pkgname, pkgver or arch missing", ErrNoPKGINFO)
	}
	return p, nil
}
