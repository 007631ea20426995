package p2p

import (
	"encoding/binary"
	"errors"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Provider records this node holds for others, kept compact: the DHT puts
// about replication × blobs records on every node, so a record costs
// recordBytes (8 bytes of the blob's hash, then a provider number and an
// expiry packed in 4), not the ~200 of kad-dht's datastore-backed provider
// manager. 8 bytes of a SHA-256 tell 20k-blob swarms apart with room to
// spare, and a record only says where to ask: every provider is asked over
// /flocon/have before use.
const (
	maxRecordsPerPeer = 1 << 18 // 3 MiB of records from one provider
	maxRecords        = 1 << 22 // 48 MiB in all
	minRecordMerge    = 4096    // new records wait unsorted up to this many
	recordBytes       = 12      // a key and a recordMeta

	// A record's expiry is counted in recordTick units from the store's
	// epoch, in expiryBits bits (28 days); the epoch moves forward at a
	// merge once half of that range is used.
	recordTick = 10 * time.Minute
	expiryBits = 12
	maxExpiry  = 1<<expiryBits - 1
	rebaseAt   = 1 << (expiryBits - 1)
	// maxProviders is how many providers' records the store holds at once
	// (the rest of a recordMeta numbers them).
	maxProviders = 1 << (32 - expiryBits)
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

// recordMeta is a record's provider (an index into recordStore.peers) in
// the high bits and its expiry (recordTicks from the epoch) in the low
// expiryBits: it sorts by provider, as the records of one key are kept.
type recordMeta uint32

func newMeta(peer uint32, expires uint32) recordMeta {
	return recordMeta(peer<<expiryBits | expires)
}

func (m recordMeta) peer() uint32    { return uint32(m) >> expiryBits }
func (m recordMeta) expires() uint32 { return uint32(m) & maxExpiry }

// recordStore holds provider records until they expire: parallel slices
// of keys and metas sorted by key then provider, searched by key, and the
// newest records unsorted until they are merged. Parallel slices, not a
// slice of structs: a struct of a uint64 and a uint32 is padded to 16 bytes.
type recordStore struct {
	mu         sync.Mutex
	epoch      time.Time
	keys       []recordKey // sorted by key, then provider; one record per (key, provider)
	metas      []recordMeta
	freshKeys  []recordKey // not merged yet
	freshMetas []recordMeta
	peers      []peer.ID
	index      map[peer.ID]uint32
	perPeer    []int // records (sorted and fresh) per provider number
}

func newRecordStore(now time.Time) *recordStore {
	return &recordStore{epoch: now, index: make(map[peer.ID]uint32)}
}

// expiry is t in recordTicks from the epoch, rounded up: a record lives
// at least its TTL, at most a tick more.
func (r *recordStore) expiry(t time.Time) uint32 {
	d := max(t.Sub(r.epoch), 0)
	return uint32((d + recordTick - 1) / recordTick)
}

// stamp is t in recordTicks from the epoch, rounded down: a record whose
// expiry is past stamp(now) is alive.
func (r *recordStore) stamp(t time.Time) uint32 {
	return uint32(max(t.Sub(r.epoch), 0) / recordTick)
}

// add records that p provides key until now+ttl (at least; expiries are
// kept in recordTicks).
func (r *recordStore) add(now time.Time, key recordKey, p peer.ID, ttl time.Duration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	ttl = min(ttl, (rebaseAt-1)*recordTick)
	if r.expiry(now.Add(ttl)) > maxExpiry {
		r.merge(now) // moves the epoch
	}
	if r.full(p) {
		r.merge(now) // duplicates and expired records may make room
		if r.full(p) {
			return errRecordsFull
		}
	}
	n := r.number(p)
	r.freshKeys = append(r.freshKeys, key)
	r.freshMetas = append(r.freshMetas, newMeta(n, r.expiry(now.Add(ttl))))
	r.perPeer[n]++
	if len(r.freshKeys) >= max(minRecordMerge, len(r.keys)/8) {
		r.merge(now)
	}
	return nil
}

// full reports whether a record of p would pass a limit. Callers hold mu.
func (r *recordStore) full(p peer.ID) bool {
	if r.lenLocked() >= maxRecords {
		return true
	}
	if n, ok := r.index[p]; ok {
		return r.perPeer[n] >= maxRecordsPerPeer
	}
	return len(r.peers) >= maxProviders
}

// number is p's provider number, given now if p has none. Callers hold mu.
func (r *recordStore) number(p peer.ID) uint32 {
	if n, ok := r.index[p]; ok {
		return n
	}
	n := uint32(len(r.peers))
	r.peers = append(r.peers, p)
	r.perPeer = append(r.perPeer, 0)
	r.index[p] = n
	return n
}

// get lists the unexpired providers of key.
func (r *recordStore) get(now time.Time, key recordKey) []peer.ID {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.stamp(now)
	var out []peer.ID
	add := func(m recordMeta) {
		if p := r.peers[m.peer()]; m.expires() > t && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	i, _ := slices.BinarySearch(r.keys, key)
	for ; i < len(r.keys) && r.keys[i] == key; i++ {
		add(r.metas[i])
	}
	for i, k := range r.freshKeys {
		if k == key {
			add(r.freshMetas[i])
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
	return r.lenLocked()
}

func (r *recordStore) lenLocked() int { return len(r.keys) + len(r.freshKeys) }

// merge sorts the fresh records into the sorted ones, keeping one record
// (the latest expiry) per (key, provider) and dropping expired ones; it
// moves the epoch forward once half the expiry range is used, and
// renumbers the providers once most numbers are unused. Callers hold mu.
func (r *recordStore) merge(now time.Time) {
	t := r.stamp(now)
	sortRecords(r.freshKeys, r.freshMetas)
	n := len(r.keys) + len(r.freshKeys)
	keys, metas := make([]recordKey, 0, n), make([]recordMeta, 0, n)
	clear(r.perPeer)
	keep := func(k recordKey, m recordMeta) {
		if m.expires() <= t {
			return
		}
		if last := len(keys) - 1; last >= 0 && keys[last] == k && metas[last].peer() == m.peer() {
			metas[last] = newMeta(m.peer(), max(metas[last].expires(), m.expires()))
			return
		}
		keys, metas = append(keys, k), append(metas, m)
		r.perPeer[m.peer()]++
	}
	ak, am, bk, bm := r.keys, r.metas, r.freshKeys, r.freshMetas
	for len(ak) > 0 || len(bk) > 0 {
		if len(bk) == 0 || (len(ak) > 0 && cmpRecord(ak[0], am[0], bk[0], bm[0]) <= 0) {
			keep(ak[0], am[0])
			ak, am = ak[1:], am[1:]
		} else {
			keep(bk[0], bm[0])
			bk, bm = bk[1:], bm[1:]
		}
	}
	r.keys, r.metas = slices.Clip(keys), slices.Clip(metas)
	// A large fresh buffer is let go: it is only needed while records
	// come in, and a round's would stay a sixth of the records' size.
	if cap(r.freshKeys) > minRecordMerge {
		r.freshKeys, r.freshMetas = nil, nil
	} else {
		r.freshKeys, r.freshMetas = r.freshKeys[:0], r.freshMetas[:0]
	}
	if t >= rebaseAt {
		r.rebase(t)
	}
	if live := r.livePeers(); len(r.peers) >= 64 && live < len(r.peers)/2 {
		r.renumber()
	}
}

// rebase moves the epoch t ticks forward; every record kept expires after
// t. Callers hold mu, the fresh records merged.
func (r *recordStore) rebase(t uint32) {
	r.epoch = r.epoch.Add(time.Duration(t) * recordTick)
	for i, m := range r.metas {
		r.metas[i] = newMeta(m.peer(), m.expires()-t)
	}
}

func (r *recordStore) livePeers() int {
	live := 0
	for _, c := range r.perPeer {
		if c > 0 {
			live++
		}
	}
	return live
}

// renumber forgets the providers with no record left and numbers the
// others from 0, in the same order (the records stay sorted). Callers
// hold mu, the fresh records merged.
func (r *recordStore) renumber() {
	renum := make([]uint32, len(r.peers))
	var peers []peer.ID
	var perPeer []int
	clear(r.index)
	for old, c := range r.perPeer {
		if c == 0 {
			continue
		}
		renum[old] = uint32(len(peers))
		r.index[r.peers[old]] = uint32(len(peers))
		peers, perPeer = append(peers, r.peers[old]), append(perPeer, c)
	}
	for i, m := range r.metas {
		r.metas[i] = newMeta(renum[m.peer()], m.expires())
	}
	r.peers, r.perPeer = peers, perPeer
}

// sortRecords sorts parallel key and meta slices by key, then provider.
func sortRecords(keys []recordKey, metas []recordMeta) {
	sort.Sort(recordSlice{keys, metas})
}

type recordSlice struct {
	keys  []recordKey
	metas []recordMeta
}

func (s recordSlice) Len() int { return len(s.keys) }
func (s recordSlice) Less(i, j int) bool {
	return cmpRecord(s.keys[i], s.metas[i], s.keys[j], s.metas[j]) < 0
}
func (s recordSlice) Swap(i, j int) {
	s.keys[i], s.keys[j] = s.keys[j], s.keys[i]
	s.metas[i], s.metas[j] = s.metas[j], s.metas[i]
}

func cmpRecord(ak recordKey, am recordMeta, bk recordKey, bm recordMeta) int {
	switch {
	case ak < bk:
		return -1
	case ak > bk:
		return 1
	}
	return int(am.peer()) - int(bm.peer())
}
