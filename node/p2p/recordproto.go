package p2p

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	pb "github.com/libp2p/go-libp2p-kad-dht/pb"
	kb "github.com/libp2p/go-libp2p-kbucket"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-msgio/pbio"
	ma "github.com/multiformats/go-multiaddr"
)

// The provider-record protocol. kad-dht sends one ADD_PROVIDER message per
// blob per peer; flocon sends each peer one stream of 8-byte keys per
// round instead (20k blobs × 3 replicas: 480 KB), and asks for the
// providers of one key the same way, answered with kad-dht's own message
// (providers and the closer peers of the answering node's routing table).
//
//	provide: 'P' key key … (until the writer closes), answer one byte (0: stored)
//	get:     'G' key, answer a varint-delimited kad-dht Message
const (
	recordsProto     = protocol.ID("/flocon/records/1.0.0")
	opProvide        = 'P'
	opGet            = 'G'
	maxProvideStream = maxRecordsPerPeer // keys in one provide stream
	maxRecordsAnswer = 64 << 10          // bytes of one get answer
	maxAnswerPeers   = 32                // providers, or closer peers, a get answer may name
	maxAnswerAddrs   = 16                // addresses of one peer kept from a get answer
	answerProviders  = dhtBucketSize     // providers a get answer names at most
	// recordsCloser is how many closer peers a get answer names. A lookup
	// asks only the lookupWidth closest peers it has heard of, so an
	// answer needs that many and a few spare for peers that are gone;
	// kad-dht's 20, with their addresses, were most of a lookup's bytes.
	recordsCloser   = 2 * lookupWidth
	provideDeadline = time.Minute
)

var errBadAnswer = errors.New("malformed records answer")

// handleRecords serves one provide or get stream.
func (s *Host) handleRecords(str network.Stream) {
	_ = str.SetDeadline(time.Now().Add(headerWait * time.Second))
	r := bufio.NewReader(str)
	op, err := r.ReadByte()
	if err != nil || s.dht == nil {
		_ = str.Reset()
		return
	}
	switch op {
	case opProvide:
		err = s.dht.serveProvide(str, r)
	case opGet:
		err = s.dht.serveGet(str, r)
	default:
		err = fmt.Errorf("unknown records op %d", op)
	}
	if err != nil {
		_ = str.Reset()
		return
	}
	_ = str.Close()
}

// serveProvide stores the keys of one provide stream as provided by the
// remote peer (the connection proves who it is) and acknowledges them.
func (r *DHT) serveProvide(str network.Stream, in *bufio.Reader) error {
	_ = str.SetDeadline(time.Now().Add(provideDeadline))
	from := str.Conn().RemotePeer()
	now := time.Now()
	var buf [8]byte
	status := byte(0)
	for n := 0; ; n++ {
		if _, err := io.ReadFull(in, buf[:]); err == io.EOF {
			break
		} else if err != nil {
			return err
		}
		if n == maxProvideStream {
			return errors.New("provide stream too long")
		}
		if err := r.records.add(now, recordKey(binary.BigEndian.Uint64(buf[:])), from, providerTTL); err != nil {
			status = 1
		}
	}
	// Keep the provider's addresses as long as its records: lookups hand
	// them out.
	ps := r.s.h.Peerstore()
	ps.AddAddrs(from, ps.Addrs(from), providerTTL)
	_, err := str.Write([]byte{status})
	return err
}

// serveGet answers the providers of one key and the closer peers this
// node knows.
func (r *DHT) serveGet(str network.Stream, in *bufio.Reader) error {
	var buf [8]byte
	if _, err := io.ReadFull(in, buf[:]); err != nil {
		return err
	}
	key := recordKey(binary.BigEndian.Uint64(buf[:]))
	from := str.Conn().RemotePeer()
	ps := r.s.h.Peerstore()
	provs := r.records.get(time.Now(), key)
	if len(provs) > answerProviders { // any of them will do: spread the asks
		rand.Shuffle(len(provs), func(i, j int) { provs[i], provs[j] = provs[j], provs[i] })
		provs = provs[:answerProviders]
	}
	var closer []peer.ID
	for _, p := range r.d.RoutingTable().NearestPeers(keySpaceID(key), recordsCloser+1) {
		if p != from && len(closer) < recordsCloser {
			closer = append(closer, p)
		}
	}
	return writeRecordAnswer(str, key, peerstore.AddrInfos(ps, provs), peerstore.AddrInfos(ps, closer))
}

// sendProvide sends keys to p as one provide stream and waits for the
// acknowledgement.
func (r *DHT) sendProvide(ctx context.Context, p peer.ID, keys []recordKey) error {
	ctx, cancel := context.WithTimeout(ctx, provideDeadline)
	defer cancel()
	str, err := r.s.h.NewStream(ctx, p, recordsProto)
	if err != nil {
		return err
	}
	defer str.Close()
	defer boundTo(ctx, str)()
	w := bufio.NewWriterSize(str, 16<<10)
	_ = w.WriteByte(opProvide)
	var buf [8]byte
	for _, k := range keys {
		binary.BigEndian.PutUint64(buf[:], uint64(k))
		_, _ = w.Write(buf[:])
	}
	if err := w.Flush(); err != nil {
		_ = str.Reset()
		return err
	}
	_ = str.CloseWrite()
	var ack [1]byte
	if _, err := io.ReadFull(str, ack[:]); err != nil {
		_ = str.Reset()
		return err
	}
	if ack[0] != 0 {
		return errRecordsFull
	}
	return nil
}

// askRecords asks p for the providers of key: the providers it holds
// records of, and the closer peers it knows.
func (r *DHT) askRecords(ctx context.Context, p peer.ID, key recordKey) (provs, closer []peer.AddrInfo, err error) {
	if err := r.s.redial(ctx, p); err != nil {
		return nil, nil, err
	}
	str, err := r.s.h.NewStream(ctx, p, recordsProto)
	if err != nil {
		return nil, nil, err
	}
	defer str.Close()
	defer boundTo(ctx, str)()
	var req [9]byte
	req[0] = opGet
	binary.BigEndian.PutUint64(req[1:], uint64(key))
	if _, err := str.Write(req[:]); err != nil {
		_ = str.Reset()
		return nil, nil, err
	}
	_ = str.CloseWrite()
	provs, closer, err = readRecordAnswer(str, key)
	if err != nil {
		_ = str.Reset()
		return nil, nil, err
	}
	return provs, closer, nil
}

// writeRecordAnswer writes a get answer: kad-dht's GET_PROVIDERS message
// with the providers and the closer peers, varint-delimited.
func writeRecordAnswer(w io.Writer, key recordKey, provs, closer []peer.AddrInfo) error {
	msg := pb.NewMessage(pb.Message_GET_PROVIDERS, keyBytes(key), 0)
	msg.ProviderPeers = pb.RawPeerInfosToPBPeers(provs)
	msg.CloserPeers = pb.RawPeerInfosToPBPeers(closer)
	return pbio.NewDelimitedWriter(w).WriteMsg(msg)
}

// readRecordAnswer reads the answer to a get of key. It reads at most
// maxRecordsAnswer bytes; an answer to another key or of another type, more
// than maxAnswerPeers peers of a kind or a peer ID that does not parse is
// errBadAnswer. Addresses that do not parse are dropped, and those of a
// peer past maxAnswerAddrs.
func readRecordAnswer(r io.Reader, key recordKey) (provs, closer []peer.AddrInfo, err error) {
	var msg pb.Message
	if err := pbio.NewDelimitedReader(r, maxRecordsAnswer).ReadMsg(&msg); err != nil {
		return nil, nil, err
	}
	if msg.GetType() != pb.Message_GET_PROVIDERS {
		return nil, nil, fmt.Errorf("%w: message type %v", errBadAnswer, msg.GetType())
	}
	if want := keyBytes(key); !bytes.Equal(msg.GetKey(), want) {
		return nil, nil, fmt.Errorf("%w: answers key %x, asked %x", errBadAnswer, msg.GetKey(), want)
	}
	if provs, err = answerPeers(msg.GetProviderPeers()); err != nil {
		return nil, nil, fmt.Errorf("providers: %w", err)
	}
	if closer, err = answerPeers(msg.GetCloserPeers()); err != nil {
		return nil, nil, fmt.Errorf("closer peers: %w", err)
	}
	return provs, closer, nil
}

func answerPeers(pbps []*pb.Message_Peer) ([]peer.AddrInfo, error) {
	if len(pbps) > maxAnswerPeers {
		return nil, fmt.Errorf("%w: %d peers", errBadAnswer, len(pbps))
	}
	out := make([]peer.AddrInfo, 0, len(pbps))
	for _, pbp := range pbps {
		id, err := peer.IDFromBytes(pbp.GetId())
		if err != nil {
			return nil, fmt.Errorf("%w: peer id: %w", errBadAnswer, err)
		}
		ai := peer.AddrInfo{ID: id}
		for _, b := range pbp.GetAddrs() {
			if len(ai.Addrs) == maxAnswerAddrs {
				break
			}
			if a, err := ma.NewMultiaddrBytes(b); err == nil {
				ai.Addrs = append(ai.Addrs, a)
			}
		}
		out = append(out, ai)
	}
	return out, nil
}

func keyBytes(key recordKey) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), uint64(key))
}

// keySpaceID places a record key in kad-dht's key space (SHA-256 of the
// key, as kad-dht places its own keys), so records go to the peers a kad
// lookup of that point reaches.
func keySpaceID(key recordKey) kb.ID {
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], uint64(key))
	return kb.ConvertKey(string(buf[:]))
}
