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
// Bytes reach w in r's order and only once each, one write per read of r
// (as io.CopyBuffer), each queued as soon as it is read: at most one read
// waits while w takes the previous one. It returns the bytes w took. When w fails, the bytes
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

// readAhead reads r into free buffers, one read each, and queues every
// read's bytes to full at once, in order: bytes read are never held back
// behind the next read (a stalled upstream still delivers what came before
// the stall, for the watchdog, the hedge's offset and the readers). The
// last chunk carries the error that ended r.
func readAhead(r io.Reader, full chan<- chunk, free <-chan []byte, quit <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	for {
		var buf []byte
		select {
		case buf = <-free:
		case <-quit:
			return
		}
		var k int
		var err error
		for k == 0 && err == nil {
			k, err = r.Read(buf)
		}
		select {
		case full <- chunk{b: buf[:k], err: err}:
		case <-quit:
			return
		}
		if err != nil {
			return
		}
	}
}
