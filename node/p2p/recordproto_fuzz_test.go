package p2p

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// FuzzRecordAnswer feeds arbitrary bytes from a peer to the decoder of a
// records get answer: none panics; an answer that decodes names valid peer
// IDs, within maxAnswerPeers of each kind and maxAnswerAddrs addresses a
// peer, read from at most maxRecordsAnswer bytes, and writes back to an
// answer that decodes the same.
func FuzzRecordAnswer(f *testing.F) {
	const key = recordKey(0x0123456789abcdef)
	ids := make([]peer.ID, 3)
	for i := range ids {
		_, pub, err := crypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			f.Fatal(err)
		}
		if ids[i], err = peer.IDFromPublicKey(pub); err != nil {
			f.Fatal(err)
		}
	}
	addr := ma.StringCast("/ip4/192.0.2.1/tcp/19432")
	var valid, empty, tooMany bytes.Buffer
	_ = writeRecordAnswer(&valid, key, []peer.AddrInfo{{ID: ids[0], Addrs: []ma.Multiaddr{addr}}},
		[]peer.AddrInfo{{ID: ids[1], Addrs: []ma.Multiaddr{addr, addr}}, {ID: ids[2]}})
	_ = writeRecordAnswer(&empty, key, nil, nil)
	many := make([]peer.AddrInfo, maxAnswerPeers+1)
	for i := range many {
		many[i] = peer.AddrInfo{ID: ids[i%len(ids)]}
	}
	_ = writeRecordAnswer(&tooMany, key, many, nil)
	f.Add(valid.Bytes())
	f.Add(empty.Bytes())
	f.Add(tooMany.Bytes())
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f}) // a length far past the bound
	f.Add([]byte{0x06, 0x0a, 0x04, 0x12, 0x02, 0x00, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		in := &countingReader{r: bytes.NewReader(b)}
		provs, closer, err := readRecordAnswer(in, key)
		if in.n > maxRecordsAnswer+binaryMaxVarintLen {
			t.Fatalf("read %d bytes of an answer, bound %d", in.n, maxRecordsAnswer)
		}
		if err != nil {
			return
		}
		checkAnswerPeers(t, "providers", provs)
		checkAnswerPeers(t, "closer peers", closer)
		var again bytes.Buffer
		if err := writeRecordAnswer(&again, key, provs, closer); err != nil {
			t.Fatal(err)
		}
		p2, c2, err := readRecordAnswer(&again, key)
		if err != nil || fmt.Sprint(p2, c2) != fmt.Sprint(provs, closer) {
			t.Fatalf("answer %v %v re-read as %v %v, %v", provs, closer, p2, c2, err)
		}
	})
}

const binaryMaxVarintLen = 10

func checkAnswerPeers(t *testing.T, what string, ais []peer.AddrInfo) {
	t.Helper()
	if len(ais) > maxAnswerPeers {
		t.Fatalf("%s: %d accepted, bound %d", what, len(ais), maxAnswerPeers)
	}
	for _, ai := range ais {
		if err := ai.ID.Validate(); err != nil || ai.ID.String() == "" {
			t.Fatalf("%s: accepted peer id %q: %v", what, ai.ID, err)
		}
		if len(ai.Addrs) > maxAnswerAddrs {
			t.Fatalf("%s: %d addresses kept, bound %d", what, len(ai.Addrs), maxAnswerAddrs)
		}
	}
}

type countingReader struct {
	r interface{ Read([]byte) (int, error) }
	n int
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += n
	return n, err
}
