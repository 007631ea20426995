package gateway

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// pipeListener hands out in-memory connections (net.Pipe), so a server and
// its clients run inside a synctest bubble on fake time.
type pipeListener struct {
	conns     chan net.Conn
	closed    chan struct{}
	closeOnce sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 19433} }

func (l *pipeListener) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// stallServer serves body through the gateway's progress writer on a pipe
// listener; handled receives when and how each response ended.
func stallServer(t *testing.T, stall time.Duration, body []byte) (*pipeListener, chan error) {
	t.Helper()
	g := &Gateway{cfg: Config{WriteStall: stall}}
	handled := make(chan error, 4)
	srv := &http.Server{ReadHeaderTimeout: ServerReadHeaderTimeout, ReadTimeout: ServerReadTimeout,
		IdleTimeout: 10 * time.Minute, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			pw := g.progress(w)
			cw := &countingWriter{progressWriter: pw}
			w.Header().Set("Content-Type", "application/octet-stream")
			content := &ctxReader{ctx: r.Context(), r: bytes.NewReader(body)}
			http.ServeContent(cw, r, "", time.Time{}, content)
			pw.finish()
			handled <- cw.err
		})}
	ln := newPipeListener()
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln, handled
}

// ctxReader fails once ctx ends, as a download's reader does: a response
// whose request context is cancelled (the server's ReadTimeout firing
// during the response) is cut.
type ctxReader struct {
	ctx context.Context //nolint:containedctx // the request's, for one response
	r   *bytes.Reader
}

func (c *ctxReader) Read(b []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(b)
}

func (c *ctxReader) Seek(off int64, whence int) (int64, error) { return c.r.Seek(off, whence) }

// countingWriter keeps the first write error a response met.
type countingWriter struct {
	*progressWriter
	err error
}

func (c *countingWriter) ReadFrom(src io.Reader) (int64, error) {
	n, err := c.progressWriter.ReadFrom(src)
	if err != nil && c.err == nil {
		c.err = err
	}
	return n, err
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.progressWriter.Write(b)
	if err != nil && c.err == nil {
		c.err = err
	}
	return n, err
}

// TestClientThatNeverReadsIsDropped: a client that sends a request and never
// reads holds its connection (and the gateway's file descriptors) only
// until one write cannot complete within WriteStall.
func TestClientThatNeverReadsIsDropped(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const stall = time.Minute
		ln, handled := stallServer(t, stall, make([]byte, 4<<20))
		conn, err := ln.dial(t.Context(), "", "")
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		start := time.Now()
		if _, err := io.WriteString(conn, "GET /big HTTP/1.1\r\nHost: flocon\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		err = <-handled // fake time runs while everything waits on the client
		if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, net.ErrClosed) {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Fatalf("the response ended with %v, want a write timeout", err)
			}
		}
		if took := time.Since(start); took < stall || took > stall+time.Second {
			t.Fatalf("dropped after %v (fake time), want WriteStall %v", took, stall)
		}
		// The server closed the connection: the client reads what was
		// buffered, then the end.
		if _, err := io.Copy(io.Discard, conn); err != nil && !errors.Is(err, io.ErrClosedPipe) {
			t.Fatalf("connection after the drop: %v", err)
		}
	})
}

// TestSlowClientIsNeverDropped: a client reading 4 KiB/s (a 32 kbit/s link)
// gets a file that takes many times WriteStall and the server's ReadTimeout
// to send, whole; after a long idle pause the same connection serves the
// next request (no deadline left over from the first).
func TestSlowClientIsNeverDropped(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const stall = time.Minute
		body := make([]byte, 1<<20)
		for i := range body {
			body[i] = byte(i * 7)
		}
		ln, handled := stallServer(t, stall, body)
		conn, err := ln.dial(t.Context(), "", "")
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		br := bufio.NewReaderSize(conn, 4<<10)
		for round := range 2 {
			start := time.Now()
			if _, err := io.WriteString(conn, "GET /big HTTP/1.1\r\nHost: flocon\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			var got bytes.Buffer
			buf := make([]byte, 4<<10)
			for {
				n, err := io.ReadFull(resp.Body, buf)
				got.Write(buf[:n])
				if err != nil {
					break
				}
				time.Sleep(time.Second)
			}
			resp.Body.Close()
			if !bytes.Equal(got.Bytes(), body) {
				t.Fatalf("round %d: got %d bytes, want the %d of the file", round, got.Len(), len(body))
			}
			if err := <-handled; err != nil {
				t.Fatalf("round %d: the response met %v", round, err)
			}
			if took := time.Since(start); took < 4*stall {
				t.Fatalf("round %d took %v: too fast to show anything", round, took)
			}
			time.Sleep(5 * time.Minute) // idle, keep-alive
		}
	})
}
