package routing

import (
	"context"
	"sort"
	"sync"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Memory is an in-memory swarm for tests: every router it hands out sees
// what the others announce, at once and with no network.
type Memory struct {
	mu        sync.Mutex
	providers map[cid.Cid]map[peer.ID]Provider
	members   map[peer.ID]Locality
}

// NewMemory returns an empty in-memory swarm.
func NewMemory() *Memory {
	return &Memory{providers: make(map[cid.Cid]map[peer.ID]Provider), members: make(map[peer.ID]Locality)}
}

// Router is the view of the swarm of the peer self, at site.
func (m *Memory) Router(self peer.ID, site Locality) *MemoryRouter {
	m.mu.Lock()
	m.members[self] = site
	m.mu.Unlock()
	return &MemoryRouter{m: m, self: self}
}

// MemoryRouter is one peer's Router over a Memory swarm.
type MemoryRouter struct {
	m    *Memory
	self peer.ID
}

var _ Router = (*MemoryRouter)(nil)

// FindProviders sends every other peer that announced c, then closes.
func (r *MemoryRouter) FindProviders(ctx context.Context, c cid.Cid) <-chan Provider {
	r.m.mu.Lock()
	var found []Provider
	for id, p := range r.m.providers[c] {
		if id != r.self {
			found = append(found, p)
		}
	}
	r.m.mu.Unlock()
	sort.Slice(found, func(i, j int) bool { return found[i].ID < found[j].ID })
	out := make(chan Provider)
	go func() {
		defer close(out)
		for _, p := range found {
			select {
			case out <- p:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// Announce records self as a provider of c (complete).
func (r *MemoryRouter) Announce(_ context.Context, c cid.Cid) error {
	r.m.mu.Lock()
	defer r.m.mu.Unlock()
	ps, ok := r.m.providers[c]
	if !ok {
		ps = make(map[peer.ID]Provider)
		r.m.providers[c] = ps
	}
	ps[r.self] = Provider{ID: r.self, Site: r.m.members[r.self]}
	return nil
}

// Withdraw forgets self as a provider of c.
func (r *MemoryRouter) Withdraw(_ context.Context, c cid.Cid) error {
	r.m.mu.Lock()
	defer r.m.mu.Unlock()
	delete(r.m.providers[c], r.self)
	if len(r.m.providers[c]) == 0 {
		delete(r.m.providers, c)
	}
	return nil
}

// Peers lists every other member of the swarm.
func (r *MemoryRouter) Peers() []PeerInfo {
	r.m.mu.Lock()
	defer r.m.mu.Unlock()
	out := make([]PeerInfo, 0, len(r.m.members))
	for id, site := range r.m.members {
		if id != r.self {
			out = append(out, PeerInfo{ID: id, Site: site})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
