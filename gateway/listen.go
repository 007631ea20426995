package gateway

import (
	"context"
	"fmt"
	"net"
	"syscall"
)

// A client of the gateway speaks first: its request follows the TCP
// handshake at once. Accepted as soon as the handshake completes, a new
// connection costs the daemon two wake-ups before its handler runs: one
// for the accept, and a second one for the request, which usually arrives
// after the read that follows the accept found nothing. Each is a trip
// through the Go runtime's network poller, and while a download keeps both
// cores busy each trip waited milliseconds (ARCHITECTURE.md, "Where the time
// goes": a client joining a download). Listen's socket has
// TCP_DEFER_ACCEPT, as nginx's `listen ... deferred`: the kernel hands a
// connection over once its first bytes are there, so accepting it and
// reading its request are one wake-up.

// deferAcceptSeconds bounds how long the kernel holds a connection that
// sends nothing: after it (rounded up to its SYN-ACK retransmissions) the
// connection is handed over anyway and the http.Server's ReadHeaderTimeout
// applies as before.
const deferAcceptSeconds = 1

// Listen opens the gateway's TCP listener on addr (host:port), with
// TCP_DEFER_ACCEPT set (see above); serve it with Gateway.Serve.
func Listen(ctx context.Context, addr string) (net.Listener, error) {
	lc := net.ListenConfig{Control: deferAccept}
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	return ln, nil
}

// deferAccept sets TCP_DEFER_ACCEPT on a listening TCP socket.
func deferAccept(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_DEFER_ACCEPT, deferAcceptSeconds)
	})
	if err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("set TCP_DEFER_ACCEPT: %w", serr)
	}
	return nil
}
