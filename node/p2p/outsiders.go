package p2p

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// Outsider policy: an inbound connection that never completes the secure
// handshake (no swarm key, the wrong one, or not libp2p at all), or that
// proves an identity not on the allow-list, or a banned one, is refused.
// Each refusal is counted, and logged at info at most once per remote IP
// and reason per outsiderLogEvery, so a scan cannot flood the log.
const (
	handshakeGrace   = 10 * time.Second // an accepted conn not secured by then failed
	outsiderLogEvery = time.Minute
)

// Refused counts the inbound connections refused since start, by reason.
type Refused struct {
	Handshake  int64 `json:"handshake"`  // no secure channel: no or wrong swarm key, or not a flocon peer
	NotAllowed int64 `json:"notAllowed"` // a peer ID not on the allow-list
	Banned     int64 `json:"banned"`
}

// outsiders follows inbound connections from accept to secured.
type outsiders struct {
	log *slog.Logger
	psk bool

	mu      sync.Mutex
	pending map[string]time.Time // remote multiaddr → accepted at
	logged  map[string]time.Time // ip + reason → last log line
	count   Refused
}

func newOutsiders(log *slog.Logger, psk bool) *outsiders {
	return &outsiders{log: log, psk: psk, pending: make(map[string]time.Time), logged: make(map[string]time.Time)}
}

// accepted records an inbound connection before its handshake.
func (o *outsiders) accepted(addrs network.ConnMultiaddrs, now time.Time) {
	o.mu.Lock()
	o.pending[addrs.RemoteMultiaddr().String()] = now
	o.mu.Unlock()
}

// secured records a completed handshake; allowed false counts a refusal.
func (o *outsiders) secured(p peer.ID, addrs network.ConnMultiaddrs, banned, notAllowed bool, now time.Time) {
	o.mu.Lock()
	delete(o.pending, addrs.RemoteMultiaddr().String())
	o.mu.Unlock()
	switch {
	case notAllowed:
		o.refuse(addrs, "peer not on the allow-list", p, now, func(r *Refused) { r.NotAllowed++ })
	case banned:
		o.refuse(addrs, "peer banned", p, now, func(r *Refused) { r.Banned++ })
	}
}

// sweep counts the connections accepted longer than handshakeGrace ago and
// never secured as failed handshakes.
func (o *outsiders) sweep(now time.Time) {
	o.mu.Lock()
	var failed []string
	for a, at := range o.pending {
		if now.Sub(at) >= handshakeGrace {
			failed = append(failed, a)
			delete(o.pending, a)
		}
	}
	o.mu.Unlock()
	reason := "secure handshake failed"
	if o.psk {
		reason = "secure handshake failed (no swarm key or another one)"
	}
	for _, a := range failed {
		o.refuseAddr(a, reason, "", now, func(r *Refused) { r.Handshake++ })
	}
}

func (o *outsiders) refuse(addrs network.ConnMultiaddrs, reason string, p peer.ID, now time.Time, count func(*Refused)) {
	o.refuseAddr(addrs.RemoteMultiaddr().String(), reason, p, now, count)
}

// refuseAddr counts one refusal and logs it unless this IP was logged for
// the same reason within outsiderLogEvery.
func (o *outsiders) refuseAddr(addr, reason string, p peer.ID, now time.Time, count func(*Refused)) {
	ip := addr
	if a, err := multiaddrIP(addr); err == nil {
		ip = a
	}
	o.mu.Lock()
	count(&o.count)
	key := ip + "\x00" + reason
	last, seen := o.logged[key]
	quiet := seen && now.Sub(last) < outsiderLogEvery
	if !quiet {
		o.logged[key] = now
	}
	o.mu.Unlock()
	if !quiet {
		o.log.Info("outsider refused", "remote", addr, "peer", p.String(), "reason", reason)
	}
}

// refused returns the counts so far.
func (o *outsiders) refused() Refused {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.count
}

func multiaddrIP(s string) (string, error) {
	a, err := ma.NewMultiaddr(s)
	if err != nil {
		return "", err
	}
	ip, err := manet.ToIP(a)
	if err != nil {
		return "", err
	}
	return net.IP(ip).String(), nil
}

// Refused returns how many inbound connections were refused since start,
// by reason (for the status page).
func (s *Host) Refused() Refused { return s.bans.outsiders.refused() }

// runOutsiderSweep counts failed handshakes now and then until ctx ends.
func (s *Host) runOutsiderSweep(ctx context.Context) {
	t := time.NewTicker(handshakeGrace / 2)
	defer t.Stop()
	for {
		select {
		case now := <-t.C:
			s.bans.outsiders.sweep(now)
		case <-ctx.Done():
			return
		}
	}
}
