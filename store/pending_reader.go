package store

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
)

// readableLocked is how far readers may read: everything once verified,
// otherwise one byte less than what is there (and than the expected size).
func (p *Pending) readableLocked() int64 {
	if p.verified {
		return p.written
	}
	limit := p.written
	if p.size >= 0 && p.size < limit {
		limit = p.size
	}
	return max(limit-1, 0)
}

// NewReader reads from offset off, blocking while bytes are still to come.
// It returns io.EOF only at the end of a verified download and the abort
// error after Abort; ctx ends a blocked read. Peers serve partial blobs
// through it: a reader only ever gets what is already written. The reader
// is also a Sender.
func (p *Pending) NewReader(ctx context.Context, off int64) io.ReadCloser {
	p.mu.Lock()
	defer p.mu.Unlock()
	return &pendingReader{p: p, ctx: ctx, pos: max(off, 0), truncSeen: len(p.truncs)}
}

// pendingReader follows a Pending with its own file descriptor and ReadAt:
// no goroutine and no buffering per reader.
type pendingReader struct {
	p         *Pending
	ctx       context.Context //nolint:containedctx // a reader is bound to its request
	pos       int64
	truncSeen int // how many of p.truncs were checked
	f         *os.File
	mem       []byte // a download held in memory: its bytes when last looked (no f)
	closed    bool
}

// truncatedLocked reports whether a Truncate below the reader's position
// happened since it last looked; p.mu must be held.
func (r *pendingReader) truncatedLocked(pos int64) error {
	for ; r.truncSeen < len(r.p.truncs); r.truncSeen++ {
		if r.p.truncs[r.truncSeen] < pos {
			return fmt.Errorf("read %s at %d: %w", r.p.cid, pos, ErrTruncated)
		}
	}
	return nil
}

func (r *pendingReader) Read(b []byte) (int, error) {
	if len(b) == 0 {
		if r.closed {
			return 0, os.ErrClosed
		}
		return 0, nil
	}
	span, err := r.wait(int64(len(b)), false)
	if err != nil {
		return 0, err
	}
	return r.readAt(b[:span])
}

// Sender is what the readers of NewReader also are: a way to hand the
// bytes to a writer without copying them through a buffer.
type Sender interface {
	// SendTo copies up to n bytes from the reader's position to w as they
	// become readable (n < 0: to the end), with the guarantees of Read. It
	// returns io.EOF only at the end of a verified download, and otherwise
	// the error of the reader or of w.
	SendTo(w io.Writer, n int64) (int64, error)
}

// SendTo hands each readable span to w as an io.LimitedReader over the
// reader's own descriptor, so a w whose ReadFrom reaches a socket sends it
// with sendfile: no copy through user space and one system call per span
// instead of a read and a write per buffer. A byte sent cannot be taken
// back, so the span counts as handed out before it goes; a Truncate that
// replaced bytes during the send fails the reader with ErrTruncated after
// it (the caller cuts the response; the discarded prefix covers the span).
func (r *pendingReader) SendTo(w io.Writer, n int64) (int64, error) {
	var total int64
	for n != 0 {
		want := n
		if want < 0 {
			want = math.MaxInt64
		}
		span, err := r.wait(want, true)
		if err != nil {
			return total, err
		}
		k, err := r.send(w, span)
		total += k
		if n > 0 {
			n -= k
		}
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// wait blocks until bytes past the reader's position may be read and
// returns how many (at most want), with the reader's descriptor open.
// expose counts them as handed out at once (SendTo), under the same lock
// that found them readable, so a Truncate after it always sees them.
func (r *pendingReader) wait(want int64, expose bool) (int64, error) {
	if r.closed {
		return 0, os.ErrClosed
	}
	for {
		p := r.p
		p.mu.Lock()
		if err := r.truncatedLocked(r.pos); err != nil {
			p.mu.Unlock()
			return 0, err
		}
		if p.state == stateAborted {
			err := p.err
			p.mu.Unlock()
			return 0, err
		}
		limit, verified, changed := p.readableLocked(), p.verified, p.changed
		if r.pos < limit {
			span := min(want, limit-r.pos)
			err := r.openLocked()
			if err == nil && expose {
				p.exposeLocked(r.pos + span)
			}
			p.mu.Unlock()
			return span, err
		}
		p.mu.Unlock()
		if verified {
			return 0, io.EOF
		}
		select {
		case <-changed:
		case <-r.ctx.Done():
			return 0, fmt.Errorf("read %s at %d: %w", p.cid, r.pos, r.ctx.Err())
		}
	}
}

// send copies span bytes at the reader's position to w from its
// descriptor (positioned there: sendfile reads from the file offset), or
// from memory.
func (r *pendingReader) send(w io.Writer, span int64) (int64, error) {
	var k int64
	var err error
	short := io.ErrUnexpectedEOF // the file ended before span
	if r.mem != nil {
		var n int
		n, err = w.Write(r.mem[r.pos : r.pos+span])
		k, short = int64(n), io.ErrShortWrite
	} else {
		if _, err := r.f.Seek(r.pos, io.SeekStart); err != nil {
			return 0, fmt.Errorf("read %s at %d: %w", r.p.cid, r.pos, err)
		}
		k, err = io.Copy(w, &io.LimitedReader{R: r.f, N: span})
	}
	r.p.mu.Lock()
	truncErr := r.truncatedLocked(r.pos + k)
	r.p.mu.Unlock()
	r.pos += k
	switch {
	case truncErr != nil:
		return k, truncErr
	case err != nil:
		return k, err
	case k < span:
		return k, fmt.Errorf("read %s at %d: %w", r.p.cid, r.pos, short)
	}
	return k, nil
}

// openLocked opens the reader's descriptor on first use, under p.mu so the
// path is current (the temp file and the blob are the same inode after the
// rename, so an open descriptor survives it).
func (r *pendingReader) openLocked() error {
	if r.p.inMem {
		r.mem = r.p.mem // valid up to written, and never overwritten below it
		return nil
	}
	if r.f != nil {
		return nil
	}
	f, err := openRead(r.p.path)
	if err != nil {
		return fmt.Errorf("read %s: %w", r.p.cid, err)
	}
	r.f = f
	return nil
}

// readAt reads b at the reader's position from its descriptor.
func (r *pendingReader) readAt(b []byte) (int, error) {
	var n int
	var err error
	if r.mem != nil {
		n = copy(b, r.mem[r.pos:])
	} else {
		n, err = r.f.ReadAt(b, r.pos)
	}
	if n < len(b) && err == nil {
		err = io.ErrUnexpectedEOF
	}
	// A Truncate during the read may have replaced these bytes: never hand
	// them out in that case.
	r.p.mu.Lock()
	truncErr := r.truncatedLocked(r.pos + int64(n))
	if truncErr == nil {
		r.p.exposeLocked(r.pos + int64(n))
	}
	r.p.mu.Unlock()
	if truncErr != nil {
		return 0, truncErr
	}
	r.pos += int64(n)
	if n > 0 {
		return n, nil
	}
	return 0, fmt.Errorf("read %s at %d: %w", r.p.cid, r.pos, err)
}

func (r *pendingReader) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	if r.f != nil {
		return r.f.Close()
	}
	return nil
}
