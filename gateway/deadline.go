package gateway

import (
	"io"
	"net/http"
	"time"
)

// A response may take as long as the client needs (a 50 MiB package over a
// slow link takes minutes), so the gateway's http.Server has no
// WriteTimeout. Instead every write gets its own deadline, WriteStall from
// when it starts: a client that reads keeps extending it, one that stops
// reading is dropped when a write cannot complete, with its connection and
// the file descriptors behind it.

// Defaults of the gateway's own timeouts (see Config).
const (
	// DefaultWriteStall is how long one write of at most writeChunk bytes
	// may take: the slowest client served is about writeChunk/WriteStall
	// (2 KiB/s), far below any link pacman would keep using (it gives up
	// below 1 B/s for 10 s only because its own minimum is that low).
	DefaultWriteStall = 60 * time.Second
	// writeChunk bounds what one write hands the kernel (sendfile
	// included), so a deadline per write is a deadline on progress.
	writeChunk = 128 << 10
)

// Timeouts for the http.Server in front of the gateway (cmd/flocon sets
// them). There is no WriteTimeout: see WriteStall.
const (
	// ServerReadHeaderTimeout bounds reading a request's headers.
	ServerReadHeaderTimeout = 10 * time.Second
	// ServerReadTimeout bounds reading a whole request. net/http clears
	// the read deadline once the request is read, so it never cuts a long
	// response (TestSlowClientIsNeverDropped holds it to that).
	ServerReadTimeout = 30 * time.Second
	// ServerIdleTimeout bounds a keep-alive connection between requests.
	ServerIdleTimeout = 2 * time.Minute
)

// progressWriter gives every write to the client a fresh deadline.
type progressWriter struct {
	http.ResponseWriter
	rc    *http.ResponseController
	stall time.Duration
	cork  corker
	// flush sends every write at once: a download in flight is read as it
	// arrives, and what is buffered would wait for the next bytes.
	flush bool
}

// progress wraps w so that each write must complete within g's WriteStall.
func (g *Gateway) progress(w http.ResponseWriter) *progressWriter {
	return &progressWriter{ResponseWriter: w, rc: http.NewResponseController(w), stall: g.cfg.WriteStall}
}

func (p *progressWriter) arm() {
	// An error means the writer has no deadlines (a test recorder): then
	// there is nothing to bound.
	_ = p.rc.SetWriteDeadline(time.Now().Add(p.stall))
}

func (p *progressWriter) Write(b []byte) (int, error) {
	var done int
	for len(b) > 0 {
		p.arm()
		n, err := p.ResponseWriter.Write(b[:min(len(b), writeChunk)])
		done += n
		if err == nil && p.flush {
			err = p.rc.Flush()
		}
		if err != nil {
			return done, err
		}
		b = b[n:]
	}
	return done, nil
}

// ReadFrom keeps sendfile (http.ServeContent hands it an *os.File behind
// an io.LimitedReader) while arming a deadline per chunk.
func (p *progressWriter) ReadFrom(src io.Reader) (int64, error) {
	left := int64(-1)
	if lr, ok := src.(*io.LimitedReader); ok {
		src, left = lr.R, lr.N
	}
	if !p.flush {
		// The header goes out alone, first: else net/http's ReadFrom
		// reads the body's first 512 bytes through a buffer to send them
		// with it (one more system call per response), then sendfiles
		// the rest. Corked, the header still leaves with the body.
		p.cork.set(true)
		defer p.cork.set(false)
		p.arm()
		if err := p.rc.Flush(); err != nil {
			return 0, err
		}
	}
	var total int64
	for left != 0 {
		chunk := int64(writeChunk)
		if left > 0 {
			chunk = min(chunk, left)
		}
		p.arm()
		n, err := io.Copy(p.ResponseWriter, &io.LimitedReader{R: src, N: chunk})
		total += n
		if left > 0 {
			left -= n
		}
		if err != nil {
			return total, err
		}
		if n < chunk {
			break // the source ended
		}
	}
	if p.flush {
		// net/http keeps a response's first 512 bytes buffered
		return total, p.rc.Flush()
	}
	return total, nil
}

// finish flushes what is buffered under a deadline, then clears it so the
// next request on this connection starts without one.
func (p *progressWriter) finish() {
	p.arm()
	_ = p.rc.Flush()
	_ = p.rc.SetWriteDeadline(time.Time{})
}

// Unwrap lets http.ResponseController reach the connection.
func (p *progressWriter) Unwrap() http.ResponseWriter { return p.ResponseWriter }
