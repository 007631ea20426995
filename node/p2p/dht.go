package p2p

import (
	"context"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p-kad-dht/records"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/flocon/flocon/node/routing"
)

// DHT provider-record policy. Records are short-lived and re-provided on
// schedule, so a blob that goes (or a machine that dies) drops out of the
// swarm within providerTTL: kad-dht cannot delete a record it published.
const (
	dhtPrefix         = protocol.ID("/flocon") // never the public IPFS DHT's /ipfs
	providerTTL       = 2 * time.Hour
	reprovideInterval = time.Hour
	reprovideCheck    = 2 * time.Second
	providerGC        = 10 * time.Minute
	provideWorkers    = 4
	provideQueue      = 4096
	dhtLookupTimeout  = 2 * time.Second // bound of one FindProviders on the DHT
	dhtMaxProviders   = 20              // a lookup stops after this many records
)

// DHT is the router across sites: kad-dht provider records under the
// /flocon protocol prefix (a private DHT, seeded only from this node's
// bootstrap peers and the peers they lead to, never the public IPFS one).
// A record only says where to ask: every provider found is asked over
// /flocon/have, as on the LAN, so a stale record never becomes a source.
type DHT struct {
	s     *Host
	d     *dht.IpfsDHT
	queue chan cid.Cid

	mu       sync.Mutex
	provided map[cid.Cid]time.Time // last provide of each offered CID
	pending  map[cid.Cid]struct{}  // announced while the routing table was empty
}

var _ routing.Router = (*DHT)(nil)

// newDHT starts kad-dht on s's host (server mode unless AutoNAT finds the
// node unreachable).
func newDHT(s *Host) (*DHT, error) {
	d, err := dht.New(s.h,
		dht.Mode(dht.ModeAutoServer),
		dht.ProtocolPrefix(dhtPrefix),
		dht.DisableValues(),
		dht.ProviderManagerOpts(records.ProvideValidity(providerTTL), records.CleanupInterval(providerGC)),
	)
	if err != nil {
		return nil, err
	}
	return &DHT{s: s, d: d, queue: make(chan cid.Cid, provideQueue), provided: make(map[cid.Cid]time.Time), pending: make(map[cid.Cid]struct{})}, nil
}

// DHT is this host's DHT router, nil when Config.DisableDHT.
func (s *Host) DHT() *DHT { return s.dht }

// run provides queued CIDs and re-provides every offered CID on schedule,
// until ctx ends.
func (r *DHT) run(ctx context.Context) {
	var wg sync.WaitGroup
	for range provideWorkers {
		wg.Go(func() { r.provideLoop(ctx) })
	}
	r.reprovideLoop(ctx)
	wg.Wait()
}

func (r *DHT) provideLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case c := <-r.queue:
			r.provide(ctx, c)
		}
	}
}

// provide publishes one record, unless this node no longer offers c or a
// record went out recently.
func (r *DHT) provide(ctx context.Context, c cid.Cid) {
	if !r.offers(c) {
		r.forget(c)
		return
	}
	r.mu.Lock()
	last, ok := r.provided[c]
	r.mu.Unlock()
	if ok && time.Since(last) < reprovideInterval/2 {
		return
	}
	if r.d.RoutingTable().Size() == 0 {
		r.mu.Lock()
		r.pending[c] = struct{}{} // nobody to tell yet
		r.mu.Unlock()
		return
	}
	pctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := r.d.Provide(pctx, c, true); err != nil {
		r.s.log.Debug("dht provide failed", "cid", c.String(), "err", err)
		return
	}
	r.mu.Lock()
	r.provided[c] = time.Now()
	r.mu.Unlock()
	r.s.log.Debug("provider record published", "cid", c.String())
}

// offers reports whether this node can serve c now.
func (r *DHT) offers(c cid.Cid) bool {
	if _, ok := r.s.shared.get(c); ok {
		return true
	}
	return r.s.st.Has(c) || r.s.st.growing(c) != nil
}

func (r *DHT) forget(c cid.Cid) {
	r.mu.Lock()
	delete(r.provided, c)
	delete(r.pending, c)
	r.mu.Unlock()
}

// reprovideLoop checks every reprovideCheck: once the routing table has
// peers, it queues every offered CID for a first round, then again every
// reprovideInterval, and in between the CIDs announced while nobody was
// there to tell.
func (r *DHT) reprovideLoop(ctx context.Context) {
	t := time.NewTicker(reprovideCheck)
	defer t.Stop()
	var lastRound time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if r.d.RoutingTable().Size() == 0 {
			continue
		}
		batch := r.takePending()
		if lastRound.IsZero() || time.Since(lastRound) >= reprovideInterval {
			batch, lastRound = r.s.announced.list(), time.Now()
		}
		for _, c := range batch {
			select {
			case r.queue <- c:
			case <-ctx.Done():
				return
			}
		}
	}
}

func (r *DHT) takePending() []cid.Cid {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]cid.Cid, 0, len(r.pending))
	for c := range r.pending {
		out = append(out, c)
	}
	clear(r.pending)
	return out
}

// dhtVia names the DHT router in routing.Provider.Via.
const dhtVia = "dht"

// FindProviders looks c up in the DHT (bounded by dhtLookupTimeout) and
// asks each provider found whether it still has c; those that do are sent.
func (r *DHT) FindProviders(ctx context.Context, c cid.Cid) <-chan routing.Provider {
	out := make(chan routing.Provider)
	if r.d.RoutingTable().Size() == 0 {
		close(out)
		return out
	}
	go func() {
		defer close(out)
		lctx, cancel := context.WithTimeout(ctx, dhtLookupTimeout)
		defer cancel()
		var wg sync.WaitGroup
		for ai := range r.d.FindProvidersAsync(lctx, c, dhtMaxProviders) {
			if ai.ID == r.s.h.ID() || r.s.bans.banned(ai.ID) {
				continue
			}
			wg.Go(func() { r.ask(ctx, lctx, c, ai, out) })
		}
		wg.Wait()
	}()
	return out
}

// ask checks one provider record with a have query and sends the live
// answer.
func (r *DHT) ask(ctx, lctx context.Context, c cid.Cid, ai peer.AddrInfo, out chan<- routing.Provider) {
	s := r.s
	if len(ai.Addrs) > 0 {
		s.h.Peerstore().AddAddrs(ai.ID, s.usableAddrs(ai.Addrs), peerstore.TempAddrTTL)
	}
	qctx, cancel := context.WithTimeout(lctx, s.haveTimeout+p2pDialTimeout)
	defer cancel()
	a, err := s.queryHave(qctx, ai.ID, c)
	if err != nil || a.header.code == haveNone || !s.mayFollow(c, a) {
		return
	}
	select {
	case out <- s.provider(a, dhtVia):
	case <-ctx.Done():
	}
}

// Announce offers c and queues a provider record for it (verified or in
// flight).
func (r *DHT) Announce(_ context.Context, c cid.Cid) error {
	r.s.announced.add(c)
	select {
	case r.queue <- c:
	default: // full: the next reprovide round covers it
	}
	return nil
}

// Withdraw stops re-providing c; the records already out expire within
// providerTTL, and a have query in the meantime answers "no".
func (r *DHT) Withdraw(_ context.Context, c cid.Cid) error {
	r.forget(c)
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
