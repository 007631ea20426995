package gateway

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// watchedConn is a server's end of a connection that tells when it is
// closed.
type watchedConn struct {
	net.Conn
	once   sync.Once
	closed chan struct{}
}

func (c *watchedConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// dialWatched connects to ln; the channel closes when the server closes
// the connection.
func dialWatched(t *testing.T, ln *pipeListener) (*rawClient, <-chan struct{}) {
	t.Helper()
	client, server := net.Pipe()
	wc := &watchedConn{Conn: server, closed: make(chan struct{})}
	select {
	case ln.conns <- wc:
	case <-t.Context().Done():
		t.Fatal(t.Context().Err())
	}
	t.Cleanup(func() { client.Close() })
	return &rawClient{t: t, conn: client, br: bufio.NewReader(client)}, wc.closed
}

func isClosed(ch <-chan struct{}) bool {
	synctest.Wait()
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// TestKeepAliveDeadlines: on the keep-alive path a client is held to the
// server's deadlines: IdleTimeout between requests, ReadHeaderTimeout for
// a head sent slowly, WriteStall for a response it does not read; and a
// shutdown closes an idle connection at once.
func TestKeepAliveDeadlines(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	stored := newTestPkg(t, "stored", "1.0-1", 5000, nil)
	e.publishStored(t, stored)
	pkg := "/core/os/x86_64/" + stored.filename

	cases := []struct {
		name  string
		then  string        // sent after a plain GET was answered
		after time.Duration // the server closes the connection this long after, not before
	}{
		{"idle", "", ServerIdleTimeout},
		{"slow head", "GET " + pkg + " HTTP/1.1\r\nHost: fl", ServerReadHeaderTimeout},
		{"never reads", plainGET(pkg), DefaultWriteStall},
		{"shutdown", "", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { //nolint:paralleltest // one Serve at a time per Gateway
			synctest.Test(t, func(t *testing.T) {
				ln := newPipeListener() // in-memory connections, on the bubble's fake time
				srv, done := startServe(e, ln)
				c, closed := dialWatched(t, ln)
				before := e.g.fastServed.Load()
				c.send(plainGET(pkg))
				if r := c.read(http.MethodGet); r.status != http.StatusOK || e.g.fastServed.Load() == before {
					t.Fatalf("plain GET: status %d, not from the keep-alive path", r.status)
				}
				if tc.then != "" {
					c.send(tc.then)
				}
				if tc.after > 0 {
					time.Sleep(tc.after - time.Second)
					if isClosed(closed) {
						t.Fatal("closed too early")
					}
					time.Sleep(2 * time.Second)
					if !isClosed(closed) {
						t.Fatalf("still open %v after", tc.after+time.Second)
					}
				}
				if err := srv.Shutdown(t.Context()); err != nil {
					t.Fatal(err)
				}
				if !isClosed(closed) {
					t.Fatal("still open after the shutdown")
				}
				if err := <-done; !errors.Is(err, http.ErrServerClosed) {
					t.Fatalf("Serve: %v", err)
				}
			})
		})
	}
}
