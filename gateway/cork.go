package gateway

import (
	"context"
	"net"
	"syscall"
)

// A stored blob's response is a header write followed by sendfile. Sent as
// they come (the gateway's connections have TCP_NODELAY, Go's default),
// the header leaves as a segment of its own and the client wakes up twice
// per response; nginx, with tcp_nopush, sends both in one segment. The
// gateway corks the connection (TCP_CORK) around the header and the body
// of a stored blob, as nginx does, when it can reach the socket.

type connKey struct{}

// ConnContext is the gateway's http.Server.ConnContext: it keeps each
// connection's socket in the requests' context so a stored blob's header
// and body leave together. Without it responses are the same, sent as
// they come.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return ctx
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return ctx
	}
	return context.WithValue(ctx, connKey{}, raw)
}

// corker holds a connection's data back until uncork: one segment for a
// header and a small body.
type corker struct{ raw syscall.RawConn }

func corkerOf(ctx context.Context) corker {
	raw, _ := ctx.Value(connKey{}).(syscall.RawConn)
	return corker{raw: raw}
}

func (c corker) set(on bool) {
	if c.raw == nil {
		return
	}
	v := 0
	if on {
		v = 1
	}
	// An error (not TCP, connection closed) leaves the data sent as it
	// comes, which is correct, only less packed.
	_ = c.raw.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_CORK, v)
	})
}
