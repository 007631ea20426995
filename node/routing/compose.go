package routing

import (
	"context"
	"errors"
	"iter"
	"sync"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Composite asks several routers at once and merges their answers; the
// first answer about a peer wins, so routers with live answers (the LAN)
// go first.
type Composite struct{ routers []Router }

var _ Router = (*Composite)(nil)

// Compose merges routers in priority order; nil routers are skipped.
func Compose(routers ...Router) *Composite {
	c := &Composite{}
	for _, r := range routers {
		if r != nil {
			c.routers = append(c.routers, r)
		}
	}
	return c
}

// FindProviders merges the streams of every router, each peer once; the
// channel closes when every router's has. A router whose stream is closed
// at once (it has nobody to ask) gets no goroutine, and when every one is,
// the merged stream is closed at once too: a node without peers looks up
// every cold package.
func (m *Composite) FindProviders(ctx context.Context, c cid.Cid) <-chan Provider {
	out := make(chan Provider)
	var (
		mu      sync.Mutex
		seen    = make(map[peer.ID]bool)
		wg      sync.WaitGroup
		started bool
	)
	for _, r := range m.routers {
		in := r.FindProviders(ctx, c)
		var first []Provider
		select {
		case p, ok := <-in:
			if !ok {
				continue
			}
			first = []Provider{p}
		default:
		}
		started = true
		wg.Go(func() {
			for p := range withFirst(first, in) {
				mu.Lock()
				dup := seen[p.ID]
				seen[p.ID] = true
				mu.Unlock()
				if dup {
					continue
				}
				select {
				case out <- p:
				case <-ctx.Done():
					for range in { // let the router finish
					}
					return
				}
			}
		})
	}
	if !started {
		close(out)
		return out
	}
	go func() {
		wg.Wait()
		close(out)
	}()
	return out
}

// withFirst yields first, then what in sends until it is closed.
func withFirst(first []Provider, in <-chan Provider) iter.Seq[Provider] {
	return func(yield func(Provider) bool) {
		for _, p := range first {
			if !yield(p) {
				return
			}
		}
		for p := range in {
			if !yield(p) {
				return
			}
		}
	}
}

// Announce announces c on every router; the errors are joined.
func (m *Composite) Announce(ctx context.Context, c cid.Cid) error {
	var errs []error
	for _, r := range m.routers {
		errs = append(errs, r.Announce(ctx, c))
	}
	return errors.Join(errs...)
}

// Withdraw withdraws c from every router; the errors are joined.
func (m *Composite) Withdraw(ctx context.Context, c cid.Cid) error {
	var errs []error
	for _, r := range m.routers {
		errs = append(errs, r.Withdraw(ctx, c))
	}
	return errors.Join(errs...)
}

// Peers is the union of every router's peers, each once, as the first
// router that knows it describes it.
func (m *Composite) Peers() []PeerInfo {
	seen := make(map[peer.ID]bool)
	var out []PeerInfo
	for _, r := range m.routers {
		for _, p := range r.Peers() {
			if !seen[p.ID] {
				seen[p.ID] = true
				out = append(out, p)
			}
		}
	}
	return out
}
