package p2p

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"time"

	pb "github.com/libp2p/go-libp2p-kad-dht/pb"
	"github.com/libp2p/go-msgio/pbio"
	ma "github.com/multiformats/go-multiaddr"

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

// TestRecordAnswerRefused: an answer to another key, of another type, with
// more peers than the bound or a peer ID that does not parse is
// errBadAnswer; a peer's addresses past the bound are dropped.
func TestRecordAnswerRefused(t *testing.T) {
	t.Parallel()
	const key = recordKey(42)
	id := newRawHost(t).ID()
	write := func(msg *pb.Message) []byte {
		var b bytes.Buffer
		if err := pbio.NewDelimitedWriter(&b).WriteMsg(msg); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	answer := func(k recordKey, provs []*pb.Message_Peer) *pb.Message {
		msg := pb.NewMessage(pb.Message_GET_PROVIDERS, keyBytes(k), 0)
		msg.ProviderPeers = provs
		return msg
	}
	good := &pb.Message_Peer{Id: []byte(id)}
	tooMany := make([]*pb.Message_Peer, maxAnswerPeers+1)
	for i := range tooMany {
		tooMany[i] = good
	}
	otherType := answer(key, nil)
	otherType.Type = pb.Message_FIND_NODE
	for _, tc := range []struct {
		name string
		msg  *pb.Message
	}{
		{"another key", answer(key+1, []*pb.Message_Peer{good})},
		{"another type", otherType},
		{"too many providers", answer(key, tooMany)},
		{"a peer ID that does not parse", answer(key, []*pb.Message_Peer{{Id: []byte("not a peer id")}})},
	} {
		if _, _, err := readRecordAnswer(bytes.NewReader(write(tc.msg)), key); !errors.Is(err, errBadAnswer) {
			t.Errorf("%s: %v, want %v", tc.name, err, errBadAnswer)
		}
	}
	addr := ma.StringCast("/ip4/192.0.2.1/tcp/19432").Bytes()
	many := &pb.Message_Peer{Id: []byte(id), Addrs: [][]byte{[]byte("garbage")}}
	for range maxAnswerAddrs + 4 {
		many.Addrs = append(many.Addrs, addr)
	}
	provs, _, err := readRecordAnswer(bytes.NewReader(write(answer(key, []*pb.Message_Peer{many}))), key)
	if err != nil || len(provs) != 1 || provs[0].ID != id || len(provs[0].Addrs) != maxAnswerAddrs {
		t.Fatalf("a peer with %d addresses, one garbage: %v, %v; want it with %d", len(many.Addrs), provs, err, maxAnswerAddrs)
	}
}
