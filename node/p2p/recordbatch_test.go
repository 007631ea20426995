package p2p

import (
	"bytes"
	"errors"
	"io"
	"net"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/ipfs/go-cid"

	"github.com/flocon/flocon/store/storetest"
)

// TestBatchedTLSInterop: a node with batched records and one with libp2p's
// own TLS move blobs both ways, byte for byte (same protocol on the wire).
func TestBatchedTLSInterop(t *testing.T) {
	t.Parallel()
	dataA := storetest.RandomBytes(21, 3<<20+777)
	dataB := storetest.RandomBytes(22, 1<<20+3)
	stA, stB := newMemStore(t), newMemStore(t)
	cA, cB := stA.addBlob(t, dataA), stB.addBlob(t, dataB)
	a := startNode(t, stA)
	b := startNode(t, stB, withBootstrap(a), func(c *Config) { c.plainTLS = true })
	waitConnected(t, b.s.h, a.id())
	for _, tt := range []struct {
		name     string
		from, to *testNode
		c        cid.Cid
		data     []byte
	}{{"batched to plain", a, b, cA, dataA}, {"plain to batched", b, a, cB, dataB}} {
		var got bytes.Buffer
		src := &peerSource{s: tt.to.s, p: tt.from.id()}
		n, err := src.Fetch(t.Context(), tt.c, 0, &got)
		if err != nil || n != int64(len(tt.data)) || !bytes.Equal(got.Bytes(), tt.data) {
			t.Fatalf("%s: %d bytes, %v; want the %d bytes of the blob", tt.name, n, err, len(tt.data))
		}
	}
	for _, c := range a.s.h.Network().ConnsToPeer(b.id()) {
		if c.ConnState().Security != "/tls/1.0.0" {
			t.Errorf("connection secured by %q, want /tls/1.0.0", c.ConnState().Security)
		}
	}
}

// countingConn counts the writes that reach the socket.
type countingConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// TestBatchConnGathers: corked writes reach the socket as one write (or one
// per batchFlushAt), in order; uncorked writes go straight through; a
// failed write fails every later one.
func TestBatchConnGathers(t *testing.T) {
	t.Parallel()
	client, server := tcpPair(t)
	cc := &countingConn{Conn: client}
	bc := newBatchConn(cc)
	want := storetest.RandomBytes(23, 2*batchFlushAt+5000)
	received := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(server, int64(len(want)+3)))
		received <- b
	}()

	bc.cork()
	for rec := range slices.Chunk(want, 16<<10) {
		if n, err := bc.Write(rec); err != nil || n != len(rec) {
			t.Fatalf("corked write: %d, %v", n, err)
		}
	}
	if got := cc.writes.Load(); got != 2 {
		t.Fatalf("%d socket writes before uncork, want 2 (one per %d bytes)", got, batchFlushAt)
	}
	if err := bc.uncork(); err != nil {
		t.Fatal(err)
	}
	if got := cc.writes.Load(); got != 3 {
		t.Fatalf("%d socket writes after uncork, want 3", got)
	}
	if _, err := bc.Write([]byte("end")); err != nil {
		t.Fatal(err)
	}
	if got := cc.writes.Load(); got != 4 {
		t.Fatalf("%d socket writes after an uncorked write, want 4", got)
	}
	if got := <-received; !bytes.Equal(got, append(bytes.Clone(want), "end"...)) {
		t.Fatalf("the reader got %d bytes, not the %d written in order", len(got), len(want)+3)
	}

	client.Close()
	bc.cork()
	_, _ = bc.Write([]byte("lost"))
	if err := bc.uncork(); err == nil {
		t.Fatal("flush on a closed socket succeeded")
	}
	if _, err := bc.Write([]byte("more")); err == nil || !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after a failed flush = %v, want the same failure", err)
	}
}
