package p2p

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// Wire format of flocon's two protocols. Integers are unsigned varints;
// a size is sent as size+1 so that 0 means "unknown" (an in-flight download
// whose length the leader does not know).
//
//	have request:  cidLen cid
//	have answer:   state(1 byte) size+1 available startedUnixMicros
//	blob request:  kind(1 byte) cidLen cid offset
//	blob answer:   status(1 byte) size+1 available, then the raw bytes from
//	               offset to size (a signature for kindSig)
//
// have/1.1.0 adds the blob's first bytes to a "complete" answer (heads.go):
//
//	have request:  cidLen cid headWant
//	have answer:   that of 1.0.0, then headLen and headLen bytes
//	               (headLen <= headWant, maxHead, size-1; 0 unless complete)
//
// blob/1.1.0 frames the body of the answer, so that a sender with nothing
// to send can say it is alive (liveness.go); the request and the header
// are those of 1.0.0, which a node still serves to older peers:
//
//	blob body:     frames: length, then length bytes (at most chunkSize);
//	               length 0 is a keepalive; the stream ends between frames
//
// A sender that finds its copy corrupt resets the stream with
// codeCorrupt before the last byte; a clean end of stream always means "that
// was everything", so a short one is a lie.
const (
	haveProto = protocol.ID("/flocon/have/1.0.0")
	// haveProtoHead is have/1.0.0 with the blob's first bytes (heads.go).
	haveProtoHead = protocol.ID("/flocon/have/1.1.0")
	blobProto     = protocol.ID("/flocon/blob/1.0.0")
	// blobProtoLive is blob/1.0.0 with a framed body and keepalives.
	blobProtoLive = protocol.ID("/flocon/blob/1.1.0")

	// codeCorrupt resets a blob stream whose source file failed its hash.
	codeCorrupt network.StreamErrorCode = 0x464c4301 // "FLC\x01"

	maxCIDLen  = 128
	chunkSize  = 1 << 20
	headerWait = 10 // seconds a peer has to send a request header
)

// have states.
const (
	haveNone     byte = 0
	haveComplete byte = 1
	haveInflight byte = 2
)

// blob request kinds.
const (
	kindBlob byte = 1
	kindSig  byte = 2
)

// blob answer statuses.
const (
	statusOK         byte = 0
	statusNotFound   byte = 1
	statusBusy       byte = 2
	statusBadRequest byte = 3
)

// header is the start of a have or blob answer.
type header struct {
	code      byte  // have state or blob status
	size      int64 // -1: unknown
	available int64
	started   time.Time // have answers: when the in-flight download started
}

// writeHave writes a have answer: the header plus the in-flight start.
func writeHave(w io.Writer, h header) error {
	_, err := w.Write(appendHave(nil, h))
	return err
}

// appendHave appends a have answer (the header plus the in-flight start).
func appendHave(b []byte, h header) []byte {
	b = appendHeader(b, h)
	var us int64
	if !h.started.IsZero() {
		us = max(h.started.UnixMicro(), 0)
	}
	return binary.AppendUvarint(b, uint64(us))
}

// appendHead appends a have/1.1.0 answer's head to an encoded answer.
func appendHead(b, head []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(head)))
	return append(b, head...)
}

// readHead reads a have/1.1.0 answer's head: at most want bytes, fewer
// than the announced size, none unless complete.
func readHead(r *bufio.Reader, h header, want int) ([]byte, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, eofMalformed(err)
	}
	if n == 0 {
		return nil, nil
	}
	if n > uint64(want) || h.code != haveComplete || h.size < 0 || n >= uint64(h.size) {
		return nil, fmt.Errorf("head of %d bytes (wanted %d, state %d, size %d): %w", n, want, h.code, h.size, errMalformed)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, eofMalformed(err)
	}
	return b, nil
}

// readHave reads a have answer.
func readHave(r *bufio.Reader) (header, error) {
	h, err := readHeader(r)
	if err != nil {
		return h, err
	}
	if h.code != haveNone && h.code != haveComplete && h.code != haveInflight {
		return h, fmt.Errorf("have state %d: %w", h.code, errMalformed)
	}
	us, err := binary.ReadUvarint(r)
	if err != nil {
		return h, eofMalformed(err)
	}
	if us > 0 && us < 1<<62 {
		h.started = time.UnixMicro(int64(us))
	}
	return h, nil
}

func writeHeader(w io.Writer, h header) error {
	_, err := w.Write(appendHeader(make([]byte, 0, 1+2*binary.MaxVarintLen64), h))
	return err
}

// appendHeader appends the encoding of an answer header to b.
func appendHeader(b []byte, h header) []byte {
	b = append(b, h.code)
	b = binary.AppendUvarint(b, uint64(h.size+1))
	return binary.AppendUvarint(b, uint64(h.available))
}

// errMalformed is a frame that does not parse: misbehaviour, not a failure.
var errMalformed = errors.New("malformed frame")

// readHeader reads an answer header; a frame that does not parse, or a
// stream that ends cleanly before its header, wraps errMalformed.
func readHeader(r *bufio.Reader) (header, error) {
	code, err := r.ReadByte()
	if err != nil {
		return header{}, eofMalformed(err)
	}
	size, err := binary.ReadUvarint(r)
	if err != nil {
		return header{}, eofMalformed(err)
	}
	avail, err := binary.ReadUvarint(r)
	if err != nil {
		return header{}, eofMalformed(err)
	}
	if size > maxBlobSize || avail > maxBlobSize || (size > 0 && avail > size-1) {
		return header{}, fmt.Errorf("size %d, available %d: %w", int64(size)-1, avail, errMalformed)
	}
	return header{code: code, size: int64(size) - 1, available: int64(avail)}, nil
}

// eofMalformed turns a clean end of stream inside a header, or a varint
// that overflows, into errMalformed. Everything else (a reset, a deadline, a
// dropped connection, which may wrap io.EOF) passes through as a plain
// failure: only the bare sentinels are the sender's own clean end.
func eofMalformed(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF { //nolint:errorlint // identity on purpose
		return fmt.Errorf("stream ended inside a header: %w", errMalformed)
	}
	if err != nil && err.Error() == errVarintOverflow {
		return fmt.Errorf("%v: %w", err, errMalformed)
	}
	return err
}

// errVarintOverflow is encoding/binary's (unexported) overflow message.
const errVarintOverflow = "binary: varint overflows a 64-bit integer"

func writeCID(b []byte, c cid.Cid) []byte {
	cb := c.Bytes()
	b = binary.AppendUvarint(b, uint64(len(cb)))
	return append(b, cb...)
}

func readCID(r *bufio.Reader) (cid.Cid, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return cid.Undef, err
	}
	if n == 0 || n > maxCIDLen {
		return cid.Undef, fmt.Errorf("cid length %d: %w", n, errMalformed)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return cid.Undef, err
	}
	_, c, err := cid.CidFromBytes(b)
	if err != nil {
		return cid.Undef, fmt.Errorf("cid: %v: %w", err, errMalformed)
	}
	return c, nil
}

// blobRequest is what a blob stream asks for.
type blobRequest struct {
	kind byte
	c    cid.Cid
	off  int64
}

func (q blobRequest) encode() []byte {
	b := []byte{q.kind}
	b = writeCID(b, q.c)
	return binary.AppendUvarint(b, uint64(q.off))
}

func readBlobRequest(r *bufio.Reader) (blobRequest, error) {
	kind, err := r.ReadByte()
	if err != nil {
		return blobRequest{}, err
	}
	if kind != kindBlob && kind != kindSig {
		return blobRequest{}, fmt.Errorf("request kind %d: %w", kind, errMalformed)
	}
	c, err := readCID(r)
	if err != nil {
		return blobRequest{}, err
	}
	off, err := binary.ReadUvarint(r)
	if err != nil {
		return blobRequest{}, err
	}
	if off > maxBlobSize {
		return blobRequest{}, fmt.Errorf("offset %d: %w", off, errMalformed)
	}
	return blobRequest{kind: kind, c: c, off: int64(off)}, nil
}

func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// framed reports whether a blob stream speaks blob/1.1.0 (a framed body).
func framed(str network.Stream) bool { return str.Protocol() == blobProtoLive }

// isCorruptReset reports a reset by a sender that found its copy corrupt.
func isCorruptReset(err error) bool {
	var se *network.StreamError
	return errors.As(err, &se) && se.Remote && se.ErrorCode == codeCorrupt
}
