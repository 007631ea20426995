package p2p

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"slices"
	"sync"

	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/pnet"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/core/sec"
	"github.com/libp2p/go-libp2p/core/transport"
	"github.com/libp2p/go-libp2p/p2p/host/autonat"
	"github.com/libp2p/go-libp2p/p2p/host/autorelay"
	bhost "github.com/libp2p/go-libp2p/p2p/host/basic"
	"github.com/libp2p/go-libp2p/p2p/host/eventbus"
	"github.com/libp2p/go-libp2p/p2p/host/observedaddrs"
	"github.com/libp2p/go-libp2p/p2p/host/peerstore/pstoremem"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	yamux "github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	lpconnmgr "github.com/libp2p/go-libp2p/p2p/net/connmgr"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	tptu "github.com/libp2p/go-libp2p/p2p/net/upgrader"
	circuit "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	circuitproto "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/proto"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	"github.com/libp2p/go-libp2p/p2p/protocol/holepunch"
	"github.com/libp2p/go-libp2p/p2p/protocol/identify"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
	noise "github.com/libp2p/go-libp2p/p2p/security/noise"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/quicreuse"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
	quicgo "github.com/quic-go/quic-go"
	"golang.org/x/crypto/hkdf"
)

// The host is assembled here from go-libp2p's parts, not with libp2p.New:
// the root package's defaults and its config package reference every
// transport libp2p has (WebRTC with the pion stack, WebTransport,
// WebSocket) and the fx/dig injector, so using them links ~2 MB of code
// flocon never runs, and the kernel maps most of an executable's pages
// whether they run or not (ARCHITECTURE.md, Memory). What is built is what
// libp2p.New built from the options flocon gave it: the same swarm,
// upgrader, transports (TCP, QUIC without a PSK, the circuit relay client),
// identify and observed addresses, ping, hole punching (DCUtR), AutoNAT
// with its service on a dialer of its own, AutoRelay on static relays, and
// libp2p's default connection manager (160/192) and black-hole detectors.

// hostSpec is what buildHost needs.
type hostSpec struct {
	key       crypto.PrivKey
	listen    []ma.Multiaddr
	psk       pnet.PSK // nil: public swarm, QUIC on
	gate      connmgr.ConnectionGater
	rm        network.ResourceManager
	plainTLS  bool            // libp2p's TLS instead of the batched one (tests)
	relays    []peer.AddrInfo // AutoRelay's static relays (none: no AutoRelay)
	swarmOpts []swarm.Option  // more (tests, benches)
}

// builtHost is the basic host plus the parts its Close does not stop.
type builtHost struct {
	*bhost.BasicHost
	closers []func() error // in order, before the basic host's Close
	once    sync.Once
}

// Close stops everything once; later calls do nothing.
func (h *builtHost) Close() error {
	h.once.Do(func() {
		for _, c := range h.closers {
			_ = c()
		}
		_ = h.BasicHost.Close()
	})
	return nil
}

// buildHost assembles, starts and listens. On error everything built is
// closed, the resource manager included.
func buildHost(sp hostSpec) (_ *builtHost, err error) {
	ps, err := pstoremem.NewPeerstore()
	if err != nil {
		_ = sp.rm.Close()
		return nil, err
	}
	bus := eventbus.NewBus()
	up, err := newSwarm(sp, sp.key, ps, bus, []swarm.Option{
		swarm.WithUDPBlackHoleSuccessCounter(&swarm.BlackHoleSuccessCounter{N: 100, MinSuccesses: 5, Name: "UDP"}),
		swarm.WithIPv6BlackHoleSuccessCounter(&swarm.BlackHoleSuccessCounter{N: 100, MinSuccesses: 5, Name: "IPv6"}),
		swarm.WithDialRanker(lanTCPFirst), // dialorder.go
	})
	if err != nil {
		_ = ps.Close()
		_ = sp.rm.Close()
		return nil, err
	}
	// closeAll stops what is built, in libp2p.New's order: AutoRelay and
	// observed addresses, the swarm, the QUIC connection manager, then the
	// basic host (connection manager, identify, AutoNAT, peerstore, rcmgr).
	h := &builtHost{closers: []func() error{up.sw.Close, up.close}}
	closeBasic := func() error { _ = ps.Close(); return sp.rm.Close() }
	defer func() {
		if err != nil {
			for _, c := range h.closers {
				_ = c()
			}
			_ = closeBasic()
		}
	}()
	obs, err := observedaddrs.NewManager(bus, up.sw)
	if err != nil {
		return nil, err
	}
	cm, err := lpconnmgr.NewConnManager(160, 192) // libp2p's default
	if err != nil {
		return nil, err
	}
	closeBasic = func() error { _ = cm.Close(); _ = ps.Close(); return sp.rm.Close() }
	bh, err := bhost.NewHost(up.sw, &bhost.HostOpts{
		EventBus:             bus,
		ConnManager:          cm,
		AddrsFactory:         dropLoopback,
		EnablePing:           true,
		UserAgent:            "flocon",
		EnableHolePunching:   true,
		ObservedAddrsManager: obs,
	})
	if err != nil {
		return nil, err
	}
	h.BasicHost, closeBasic = bh, bh.Close
	if err := circuit.AddTransport(bh, up.upgrader); err != nil {
		return nil, err
	}
	if err := up.sw.Listen(sp.listen...); err != nil {
		return nil, err
	}
	obs.Start(up.sw)
	h.closers = append([]func() error{obs.Close}, h.closers...)
	if len(sp.relays) > 0 {
		ar, err := autorelay.NewAutoRelay(bh, autorelay.WithStaticRelays(sp.relays))
		if err != nil {
			return nil, err
		}
		ar.Start()
		h.closers = append([]func() error{ar.Close}, h.closers...)
	}
	bh.Start()
	if err := addAutoNAT(sp, bh); err != nil {
		return nil, err
	}
	return h, nil
}

// swarmParts is a swarm with its transports.
type swarmParts struct {
	sw       *swarm.Swarm
	upgrader transport.Upgrader
	close    func() error // the QUIC connection manager (after the swarm)
}

// newSwarm is a swarm for key over ps with TCP, and QUIC unless a PSK is set.
func newSwarm(sp hostSpec, key crypto.PrivKey, ps peerstore.Peerstore, bus event.Bus, opts []swarm.Option) (swarmParts, error) {
	id, err := peer.IDFromPublicKey(key.GetPublic())
	if err != nil {
		return swarmParts{}, err
	}
	if err := ps.AddPrivKey(id, key); err != nil {
		return swarmParts{}, err
	}
	if err := ps.AddPubKey(id, key.GetPublic()); err != nil {
		return swarmParts{}, err
	}
	upg, err := newUpgrader(sp, key)
	if err != nil {
		return swarmParts{}, err
	}
	opts = append(opts, swarm.WithConnectionGater(sp.gate), swarm.WithResourceManager(sp.rm))
	opts = append(opts, sp.swarmOpts...)
	sw, err := swarm.NewSwarm(id, ps, bus, opts...)
	if err != nil {
		return swarmParts{}, err
	}
	parts := swarmParts{sw: sw, upgrader: upg, close: func() error { return nil }}
	t, err := tcp.NewTCPTransport(upg, sp.rm, nil)
	if err == nil {
		err = sw.AddTransport(t)
	}
	if err == nil && sp.psk == nil {
		var cm *quicreuse.ConnManager
		if cm, err = newQUICConnManager(key, sp.rm); err == nil {
			parts.close = cm.Close
			var qt transport.Transport
			if qt, err = quic.NewTransport(key, cm, nil, sp.gate, sp.rm); err == nil {
				err = sw.AddTransport(qt)
			}
		}
	}
	if err != nil {
		_ = sw.Close()
		_ = parts.close()
		return swarmParts{}, err
	}
	return parts, nil
}

// newUpgrader secures with TLS (batched, recordbatch.go) then Noise, and
// multiplexes with yamux (batchedYamux).
func newUpgrader(sp hostSpec, key crypto.PrivKey) (transport.Upgrader, error) {
	muxers := []tptu.StreamMuxer{{ID: yamux.ID, Muxer: batchedYamux()}}
	var t sec.SecureTransport
	var err error
	if sp.plainTLS {
		t, err = libp2ptls.New(libp2ptls.ID, key, muxers)
	} else {
		t, err = newBatchedTLS(libp2ptls.ID, key, muxers)
	}
	if err != nil {
		return nil, err
	}
	n, err := noise.New(noise.ID, key, muxers)
	if err != nil {
		return nil, err
	}
	return tptu.New([]sec.SecureTransport{t, n}, muxers, sp.psk, sp.rm, sp.gate)
}

// newQUICConnManager is libp2p's QUIC connection manager, its keys derived
// from the host key and each inbound connection admitted by rm.
func newQUICConnManager(key crypto.PrivKey, rm network.ResourceManager) (*quicreuse.ConnManager, error) {
	raw, err := key.Raw()
	if err != nil {
		return nil, err
	}
	var reset quicgo.StatelessResetKey
	var token quicgo.TokenGeneratorKey
	if _, err := io.ReadFull(hkdf.New(sha256.New, raw, nil, []byte("libp2p quic stateless reset key")), reset[:]); err != nil {
		return nil, err
	}
	if _, err := io.ReadFull(hkdf.New(sha256.New, raw, nil, []byte("libp2p quic token generator key")), token[:]); err != nil {
		return nil, err
	}
	return quicreuse.NewConnManager(reset, token,
		quicreuse.ConnContext(func(ctx context.Context, ci *quicgo.ClientInfo) (context.Context, error) {
			addr, err := quicreuse.ToQuicMultiaddr(ci.RemoteAddr, quicgo.Version1)
			if err != nil {
				addr = nil // the resource manager decides
			}
			scope, err := rm.OpenConnection(network.DirInbound, false, addr)
			if err != nil {
				return ctx, err
			}
			ctx = network.WithConnManagementScope(ctx, scope)
			context.AfterFunc(ctx, scope.Done)
			return ctx, nil
		}),
		quicreuse.VerifySourceAddress(func(addr net.Addr) bool { return rm.VerifySourceAddress(addr) }),
	)
}

// addAutoNAT runs AutoNAT on h (probing its public addresses only) with the
// service that answers peers' probes from a dialer swarm of its own.
func addAutoNAT(sp hostSpec, h *bhost.BasicHost) error {
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return err
	}
	ps, err := pstoremem.NewPeerstore()
	if err != nil {
		return err
	}
	dsp := sp
	dsp.swarmOpts = nil
	dialer, err := newSwarm(dsp, key, ps, eventbus.NewBus(), []swarm.Option{
		swarm.WithUDPBlackHoleSuccessCounter(nil),
		swarm.WithIPv6BlackHoleSuccessCounter(nil),
		swarm.WithDialRanker(swarm.NoDelayDialRanker),
	})
	if err != nil {
		_ = ps.Close()
		return err
	}
	go func() {
		<-dialer.sw.Done() // the AutoNAT service closes its dialer
		_ = dialer.close()
		_ = ps.Close()
	}()
	addrs := func() []ma.Multiaddr {
		return slices.DeleteFunc(slices.Clone(dropLoopback(h.AllAddrs())),
			func(a ma.Multiaddr) bool { return !manet.IsPublicAddr(a) })
	}
	an, err := autonat.New(h, autonat.UsingAddresses(addrs), autonat.EnableService(dialer.sw))
	if err != nil {
		_ = dialer.sw.Close()
		return errors.Join(errors.New("autonat"), err)
	}
	h.SetAutoNat(an)
	return nil
}

// setServiceLimits is libp2p.SetDefaultServiceLimits (go-libp2p v0.51.0,
// limits.go): the resource limits of libp2p's own services.
func setServiceLimits(c *rcmgr.ScalingLimitConfig) {
	c.AddServiceLimit(identify.ServiceName,
		rcmgr.BaseLimit{StreamsInbound: 64, StreamsOutbound: 64, Streams: 128, Memory: 4 << 20},
		rcmgr.BaseLimitIncrease{StreamsInbound: 64, StreamsOutbound: 64, Streams: 128, Memory: 4 << 20})
	c.AddServicePeerLimit(identify.ServiceName,
		rcmgr.BaseLimit{StreamsInbound: 16, StreamsOutbound: 16, Streams: 32, Memory: 1 << 20},
		rcmgr.BaseLimitIncrease{})
	for _, id := range [...]protocol.ID{identify.ID, identify.IDPush} {
		c.AddProtocolLimit(id,
			rcmgr.BaseLimit{StreamsInbound: 64, StreamsOutbound: 64, Streams: 128, Memory: 4 << 20},
			rcmgr.BaseLimitIncrease{StreamsInbound: 64, StreamsOutbound: 64, Streams: 128, Memory: 4 << 20})
		c.AddProtocolPeerLimit(id,
			rcmgr.BaseLimit{StreamsInbound: 16, StreamsOutbound: 16, Streams: 32, Memory: 32 * (256<<20 + 16<<10)},
			rcmgr.BaseLimitIncrease{})
	}
	serviceLimit(c, ping.ServiceName, ping.ID,
		rcmgr.BaseLimit{StreamsInbound: 64, StreamsOutbound: 64, Streams: 64, Memory: 4 << 20},
		rcmgr.BaseLimitIncrease{StreamsInbound: 64, StreamsOutbound: 64, Streams: 64, Memory: 4 << 20},
		rcmgr.BaseLimit{StreamsInbound: 2, StreamsOutbound: 3, Streams: 4, Memory: 32 * (256<<20 + 16<<10)})
	serviceLimit(c, autonat.ServiceName, autonat.AutoNATProto,
		rcmgr.BaseLimit{StreamsInbound: 64, StreamsOutbound: 64, Streams: 64, Memory: 4 << 20},
		rcmgr.BaseLimitIncrease{StreamsInbound: 4, StreamsOutbound: 4, Streams: 4, Memory: 2 << 20},
		rcmgr.BaseLimit{StreamsInbound: 2, StreamsOutbound: 2, Streams: 2, Memory: 1 << 20})
	serviceLimit(c, holepunch.ServiceName, holepunch.Protocol,
		rcmgr.BaseLimit{StreamsInbound: 32, StreamsOutbound: 32, Streams: 64, Memory: 4 << 20},
		rcmgr.BaseLimitIncrease{StreamsInbound: 8, StreamsOutbound: 8, Streams: 16, Memory: 4 << 20},
		rcmgr.BaseLimit{StreamsInbound: 2, StreamsOutbound: 2, Streams: 2, Memory: 1 << 20})
	c.AddServiceLimit(relayv2.ServiceName,
		rcmgr.BaseLimit{StreamsInbound: 256, StreamsOutbound: 256, Streams: 256, Memory: 16 << 20},
		rcmgr.BaseLimitIncrease{StreamsInbound: 256, StreamsOutbound: 256, Streams: 256, Memory: 16 << 20})
	c.AddServicePeerLimit(relayv2.ServiceName,
		rcmgr.BaseLimit{StreamsInbound: 64, StreamsOutbound: 64, Streams: 64, Memory: 1 << 20},
		rcmgr.BaseLimitIncrease{})
	for _, id := range [...]protocol.ID{circuitproto.ProtoIDv2Hop, circuitproto.ProtoIDv2Stop} {
		c.AddProtocolLimit(id,
			rcmgr.BaseLimit{StreamsInbound: 640, StreamsOutbound: 640, Streams: 640, Memory: 16 << 20},
			rcmgr.BaseLimitIncrease{StreamsInbound: 640, StreamsOutbound: 640, Streams: 640, Memory: 16 << 20})
		c.AddProtocolPeerLimit(id,
			rcmgr.BaseLimit{StreamsInbound: 128, StreamsOutbound: 128, Streams: 128, Memory: 32 << 20},
			rcmgr.BaseLimitIncrease{})
	}
}

// serviceLimit sets a service's and its protocol's limits, and the same per peer.
func serviceLimit(c *rcmgr.ScalingLimitConfig, svc string, id protocol.ID, l rcmgr.BaseLimit, inc rcmgr.BaseLimitIncrease, perPeer rcmgr.BaseLimit) {
	c.AddServiceLimit(svc, l, inc)
	c.AddProtocolLimit(id, l, inc)
	c.AddServicePeerLimit(svc, perPeer, rcmgr.BaseLimitIncrease{})
	c.AddProtocolPeerLimit(id, perPeer, rcmgr.BaseLimitIncrease{})
}
