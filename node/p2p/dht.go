package p2p

import (
	"context"
	"encoding/binary"
	"math/bits"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	kb "github.com/libp2p/go-libp2p-kbucket"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/flocon/flocon/node/routing"
)

// DHT policy. kad-dht keeps the routing table (who is in the swarm, who is
// close to which key); flocon's own record protocol (recordproto.go) puts
// each record on the `replication` peers closest to the blob's key and
// asks them directly. A provide needs no lookup per blob: a round learns
// the swarm with one kad lookup per region of the key space (a few dozen
// for a hundred nodes) and then sends each peer its keys in one stream.
// A lookup asks the closest peers it knows, walks to closer ones they name,
// and stops at the first provider that answers a have query.
const (
	dhtPrefix        = protocol.ID("/flocon") // never the public IPFS DHT's /ipfs
	replication      = 3                      // peers holding each record
	peersPerRegion   = 4                      // a region of the key space holds about this many peers
	maxRegionBits    = 10                     // at most 1024 region lookups per round
	provideWorkers   = 8                      // provide streams at once
	lookupWidth      = replication            // record queries of a lookup at once
	maxLookupAsks    = 4 * lookupWidth        // record queries of a lookup in all
	dhtLookupTimeout = 2 * time.Second        // bound of one lookup
	recordAskTimeout = time.Second            // bound of one record query
	// kadRefresh is how often kad-dht refreshes its routing table (a lookup
	// per bucket). Its default, 10 min, cost a hundred-node swarm more than
	// all its records; a swarm of machines changes slowly, a dead peer is
	// dropped when a query to it fails, and peer exchange refreshes while
	// the table is short.
	kadRefresh = time.Hour
)

// DHT is the router across sites: provider records in a private kad-dht
// swarm (protocol prefix /flocon, seeded only from this node's bootstrap
// peers and the peers they lead to, never the public IPFS DHT). A record
// only says where to ask: every provider found is asked over /flocon/have,
// as on the LAN, so a stale record never becomes a source.
type DHT struct {
	s       *Host
	d       *dht.IpfsDHT
	records *recordStore // records this node holds, for others and itself
	kick    chan struct{}

	mu      sync.Mutex
	pending map[cid.Cid]struct{} // announced since the last flush
	view    []peer.ID            // swarm members learnt by the last round

	rounds atomic.Int64 // re-provide rounds done (benches)
	sent   atomic.Int64 // records sent to peers (benches)
	asks   atomic.Int64 // record queries sent (benches)
}

var _ routing.Router = (*DHT)(nil)

// newDHT starts kad-dht on s's host (server mode unless AutoNAT finds the
// node unreachable).
func newDHT(s *Host) (*DHT, error) {
	d, err := dht.New(s.h,
		dht.Mode(dht.ModeAutoServer),
		dht.ProtocolPrefix(dhtPrefix),
		dht.DisableValues(),
		dht.RoutingTableRefreshPeriod(kadRefresh),
	)
	if err != nil {
		return nil, err
	}
	return &DHT{
		s: s, d: d, records: newRecordStore(time.Now()), kick: make(chan struct{}, 1),
		pending: make(map[cid.Cid]struct{}),
	}, nil
}

// DHT is this host's DHT router, nil when Config.DisableDHT.
func (s *Host) DHT() *DHT { return s.dht }

// run provides on schedule and expires old records until ctx ends.
func (r *DHT) run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(recordsGC)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				r.records.expire(now)
			}
		}
	})
	provideSchedule{
		known:  r.d.RoutingTable().Size,
		round:  r.round,
		flush:  r.flush,
		kick:   r.kick,
		jitter: rand.Float64,
	}.run(ctx)
	wg.Wait()
}

// offers reports whether this node can serve c now.
func (r *DHT) offers(c cid.Cid) bool {
	if _, ok := r.s.shared.get(c); ok {
		return true
	}
	return r.s.st.Has(c) || r.s.st.growing(c) != nil
}

// round re-provides every offered blob: learn the swarm, then send each
// peer the keys it is among the closest to.
func (r *DHT) round(ctx context.Context) {
	r.mu.Lock()
	fresh := make([]cid.Cid, 0, len(r.pending)) // announced since the last flush: logged like a flush's
	for c := range r.pending {
		fresh = append(fresh, c)
	}
	clear(r.pending)
	r.mu.Unlock()
	var keys []recordKey
	for _, c := range r.s.announced.list() {
		if r.offers(c) {
			keys = append(keys, keyOf(c))
		}
	}
	r.learnSwarm(ctx, keys)
	if r.provide(ctx, keys) > 0 {
		r.logPublished(fresh)
	}
	r.rounds.Add(1)
}

// flush provides the blobs announced since the last flush or round.
func (r *DHT) flush(ctx context.Context) {
	r.mu.Lock()
	cids := make([]cid.Cid, 0, len(r.pending))
	keys := make([]recordKey, 0, len(r.pending))
	for c := range r.pending {
		cids = append(cids, c)
		keys = append(keys, keyOf(c))
	}
	clear(r.pending)
	r.mu.Unlock()
	if r.provide(ctx, keys) > 0 {
		r.logPublished(cids)
	}
}

// logPublished logs each newly announced blob once its record went out.
func (r *DHT) logPublished(cids []cid.Cid) {
	for _, c := range cids {
		r.s.log.Debug("provider record published", "cid", c.String())
	}
}

// learnSwarm finds the peers close to keys with one kad lookup per region
// of the key space the keys fall in (sized so a region holds about
// peersPerRegion peers), and keeps them with the routing table's as the
// view provides and lookups start from.
func (r *DHT) learnSwarm(ctx context.Context, keys []recordKey) {
	known := r.d.RoutingTable().Size()
	regionBits := min(bits.Len(uint(known/peersPerRegion)), maxRegionBits)
	regions := make(map[uint32]recordKey)
	for _, k := range keys {
		id := keySpaceID(k)
		region := binary.BigEndian.Uint32(id[:4]) >> (32 - regionBits) // regionBits 0: one region
		if regionBits == 0 {
			region = 0
		}
		if _, ok := regions[region]; !ok {
			regions[region] = k
		}
	}
	members := make(map[peer.ID]struct{})
	for _, p := range r.d.RoutingTable().ListPeers() {
		members[p] = struct{}{}
	}
	var mu sync.Mutex
	sem := make(chan struct{}, provideWorkers)
	var wg sync.WaitGroup
	for _, k := range regions {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			var buf [8]byte
			binary.BigEndian.PutUint64(buf[:], uint64(k))
			lctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			peers, err := r.d.GetClosestPeers(lctx, string(buf[:]))
			if err != nil {
				r.s.log.Debug("dht region lookup failed", "err", err)
			}
			mu.Lock()
			for _, p := range peers {
				members[p] = struct{}{}
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	delete(members, r.s.h.ID())
	view := make([]peer.ID, 0, len(members))
	for p := range members {
		view = append(view, p)
	}
	r.mu.Lock()
	r.view = view
	r.mu.Unlock()
}

// members are the peers provides and lookups start from: the last round's
// view and the routing table, with their key-space positions; a peer of
// this site that lookups no longer ask is left out (lanGone).
func (r *DHT) members() []member {
	r.mu.Lock()
	view := r.view
	r.mu.Unlock()
	seen := make(map[peer.ID]bool, len(view))
	out := make([]member, 0, len(view))
	add := func(p peer.ID) {
		if !seen[p] && p != r.s.h.ID() && !r.s.bans.banned(p) && !r.s.lanGone(p) {
			seen[p] = true
			out = append(out, member{id: p, pos: kb.ConvertPeerID(p)})
		}
	}
	for _, p := range view {
		add(p)
	}
	for _, p := range r.d.RoutingTable().ListPeers() {
		add(p)
	}
	return out
}

// member is a peer and its position in the key space.
type member struct {
	id  peer.ID
	pos kb.ID
}

// closest returns the n members closest to target, closest first.
func closest(members []member, target kb.ID, n int) []member {
	best := make([]member, 0, n+1)
	for _, m := range members {
		i := len(best)
		for i > 0 && closer(m.pos, best[i-1].pos, target) {
			i--
		}
		if i < n {
			best = append(best, member{})
			copy(best[i+1:], best[i:])
			best[i] = m
			best = best[:min(len(best), n)]
		}
	}
	return best
}

// closer reports whether a is closer to target than b (XOR metric).
func closer(a, b, target kb.ID) bool {
	for i := range target {
		da, db := a[i]^target[i], b[i]^target[i]
		if da != db {
			return da < db
		}
	}
	return false
}

// provide records keys on this node and sends each to the replication
// peers closest to it, one stream per peer; it returns how many peers
// took their records.
func (r *DHT) provide(ctx context.Context, keys []recordKey) (took int) {
	if len(keys) == 0 {
		return 0
	}
	now, self := time.Now(), r.s.h.ID()
	members := r.members()
	batches := make(map[peer.ID][]recordKey)
	for _, k := range keys {
		_ = r.records.add(now, k, self, providerTTL) // a lookup that asks this node finds it too
		for _, m := range closest(members, keySpaceID(k), replication) {
			batches[m.id] = append(batches[m.id], k)
		}
	}
	var accepted atomic.Int64
	sem := make(chan struct{}, provideWorkers)
	var wg sync.WaitGroup
	for p, batch := range batches {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := r.sendProvide(ctx, p, batch); err != nil {
				r.s.log.Debug("dht provide failed", "peer", p.String(), "records", len(batch), "err", err)
				return
			}
			r.s.log.Debug("provider records published", "peer", p.String(), "records", len(batch))
			r.sent.Add(int64(len(batch)))
			accepted.Add(1)
		})
	}
	wg.Wait()
	return int(accepted.Load())
}

// FindProviders asks the peers closest to c's key that it knows for
// records, walks to the closer peers they name, and checks each provider
// found with a have query; those that have c are sent. The walk stops at
// the first live provider, when no closer peer is left to ask, or after
// dhtLookupTimeout.
func (r *DHT) FindProviders(ctx context.Context, c cid.Cid) <-chan routing.Provider {
	out := make(chan routing.Provider)
	members := r.members()
	if len(members) == 0 {
		close(out)
		return out
	}
	go func() {
		defer close(out)
		lctx, cancel := context.WithTimeout(ctx, dhtLookupTimeout)
		defer cancel()
		r.walk(ctx, lctx, c, members, out)
	}()
	return out
}

type recordAnswer struct {
	from           member
	provs, closers []peer.AddrInfo
	err            error
}

// walk asks the peers closest to c's key for its records, lookupWidth
// queries at a time: each answer's closer peers join the candidates, and
// as soon as a query ends the closest candidate not asked yet that is
// closer than the replication closest peers answering (or still asked) is
// asked, without waiting for the slowest of a step. Each provider named
// gets a have query at once. The walk ends at the first provider that has
// c, when no query is left and nobody closer is known (once the have
// queries end), after maxLookupAsks queries, or at lctx's end.
func (r *DHT) walk(ctx, lctx context.Context, c cid.Cid, members []member, out chan<- routing.Provider) {
	key := keyOf(c)
	w := newWalkState(keySpaceID(key), members, r.s.h.ID())
	found := make(chan struct{})
	var foundOnce sync.Once
	var checks sync.WaitGroup
	defer checks.Wait()
	providers := map[peer.ID]bool{r.s.h.ID(): true}
	answers := make(chan recordAnswer, maxLookupAsks)
	inflight := 0
	launch := func() {
		for inflight < lookupWidth {
			m, ok := w.next()
			if !ok {
				return
			}
			inflight++
			r.asks.Add(1)
			go func() {
				qctx, cancel := context.WithTimeout(lctx, recordAskTimeout)
				defer cancel()
				provs, closers, err := r.askRecords(qctx, m.id, key)
				answers <- recordAnswer{from: m, provs: provs, closers: closers, err: err}
			}()
		}
	}
	launch()
	for inflight > 0 {
		var a recordAnswer
		select {
		case a = <-answers:
		case <-found:
			return
		case <-lctx.Done():
			return
		}
		inflight--
		if a.err != nil {
			r.s.log.Debug("dht record query failed", "peer", a.from.id.String(), "err", a.err)
		}
		for _, pi := range a.provs {
			if providers[pi.ID] || r.s.bans.banned(pi.ID) || r.s.lanGone(pi.ID) {
				continue
			}
			providers[pi.ID] = true
			checks.Go(func() {
				if r.ask(ctx, lctx, c, pi, out) {
					foundOnce.Do(func() { close(found) })
				}
			})
		}
		r.learnClosers(w, a)
		launch()
	}
	// Nobody closer: the providers found so far are all there is.
	select {
	case <-found:
	case <-waitGroupDone(&checks):
	case <-lctx.Done():
	}
}

// learnClosers adds the closer peers of an answer to the walk's
// candidates and notes how the query ended.
func (r *DHT) learnClosers(w *walkState, a recordAnswer) {
	w.answered(a.from, a.err == nil)
	if a.err != nil {
		return
	}
	ps := r.s.h.Peerstore()
	for _, pi := range a.closers {
		if w.knows(pi.ID) || r.s.bans.banned(pi.ID) || r.s.lanGone(pi.ID) {
			continue
		}
		ps.AddAddrs(pi.ID, r.s.usableAddrs(pi.Addrs), peerstore.TempAddrTTL)
		w.add(member{id: pi.ID, pos: kb.ConvertPeerID(pi.ID)})
	}
}

// walkState is what a lookup knows: the candidates, who was asked, and
// the closest peers that answered or are being asked.
type walkState struct {
	target  kb.ID
	known   map[peer.ID]bool
	unasked []member
	best    []member // the replication closest answering or being asked
	asks    int
}

func newWalkState(target kb.ID, members []member, self peer.ID) *walkState {
	w := &walkState{target: target, known: map[peer.ID]bool{self: true}}
	for _, m := range members {
		w.add(m)
	}
	return w
}

func (w *walkState) knows(p peer.ID) bool { return w.known[p] }

func (w *walkState) add(m member) {
	if !w.known[m.id] {
		w.known[m.id] = true
		w.unasked = append(w.unasked, m)
	}
}

// next picks the closest unasked candidate if it is closer than the
// replication closest answering or being asked, and counts it as asked.
func (w *walkState) next() (member, bool) {
	if w.asks == maxLookupAsks || len(w.unasked) == 0 {
		return member{}, false
	}
	i := 0
	for j := range w.unasked {
		if closer(w.unasked[j].pos, w.unasked[i].pos, w.target) {
			i = j
		}
	}
	m := w.unasked[i]
	if len(w.best) == replication && !closer(m.pos, w.best[len(w.best)-1].pos, w.target) {
		return member{}, false
	}
	w.unasked[i] = w.unasked[len(w.unasked)-1]
	w.unasked = w.unasked[:len(w.unasked)-1]
	w.asks++
	w.best = closest(append(w.best, m), w.target, replication)
	return m, true
}

// answered notes the end of a query to m: one that failed no longer
// counts among the closest, so the next closest candidate is asked.
func (w *walkState) answered(m member, ok bool) {
	if !ok {
		w.best = slices.DeleteFunc(w.best, func(b member) bool { return b.id == m.id })
	}
}

func waitGroupDone(wg *sync.WaitGroup) <-chan struct{} {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	return done
}

// dhtVia names the DHT router in routing.Provider.Via.
const dhtVia = "dht"

// ask checks one provider record with a have query and sends the live
// answer; it reports whether the provider has c.
func (r *DHT) ask(ctx, lctx context.Context, c cid.Cid, ai peer.AddrInfo, out chan<- routing.Provider) bool {
	s := r.s
	if len(ai.Addrs) > 0 {
		s.h.Peerstore().AddAddrs(ai.ID, s.usableAddrs(ai.Addrs), peerstore.TempAddrTTL)
	}
	qctx, cancel := context.WithTimeout(lctx, s.haveTimeout+p2pDialTimeout)
	defer cancel()
	a, err := s.queryHave(qctx, ai.ID, c)
	if err != nil || a.header.code == haveNone || !s.mayFollow(c, a) {
		return false
	}
	select {
	case out <- s.provider(a, dhtVia):
		return true
	case <-ctx.Done():
		return false
	}
}

// Announce offers c and provides it with the next batch (verified or in
// flight).
func (r *DHT) Announce(_ context.Context, c cid.Cid) error {
	r.s.announced.add(c)
	r.mu.Lock()
	r.pending[c] = struct{}{}
	r.mu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default: // a batch is already coming
	}
	return nil
}

// Withdraw stops providing c; the records already out expire within
// providerTTL, and a have query in the meantime answers "no".
func (r *DHT) Withdraw(_ context.Context, c cid.Cid) error {
	r.mu.Lock()
	delete(r.pending, c)
	r.mu.Unlock()
	return nil
}

// Peers lists the peers of the DHT routing table.
func (r *DHT) Peers() []routing.PeerInfo {
	ids := r.d.RoutingTable().ListPeers()
	out := make([]routing.PeerInfo, 0, len(ids))
	for _, p := range ids {
		out = append(out, routing.PeerInfo{
			ID: p, Site: r.s.sites.site(p), Addrs: r.s.h.Peerstore().Addrs(p),
			Latency: r.s.h.Peerstore().LatencyEWMA(p),
		})
	}
	return out
}

// close stops kad-dht.
func (r *DHT) close() error { return r.d.Close() }
