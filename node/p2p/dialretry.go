package p2p

import (
	"context"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/flocon/flocon/node/routing"
)

// Simultaneous-dial policy. Over TCP libp2p dials from its listen port, so
// two machines that dial each other at the same moment (both given the
// other as bootstrap, or both learning the other in the same peer-exchange
// round) can get ONE TCP connection by simultaneous open. Both sides then
// run the client side of the security handshake and both fail ("tls:
// received unexpected handshake message"), and libp2p's dial backoff makes
// every redial in the next 5 s fail at once. QUIC has no such problem, but
// a private swarm key turns QUIC off. So a dial that fails its handshake is
// retried at once past the backoff, in an order both machines compute
// alike: the lower peer ID retries first, the higher one waits long enough
// for that retry to land (and then finds the connection up).
const (
	handshakeRetries     = 2                      // retries after the first attempt
	handshakeRetryFirst  = 50 * time.Millisecond  // lower peer ID: within this, jittered
	handshakeRetrySecond = 500 * time.Millisecond // higher peer ID: after this, plus the same jitter
)

// connect dials ai (each attempt bounded by p2pDialTimeout), retrying a
// handshake that failed as a simultaneous open would.
func (s *Host) connect(ctx context.Context, ai peer.AddrInfo) error {
	var err error
	for attempt := 0; ; attempt++ {
		err = s.dialOnce(ctx, ai, attempt > 0)
		if err == nil {
			s.log.Info("peer connected", "peer", ai.ID.String())
			return nil
		}
		if attempt == handshakeRetries || !isHandshakeFailure(err) {
			break
		}
		select {
		case <-time.After(handshakeRetryDelay(s.h.ID(), ai.ID, rand.Float64())):
		case <-ctx.Done():
			return ctx.Err()
		}
		if s.h.Network().Connectedness(ai.ID) == network.Connected {
			return nil // the other side's dial got through
		}
	}
	s.log.Debug("peer connect failed", "peer", ai.ID.String(), "err", err)
	return err
}

// dialOnce is one bounded dial; a retry skips libp2p's dial backoff, which
// the failed handshake has just set. A peer reached only through a relay
// carries no flocon stream (nat.go), and libp2p's Connect would return at
// once on it: a peer of this LAN is dialled directly; a remote one is left
// to its hole punch, or dialled again when that failed (holePunchFailed).
func (s *Host) dialOnce(ctx context.Context, ai peer.AddrInfo, retry bool) error {
	ctx, cancel := context.WithTimeout(ctx, p2pDialTimeout)
	defer cancel()
	switch {
	case retry:
		ctx = network.WithForceDirectDial(ctx, "retry after a failed handshake")
	case s.h.Network().Connectedness(ai.ID) != network.Limited:
	case s.sites.site(ai.ID) == routing.SameLAN:
		ctx = network.WithForceDirectDial(ctx, "relayed connections only coordinate hole punching")
	case !s.holePunchFailed(ai.ID):
		return errHolePunching
	}
	return s.h.Connect(ctx, ai)
}

// handshakeRetryDelay is how long self waits before redialing remote after
// a failed handshake: the lower peer ID goes first, the higher one after
// it, each with jitter (j in [0,1)) so retries of several pairs spread.
func handshakeRetryDelay(self, remote peer.ID, j float64) time.Duration {
	d := time.Duration(j * float64(handshakeRetryFirst))
	if self > remote {
		d += handshakeRetrySecond
	}
	return d
}

// isHandshakeFailure reports a dial that reached the peer but failed to
// secure or multiplex the connection (libp2p's upgrader wraps the cause
// in these words; there is no typed error to match).
func isHandshakeFailure(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "failed to negotiate security protocol") ||
		strings.Contains(msg, "failed to negotiate stream multiplexer")
}
