package p2p

import (
	"context"
	"encoding/binary"
	"io"
	"testing"
	"time"

	"github.com/flocon/flocon/node/routing/routingtest"
)

// TestRecordsProtocol: a provide stream stores its keys as provided by the
// peer that sent them (the connection proves who), a get answers them with
// that peer, and an unknown operation is refused.
func TestRecordsProtocol(t *testing.T) {
	t.Parallel()
	a := startNode(t, newMemStore(t))
	asker := startNode(t, newMemStore(t))
	raw := newRawHost(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := raw.Connect(ctx, a.addrInfo()); err != nil {
		t.Fatal(err)
	}
	c := routingtest.CID(t, "a blob the raw host says it has")
	str, err := raw.NewStream(ctx, a.id(), recordsProto)
	if err != nil {
		t.Fatal(err)
	}
	req := []byte{opProvide}
	for _, k := range []recordKey{keyOf(c), 1, 2} {
		req = binary.BigEndian.AppendUint64(req, uint64(k))
	}
	if _, err := str.Write(req); err != nil {
		t.Fatal(err)
	}
	_ = str.CloseWrite()
	ack, err := io.ReadAll(str)
	if err != nil || len(ack) != 1 || ack[0] != 0 {
		t.Fatalf("provide answered %v, %v; want one 0 byte", ack, err)
	}
	if got := a.s.dht.records.get(time.Now(), keyOf(c)); len(got) != 1 || got[0] != raw.ID() {
		t.Fatalf("records of the key: %v, want the raw host %s", got, raw.ID())
	}

	if err := asker.s.h.Connect(ctx, a.addrInfo()); err != nil {
		t.Fatal(err)
	}
	provs, _, err := asker.s.dht.askRecords(ctx, a.id(), keyOf(c))
	if err != nil || len(provs) != 1 || provs[0].ID != raw.ID() {
		t.Fatalf("get answered %v, %v; want the raw host", provs, err)
	}
	provs, _, err = asker.s.dht.askRecords(ctx, a.id(), keyOf(routingtest.CID(t, "nobody has this")))
	if err != nil || len(provs) != 0 {
		t.Fatalf("get of an unknown key answered %v, %v", provs, err)
	}

	bad, err := raw.NewStream(ctx, a.id(), recordsProto)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = bad.Write([]byte{'X', 0, 0, 0, 0, 0, 0, 0, 0})
	_ = bad.CloseWrite()
	if b, err := io.ReadAll(bad); err == nil {
		t.Fatalf("an unknown operation answered %q, want a reset", b)
	}
}
