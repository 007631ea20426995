package p2p

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"
)

// Peer exchange policy. A node asks its bootstrap peers which peers they
// are connected to and connects to those it is not: one bootstrap address
// per machine is enough, even when the other machines are DHT clients
// behind NAT (they are in no DHT routing table). A peer learnt from a
// bootstrap peer that runs the relay service is also dialled through it:
// the relayed connection is limited and only lets DCUtR punch a hole
// (nat.go).
const (
	peersProto        = protocol.ID("/flocon/peers/1.0.0")
	maxExchangePeers  = maxSwarmPeers // peers in one answer
	maxExchangeAddrs  = 8             // addresses of one peer in an answer
	maxExchangeBytes  = 64 << 10
	exchangeTimeout   = 5 * time.Second // one question, one answer
	exchangeDialsOnce = 8               // dials of one round at once
)

// handlePeers answers with the peers this node is connected to (not the
// asker, not banned), each with the addresses it told about itself.
func (s *Host) handlePeers(str network.Stream) {
	defer str.Close()
	_ = str.SetDeadline(time.Now().Add(exchangeTimeout))
	asker := str.Conn().RemotePeer()
	out := make([]peer.AddrInfo, 0)
	for _, p := range s.connectedPeers() {
		if p == asker {
			continue
		}
		addrs := s.usableAddrs(s.h.Peerstore().Addrs(p))
		if len(addrs) > maxExchangeAddrs {
			addrs = addrs[:maxExchangeAddrs]
		}
		out = append(out, peer.AddrInfo{ID: p, Addrs: addrs})
		if len(out) == maxExchangePeers {
			break
		}
	}
	if err := json.NewEncoder(str).Encode(out); err != nil {
		_ = str.Reset()
	}
}

// askPeers asks p for the peers it is connected to.
func (s *Host) askPeers(ctx context.Context, p peer.ID) ([]peer.AddrInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, exchangeTimeout)
	defer cancel()
	str, err := s.h.NewStream(ctx, p, peersProto)
	if err != nil {
		return nil, err
	}
	defer str.Close()
	defer boundTo(ctx, str)()
	_ = str.CloseWrite()
	var infos []peer.AddrInfo
	if err := json.NewDecoder(io.LimitReader(str, maxExchangeBytes)).Decode(&infos); err != nil {
		_ = str.Reset()
		return nil, fmt.Errorf("peers from %s: %w", p, err)
	}
	if len(infos) > maxExchangePeers {
		infos = infos[:maxExchangePeers]
	}
	for i := range infos {
		if len(infos[i].Addrs) > maxExchangeAddrs {
			infos[i].Addrs = infos[i].Addrs[:maxExchangeAddrs]
		}
	}
	return infos, nil
}

// exchangeWithBootstrap asks every connected bootstrap peer for its peers
// and connects to those this node is not connected to yet (directly, or
// through the bootstrap peer when it is a relay), up to maxSwarmPeers
// connections.
func (s *Host) exchangeWithBootstrap(ctx context.Context) {
	var (
		wg    sync.WaitGroup
		slots = make(chan struct{}, exchangeDialsOnce)
		tried = make(map[peer.ID]bool)
	)
	defer wg.Wait()
	for _, b := range s.boot.list() {
		if s.h.Network().Connectedness(b) != network.Connected {
			continue
		}
		infos, err := s.askPeers(ctx, b)
		if err != nil {
			s.log.Debug("peer exchange failed", "peer", b.String(), "err", err)
			continue
		}
		var circuit ma.Multiaddr
		if s.isRelay(b) {
			circuit = s.circuitAddr(b)
		}
		for _, ai := range infos {
			if len(s.h.Network().Peers()) >= maxSwarmPeers {
				return
			}
			if tried[ai.ID] || ai.ID == s.h.ID() || s.bans.banned(ai.ID) || s.h.Network().Connectedness(ai.ID) == network.Connected {
				continue
			}
			tried[ai.ID] = true
			ai.Addrs = s.usableAddrs(ai.Addrs)
			if circuit != nil {
				ai.Addrs = append(ai.Addrs, circuit)
			}
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return
			}
			wg.Go(func() {
				defer func() { <-slots }()
				_ = s.connect(ctx, ai)
			})
		}
	}
}
