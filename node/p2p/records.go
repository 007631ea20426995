package p2p

import (
	"encoding/binary"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Provider records this node holds for others, kept compact: the DHT puts
// about replication × blobs records on every node, so a record costs 16
// bytes (8 bytes of the blob's hash, a peer number, an expiry), not the
// ~200 of kad-dht's datastore-backed provider manager. 8 bytes of a SHA-256
// tell 20k-blob swarms apart with room to spare, and a record only says
// where to ask: every provider is asked over /flocon/have before use.
const (
	maxRecordsPerPeer = 1 << 18 // 4 MiB of records from one provider
	maxRecords        = 1 << 22 // 64 MiB in all
	minRecordMerge    = 4096    // new records wait unsorted up to this many
)

var errRecordsFull = errors.New("provider records full")

// recordKey is the last 8 bytes of a blob's multihash digest.
type recordKey uint64

func keyOf(c cid.Cid) recordKey {
	h := c.Hash()
	if len(h) < 8 {
		var b [8]byte
		copy(b[8-len(h):], h)
		return recordKey(binary.BigEndian.Uint64(b[:]))
	}
	return recordKey(binary.BigEndian.Uint64(h[len(h)-8:]))
}

type providerRecord struct {
	key     recordKey
	peer    uint32 // index into recordStore.peers
	expires uint32 // seconds since recordStore.epoch
}

// recordStore holds provider records until they expire: a sorted slice
// searched by key, and the newest records unsorted until they are merged.
type recordStore struct {
	mu      sync.Mutex
	epoch   time.Time
	sorted  []providerRecord // by key, then peer; one record per (key, peer)
	fresh   []providerRecord // not merged yet
	peers   []peer.ID
	index   map[peer.ID]uint32
	perPeer []int // records (sorted and fresh) per peer number
}

func newRecordStore(now time.Time) *recordStore {
	return &recordStore{epoch: now, index: make(map[peer.ID]uint32)}
}

func (r *recordStore) stamp(t time.Time) uint32 {
	return uint32(max(t.Sub(r.epoch)/time.Second, 0))
}

// add records that p provides key until now+ttl.
func (r *recordStore) add(now time.Time, key recordKey, p peer.ID, ttl time.Duration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	n, ok := r.index[p]
	if !ok {
		n = uint32(len(r.peers))
		r.peers = append(r.peers, p)
		r.perPeer = append(r.perPeer, 0)
		r.index[p] = n
	}
	if r.perPeer[n] >= maxRecordsPerPeer || len(r.sorted)+len(r.fresh) >= maxRecords {
		r.merge(now) // duplicates and expired records may make room
		if r.perPeer[n] >= maxRecordsPerPeer || len(r.sorted)+len(r.fresh) >= maxRecords {
			return errRecordsFull
		}
	}
	r.fresh = append(r.fresh, providerRecord{key: key, peer: n, expires: r.stamp(now.Add(ttl))})
	r.perPeer[n]++
	if len(r.fresh) >= max(minRecordMerge, len(r.sorted)/8) {
		r.merge(now)
	}
	return nil
}

// get lists the unexpired providers of key.
func (r *recordStore) get(now time.Time, key recordKey) []peer.ID {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.stamp(now)
	var out []peer.ID
	seen := func(p peer.ID) bool { return slices.Contains(out, p) }
	i, _ := slices.BinarySearchFunc(r.sorted, key, func(rec providerRecord, k recordKey) int { return cmpKey(rec.key, k) })
	for ; i < len(r.sorted) && r.sorted[i].key == key; i++ {
		if rec := r.sorted[i]; rec.expires > t && !seen(r.peers[rec.peer]) {
			out = append(out, r.peers[rec.peer])
		}
	}
	for _, rec := range r.fresh {
		if rec.key == key && rec.expires > t && !seen(r.peers[rec.peer]) {
			out = append(out, r.peers[rec.peer])
		}
	}
	return out
}

// expire drops the records past their expiry.
func (r *recordStore) expire(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.merge(now)
}

// len is the number of records held (duplicates not merged yet included).
func (r *recordStore) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.sorted) + len(r.fresh)
}

// merge sorts the fresh records into the sorted ones, keeping one record
// (the latest expiry) per (key, peer) and dropping expired ones. Callers
// hold mu.
func (r *recordStore) merge(now time.Time) {
	t := r.stamp(now)
	slices.SortFunc(r.fresh, cmpRecord)
	out := make([]providerRecord, 0, len(r.sorted)+len(r.fresh))
	clear(r.perPeer)
	keep := func(rec providerRecord) {
		if rec.expires <= t {
			return
		}
		if k := len(out) - 1; k >= 0 && out[k].key == rec.key && out[k].peer == rec.peer {
			out[k].expires = max(out[k].expires, rec.expires)
			return
		}
		out = append(out, rec)
		r.perPeer[rec.peer]++
	}
	a, b := r.sorted, r.fresh
	for len(a) > 0 || len(b) > 0 {
		if len(b) == 0 || (len(a) > 0 && cmpRecord(a[0], b[0]) <= 0) {
			keep(a[0])
			a = a[1:]
		} else {
			keep(b[0])
			b = b[1:]
		}
	}
	r.sorted, r.fresh = slices.Clip(out), r.fresh[:0]
}

func cmpKey(a, b recordKey) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func cmpRecord(a, b providerRecord) int {
	if c := cmpKey(a.key, b.key); c != 0 {
		return c
	}
	return int(a.peer) - int(b.peer)
}
