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
// one whose frame asked for a window above zstdKeepWindow (only a
// single-segment frame can: a declared window is read with at most
// zstdReadWindow, see there). Synchronous
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
		// The frame's XXH64 is not computed: it covers the decoded
		// content and is compared after the last block, and the bytes
		// read here are proven by the sha256 and the signature (a fifth
		// of the decode of a 50 KiB package).
		return zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
			zstd.IgnoreChecksum(true), zstd.WithDecoderMaxWindow(zstdMaxWindow))
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
//
// A zstd frame that declares a window above zstdReadWindow is first decoded
// with that smaller window (see there); if that fails, once more from the
// start with the frame's own window, from r rewound (an io.Seeker) or from
// the compressed bytes read so far (up to zstdRetryPrefix of them; past
// that the first pass's error stands).
func ReadPKGINFO(r io.Reader) (PKGINFO, error) {
	var start int64
	rs, seeker := r.(io.ReadSeeker)
	if seeker {
		var err error
		if start, err = rs.Seek(0, io.SeekCurrent); err != nil {
			seeker = false
		}
	}
	var rec *prefixRecorder
	first := r
	if !seeker {
		rec = &prefixRecorder{r: r}
		first = rec
	}
	info, capped, err := readPKGINFO(first, true)
	if err == nil || !capped {
		return info, err
	}
	switch {
	case seeker:
		if _, serr := rs.Seek(start, io.SeekStart); serr != nil {
			return PKGINFO{}, err
		}
	case rec.over:
		return PKGINFO{}, err
	default:
		r = io.MultiReader(bytes.NewReader(rec.buf), r)
	}
	info, _, err = readPKGINFO(r, false)
	return info, err
}

// readPKGINFO is ReadPKGINFO's one pass; capped reports that a zstd
// frame's window was lowered to zstdReadWindow for it (capWindow true).
func readPKGINFO(r io.Reader, capWindow bool) (PKGINFO, bool, error) {
	dr, capped, closeFn, err := decompress(r, capWindow)
	if err != nil {
		return PKGINFO{}, capped, fmt.Errorf("read .PKGINFO: %w: %w", ErrNoPKGINFO, err)
	}
	defer closeFn()
	tr := tar.NewReader(io.LimitReader(dr, maxBeforePKGINFO))
	for {
		h, err := tr.Next()
		if err != nil {
			return PKGINFO{}, capped, fmt.Errorf("read .PKGINFO: %w: %w", ErrNoPKGINFO, err)
		}
		if h.Name != ".PKGINFO" {
			continue
		}
		b, err := io.ReadAll(io.LimitReader(tr, maxPKGINFO+1))
		if err != nil {
			return PKGINFO{}, capped, fmt.Errorf("read .PKGINFO: %w: %w", ErrNoPKGINFO, err)
		}
		if len(b) > maxPKGINFO {
			return PKGINFO{}, false, fmt.Errorf("read .PKGINFO: %w: larger than %d bytes", ErrNoPKGINFO, maxPKGINFO)
		}
		info, err := parsePKGINFO(b)
		return info, false, err // decoded: the window was not what failed
	}
}

// decompress sniffs the compression of a package by its magic bytes. With
// capWindow a zstd frame's window is lowered to zstdReadWindow (capped
// reports it).
func decompress(r io.Reader, capWindow bool) (dr io.Reader, capped bool, closeFn func(), err error) {
	br := bufio.NewReader(r)
	magic, _ := br.Peek(6)
	nop := func() {}
	switch {
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		var window uint64 = zstdMaxWindow // unknown: not kept
		var in io.Reader = br
		var h zstd.Header
		if hb, _ := br.Peek(zstd.HeaderMaxSize); h.Decode(hb) == nil {
			window = h.WindowSize
			if h.SingleSegment { // the window is the content
				window = h.FrameContentSize
			} else if capWindow {
				in, window, capped = cappedZstd(br, h)
			}
		}
		zr, err := getZstd()
		if err != nil {
			return nil, capped, nop, err
		}
		if err := zr.Reset(in); err != nil {
			putZstd(zr, window)
			return nil, capped, nop, err
		}
		return zr, capped, func() { putZstd(zr, window) }, nil
	case bytes.HasPrefix(magic, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		xr, err := xz.NewReader(br)
		return xr, false, nop, err
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		gr, err := gzip.NewReader(br)
		if err != nil {
			return nil, false, nop, err
		}
		return gr, false, func() { _ = gr.Close() }, nil
	case bytes.HasPrefix(magic, []byte("BZh")):
		return bzip2.NewReader(br), false, nop, nil
	}
	return br, false, nop, nil // plain tar (.pkg.tar); tar.Reader reports anything else
}

// zstdReadWindow is the largest window a package's zstd frame is decoded
// with on the first try. makepkg compresses with `zstd --ultra -20` from a
// pipe, so every Arch package declares a 32 MiB window whatever its size,
// and a decoder allocates (and, on memory the Go heap reuses, zeroes) a
// ring that size: 34 MB and 8-18 ms per package (BenchmarkReadPKGINFO,
// the real package), and no decoder could be kept for the next one. Only
// the archive's first members are decoded here (.BUILDINFO, .MTREE,
// .PKGINFO: a few KiB), and a zstd match never reaches further back than
// the bytes decoded so far, so a smaller window decodes the same bytes
// until zstdReadWindow of them are out; past that a longer match is an
// error of the decoder (it checks every offset against the window, never
// reads outside its ring), after which ReadPKGINFO decodes again with the
// frame's own window. 2 MiB is the window of zstd's default level, the
// ring a kept decoder already held.
const zstdReadWindow = 2 << 20

// zstdRetryPrefix bounds the compressed bytes ReadPKGINFO keeps from a
// reader it cannot rewind, for a second pass with the frame's own window.
const zstdRetryPrefix = 8 << 20

// prefixRecorder keeps the bytes read through it, up to zstdRetryPrefix.
type prefixRecorder struct {
	r    io.Reader
	buf  []byte
	over bool // more than zstdRetryPrefix bytes were read: buf is incomplete
}

func (p *prefixRecorder) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if !p.over {
		if len(p.buf)+n > zstdRetryPrefix {
			p.over, p.buf = true, nil
		} else {
			p.buf = append(p.buf, b[:n]...)
		}
	}
	return n, err
}

// zstdWindowDescriptor is the Window_Descriptor byte of a window of
// 1<<log bytes (RFC 8878, 3.1.1.1.2: exponent log-10, mantissa 0).
func zstdWindowDescriptor(log uint) byte { return byte(log-10) << 3 }

// cappedZstd returns r with the first frame's header declaring a window of
// zstdReadWindow when it declares more (a frame with a Window_Descriptor:
// not Single_Segment), and the window the decoder will use.
func cappedZstd(br *bufio.Reader, h zstd.Header) (io.Reader, uint64, bool) {
	if h.SingleSegment || h.WindowSize <= zstdReadWindow {
		return br, h.WindowSize, false
	}
	hdr := make([]byte, 6) // magic, Frame_Header_Descriptor, Window_Descriptor
	if _, err := io.ReadFull(br, hdr); err != nil {
		return br, h.WindowSize, false // cannot happen after a Decode of the peeked header
	}
	hdr[5] = zstdWindowDescriptor(21)
	return io.MultiReader(bytes.NewReader(hdr), br), zstdReadWindow, true
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
