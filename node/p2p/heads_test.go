package p2p

import (
	"bufio"
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/flocon/flocon/store/storetest"
)

// TestHaveCarriesHead: a complete answer on have/1.1.0 carries the blob's
// first bytes (never all of them) and its size; FetchBlob from 0 writes
// them, then the rest from the stream, byte for byte, and takes the head
// only once.
func TestHaveCarriesHead(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		size int
		head int
	}{{"big", 1<<20 + 7, maxHead}, {"small", 100, 99}, {"one byte", 1, 0}} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			data := storetest.RandomBytes(uint64(tt.size), tt.size)
			stA := newMemStore(t)
			c := stA.addBlob(t, data)
			a := startNode(t, stA)
			b := startNode(t, newMemStore(t), withBootstrap(a))
			waitConnected(t, b.s.h, a.id())
			srcs := b.peerSources(t.Context(), c)
			if len(srcs) != 1 || srcs[0].pr.Size != int64(tt.size) {
				t.Fatalf("sources %v, want A with size %d", srcs, tt.size)
			}
			b.s.heads.mu.Lock()
			head := b.s.heads.m[headKey{a.id(), c}].b
			b.s.heads.mu.Unlock()
			if len(head) != tt.head || !bytes.Equal(head, data[:len(head)]) {
				t.Fatalf("head of %d bytes (matches %v), want the first %d", len(head), bytes.HasPrefix(data, head), tt.head)
			}
			for range 2 { // the second fetch has no head left
				var got bytes.Buffer
				if n, err := srcs[0].Fetch(t.Context(), c, 0, &got); err != nil || n != int64(tt.size) || !bytes.Equal(got.Bytes(), data) {
					t.Fatalf("Fetch = %d, %v (equal %v)", n, err, bytes.Equal(got.Bytes(), data))
				}
			}
		})
	}
}

// TestHaveHeadOnlyOnThisSite: a have query to a peer of another site asks
// for no head (its bytes would cross the WAN for every package, whichever
// source wins); one to a peer of this site gets it.
func TestHaveHeadOnlyOnThisSite(t *testing.T) {
	t.Parallel()
	remote := func(c *Config) { c.SingleSite = false }
	data := storetest.RandomBytes(7, 64<<10)
	stA := newMemStore(t)
	c := stA.addBlob(t, data)
	a := startNode(t, stA, remote)
	b := startNode(t, newMemStore(t), remote, withBootstrap(a))
	waitConnected(t, b.s.h, a.id())
	held := func() []byte {
		b.s.heads.mu.Lock()
		defer b.s.heads.mu.Unlock()
		return b.s.heads.m[headKey{a.id(), c}].b
	}
	if ans, err := b.s.queryHave(t.Context(), a.id(), c); err != nil || ans.header.code != haveComplete {
		t.Fatalf("remote have = %+v, %v; want complete", ans, err)
	}
	if h := held(); len(h) != 0 {
		t.Fatalf("a peer of another site sent a head of %d bytes", len(h))
	}
	b.s.sites.markLAN(a.id()) // as mDNS does
	if ans, err := b.s.queryHave(t.Context(), a.id(), c); err != nil || ans.header.code != haveComplete {
		t.Fatalf("LAN have = %+v, %v; want complete", ans, err)
	}
	if h := held(); len(h) != maxHead || !bytes.Equal(h, data[:maxHead]) {
		t.Fatalf("head from a peer of this site: %d bytes, want the first %d", len(h), maxHead)
	}
}

// TestReadHeadBounds: a head over what was asked, as long as the blob, or
// on an answer that is not "complete" is malformed.
func TestReadHeadBounds(t *testing.T) {
	t.Parallel()
	complete := header{code: haveComplete, size: 10, available: 10}
	for _, tt := range []struct {
		name string
		h    header
		wire []byte
		want int
		head string
		err  error
	}{
		{"fits", complete, appendHead(nil, []byte("123456789")), maxHead, "123456789", nil},
		{"none", header{code: haveNone, size: -1}, appendHead(nil, nil), maxHead, "", nil},
		{"whole blob", complete, appendHead(nil, []byte("1234567890")), maxHead, "", errMalformed},
		{"over the want", header{code: haveComplete, size: 1 << 20}, appendHead(nil, []byte("12345")), 4, "", errMalformed},
		{"not complete", header{code: haveInflight, size: 10, available: 5}, appendHead(nil, []byte("1")), maxHead, "", errMalformed},
		{"size unknown", header{code: haveComplete, size: -1}, appendHead(nil, []byte("1")), maxHead, "", errMalformed},
		{"cut short", complete, []byte{5, 'a'}, maxHead, "", errMalformed},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := readHead(bufio.NewReader(bytes.NewReader(tt.wire)), tt.h, tt.want)
			if (tt.err == nil) != (err == nil) || (tt.err != nil && !errors.Is(err, tt.err)) {
				t.Fatalf("readHead = %q, %v; want %v", got, err, tt.err)
			}
			if err == nil && string(got) != tt.head {
				t.Fatalf("readHead = %q, want %q", got, tt.head)
			}
		})
	}
}

// TestHeadCache: a head is taken once, within headTTL; the oldest goes
// first when full.
func TestHeadCache(t *testing.T) {
	t.Parallel()
	hc := newHeadCache()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a, c := peer.ID("peer a"), cidOf(t, []byte("x"))
	hc.put(a, c, []byte("head"), t0)
	if got := hc.take(a, c, t0.Add(headTTL-time.Millisecond)); string(got) != "head" {
		t.Fatalf("take = %q", got)
	}
	if got := hc.take(a, c, t0); got != nil {
		t.Fatalf("second take = %q", got)
	}
	hc.put(a, c, []byte("head"), t0)
	if got := hc.take(a, c, t0.Add(headTTL)); got != nil {
		t.Fatalf("take after headTTL = %q", got)
	}
	for i := range maxHeads + 1 {
		hc.put(a, cidOf(t, []byte{byte(i)}), []byte("h"), t0.Add(time.Duration(i)*time.Millisecond))
	}
	if len(hc.m) != maxHeads || hc.take(a, cidOf(t, []byte{0}), t0.Add(time.Second)) != nil {
		t.Fatalf("%d heads held, the oldest kept", len(hc.m))
	}
}
