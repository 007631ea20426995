package node

import (
	"errors"
	"io"
)

// copyAhead copies r to w with two buffers: while w takes one (the store
// writes and hashes it, the verifier reads it), a goroutine reads the next
// bytes from r into the other, so the upstream read is off the path of the
// write and hash (ARCHITECTURE.md, "Where the time goes").
//
// Bytes reach w in r's order and only once each; a chunk is handed over as
// soon as w is free (a slow upstream's bytes are not held back until a
// buffer is full: the watchdog and the hedge count them at w) or when its
// buffer is full. It returns the bytes w took. When w fails, the bytes
// read ahead are dropped, never written: the caller's offset (a hedge's
// lane position, the sink's size) follows what w took. abort must unblock
// a Read of r in progress (cancel its request); copyAhead calls it when w
// fails and returns only once the reading goroutine is gone.
func copyAhead(w io.Writer, r io.Reader, bufA, bufB []byte, abort func()) (int64, error) {
	full := make(chan chunk)     // unbuffered: a send succeeds only when w waits
	free := make(chan []byte, 2) // never blocks: two buffers, two slots
	quit := make(chan struct{})  // closed when w is done
	done := make(chan struct{})  // closed when the reader is gone
	free <- bufA[:cap(bufA)]
	free <- bufB[:cap(bufB)]
	go readAhead(r, full, free, quit, done)

	var written int64
	var err error
	for {
		c := <-full
		if len(c.b) > 0 {
			k, werr := w.Write(c.b)
			written += int64(k)
			if werr == nil && k < len(c.b) {
				werr = io.ErrShortWrite
			}
			if werr != nil {
				err = werr
				abort()
				break
			}
		}
		if c.err != nil {
			if !errors.Is(c.err, io.EOF) {
				err = c.err
			}
			break
		}
		free <- c.b[:cap(c.b)]
	}
	close(quit)
	<-done
	return written, err
}

// chunk is bytes read ahead, with the read error that ended them (the
// last chunk's; io.EOF at the end of the body).
type chunk struct {
	b   []byte
	err error
}

// readAhead fills free buffers from r and hands them to full in order, one
// as soon as the writer waits for it or once it is full, the last one with
// the error that ended r.
func readAhead(r io.Reader, full chan<- chunk, free <-chan []byte, quit <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	var buf []byte
	n := 0
	for {
		if buf == nil {
			select {
			case buf = <-free:
				n = 0
			case <-quit:
				return
			}
		}
		k, err := r.Read(buf[n:])
		n += k
		switch {
		case err != nil:
			select {
			case full <- chunk{b: buf[:n], err: err}:
			case <-quit:
			}
			return
		case n == len(buf):
			select {
			case full <- chunk{b: buf[:n]}:
				buf = nil
			case <-quit:
				return
			}
		case n > 0:
			select {
			case full <- chunk{b: buf[:n]}:
				buf = nil
			default: // w is busy: keep filling this buffer
			}
		}
	}
}
