package gateway

import (
	"net"
	"testing"
)

// Listen hands a connection over only once its request is there: of a
// client that connected first and sent nothing and one that connected
// after it and sent its request, the second is accepted first (the accept
// queue is otherwise in the order the handshakes completed). A joiner's
// request is then read in the wake-up that accepts it.
func TestListenAcceptsConnectionsWithTheirRequest(t *testing.T) {
	t.Parallel()
	ln, err := Listen(t.Context(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	silent, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	talker, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer talker.Close()
	if _, err := talker.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, want := c.RemoteAddr().String(), talker.LocalAddr().String(); got != want {
		t.Fatalf("first connection accepted is %s (the silent client is %s), want the one that sent its request, %s",
			got, silent.LocalAddr(), want)
	}
}
