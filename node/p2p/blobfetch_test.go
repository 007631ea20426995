package p2p

import (
	"bytes"
	"errors"
	"testing"

	"github.com/flocon/flocon/store/storetest"
)

// TestFetchFromDroppedPeer: a peer of this site whose connection closed
// after it answered is gone: the fetch fails at once with ErrPeerGone
// instead of dialling it again (a dead one held a download for the whole
// 2 s dial in the kill -9 bench). A peer of another site is dialled again,
// as before: it may have been found through a record and its connection
// trimmed.
func TestFetchFromDroppedPeer(t *testing.T) {
	t.Parallel()
	data := storetest.RandomBytes(2, 256<<10)
	cases := []struct {
		name       string
		singleSite bool // every peer is of this site
		wantGone   bool
	}{
		{"peer of this site", true, true},
		{"peer of another site", false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			stA := newMemStore(t)
			c := stA.addBlob(t, data)
			site := func(cfg *Config) { cfg.SingleSite = tc.singleSite }
			a := startNode(t, stA, site)
			b := startNode(t, newMemStore(t), site)
			if err := b.s.h.Connect(t.Context(), a.addrInfo()); err != nil {
				t.Fatal(err)
			}
			var first bytes.Buffer
			if _, err := b.s.FetchBlob(t.Context(), a.id(), c, 0, &first); err != nil {
				t.Fatalf("fetch while connected: %v", err)
			}
			if err := b.s.h.Network().ClosePeer(a.id()); err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			n, err := b.s.FetchBlob(t.Context(), a.id(), c, 0, &got)
			switch {
			case tc.wantGone && (!errors.Is(err, ErrPeerGone) || n != 0):
				t.Fatalf("fetch from a dropped peer of this site: %d bytes, %v; want ErrPeerGone at once", n, err)
			case !tc.wantGone && (err != nil || !bytes.Equal(got.Bytes(), data)):
				t.Fatalf("fetch from a dropped peer of another site: %d bytes, %v; want it dialled again", n, err)
			}
		})
	}
}
