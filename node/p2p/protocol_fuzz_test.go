package p2p

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/flocon/flocon/verify"
)

// FuzzFrames feeds arbitrary bytes from a peer to every frame decoder of
// the have and blob protocols (the framed body of blob/1.1.0 too): none
// panics; an answer that does not decode is errMalformed or the stream's
// own end (the client's ban decision reads it; a bad request is only
// reset, whatever its error); whatever decodes is within the protocol's
// bounds and encodes back to the same value.
func FuzzFrames(f *testing.F) {
	c, err := verify.CIDFromSHA256(make([]byte, 32))
	if err != nil {
		f.Fatal(err)
	}
	var have bytes.Buffer
	_ = writeHave(&have, header{code: haveInflight, size: 100, available: 40, started: time.Unix(1700000000, 0)})
	var hdr bytes.Buffer
	_ = writeHeader(&hdr, header{code: statusOK, size: -1, available: 7})
	f.Add(blobRequest{kind: kindBlob, c: c, off: 12}.encode())
	f.Add(blobRequest{kind: kindSig, c: c}.encode())
	f.Add(have.Bytes())
	f.Add(appendHead(appendHave(nil, header{code: haveComplete, size: 10, available: 10}), []byte("123")))
	f.Add(hdr.Bytes())
	f.Add(writeCID(nil, c))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Add([]byte{})
	f.Add([]byte{0, 3, 'a', 'b', 'c', 0, 0}) // a framed body: keepalives and one frame
	f.Fuzz(func(t *testing.T, b []byte) {
		checkFrameErr := func(what string, err error) {
			if err != nil && !errors.Is(err, errMalformed) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("%s: unexpected error %v", what, err)
			}
		}
		if q, err := readBlobRequest(bufio.NewReader(bytes.NewReader(b))); err == nil {
			if (q.kind != kindBlob && q.kind != kindSig) || !q.c.Defined() || q.off < 0 || q.off > maxBlobSize {
				t.Fatalf("accepted request %+v", q)
			}
			again, err := readBlobRequest(bufio.NewReader(bytes.NewReader(q.encode())))
			if err != nil || again != q {
				t.Fatalf("request %+v re-read as %+v, %v", q, again, err)
			}
		}
		if h, err := readHeader(bufio.NewReader(bytes.NewReader(b))); err == nil {
			checkFrameHeader(t, h)
			var buf bytes.Buffer
			_ = writeHeader(&buf, h)
			if again, err := readHeader(bufio.NewReader(&buf)); err != nil || again != h {
				t.Fatalf("header %+v re-read as %+v, %v", h, again, err)
			}
		} else {
			checkFrameErr("header", err)
		}
		checkHave(t, b, checkFrameErr)
		// A framed body (blob/1.1.0) yields at most its own bytes; a bad
		// one is malformed or short, both of which ban.
		if data, err := io.ReadAll(&frameReader{r: bufio.NewReader(bytes.NewReader(b))}); err != nil {
			if !errors.Is(err, errMalformed) && !errors.Is(err, errTruncated) {
				t.Fatalf("framed body: unexpected error %v", err)
			}
		} else if len(data) > len(b) {
			t.Fatalf("framed body of %d bytes yielded %d", len(b), len(data))
		}
		if c, err := readCID(bufio.NewReader(bytes.NewReader(b))); err == nil && !c.Defined() {
			t.Fatal("accepted an undefined cid")
		}
	})
}

// checkHave decodes b as a have/1.1.0 answer: the head is never the whole
// blob, nor more than asked.
func checkHave(t *testing.T, b []byte, checkFrameErr func(string, error)) {
	t.Helper()
	r := bufio.NewReader(bytes.NewReader(b))
	h, err := readHave(r)
	if err != nil {
		checkFrameErr("have", err)
		return
	}
	checkFrameHeader(t, h)
	if h.code != haveNone && h.code != haveComplete && h.code != haveInflight {
		t.Fatalf("accepted have state %d", h.code)
	}
	head, err := readHead(r, h, maxHead)
	checkFrameErr("head", err)
	if len(head) > 0 && (h.code != haveComplete || int64(len(head)) >= h.size || len(head) > maxHead) {
		t.Fatalf("accepted a head of %d bytes with %+v", len(head), h)
	}
}

func checkFrameHeader(t *testing.T, h header) {
	t.Helper()
	if h.size < -1 || h.size > maxBlobSize || h.available < 0 || h.available > maxBlobSize ||
		(h.size >= 0 && h.available > h.size) {
		t.Fatalf("accepted header %+v", h)
	}
}
