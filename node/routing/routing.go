package routing

import (
	"context"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// Locality is where a peer is, as far as this node knows.
type Locality uint8

const (
	// Remote is another site, or unknown (bootstrap, DHT, peer exchange).
	Remote Locality = iota
	// SameLAN is a peer found by mDNS on this node's own link.
	SameLAN
)

func (l Locality) String() string {
	if l == SameLAN {
		return "lan"
	}
	return "remote"
}

// Provider is one peer that holds a blob, or is downloading it.
type Provider struct {
	ID   peer.ID
	Site Locality
	// InFlight: the provider is downloading the blob itself and can stream
	// what it has so far.
	InFlight bool
	// Size is the blob's size; 0 when unknown (a DHT record without a have
	// answer, or a complete blob whose size the answer left out).
	Size int64
	// Have is how many bytes the provider holds now (== Size when complete
	// and known).
	Have int64
	// Started is when an in-flight download began, as the provider tells
	// it: the order of the LAN-wide single flight.
	Started time.Time
	// Latency is the round-trip EWMA to the provider; 0 when unknown.
	Latency time.Duration
	// Via names the router that found the provider ("lan": asked as a
	// peer of this site, "dht": a provider record), for the download log.
	Via string
}

// PeerInfo is one peer a router is in touch with.
type PeerInfo struct {
	ID      peer.ID
	Site    Locality
	Addrs   []ma.Multiaddr
	Latency time.Duration // round-trip EWMA; 0 when unknown
}

// Router finds the peers that hold a blob and tells others what this node
// holds. Implementations are safe for concurrent use.
type Router interface {
	// FindProviders streams the providers of c as they answer, until ctx
	// ends or every source of answers is exhausted; then the channel
	// closes. A provider is sent at most once per call. Callers may keep
	// reading past their own soft deadline: a late answer is still
	// delivered until ctx ends. The caller must drain the channel or
	// cancel ctx.
	FindProviders(ctx context.Context, c cid.Cid) <-chan Provider
	// Announce offers c to other peers: a verified blob, or a download in
	// flight (the first Announce of an in-flight blob fixes its start).
	Announce(ctx context.Context, c cid.Cid) error
	// Withdraw stops offering c: the blob is gone or its download failed.
	// Withdrawing a CID that was never announced is not an error.
	Withdraw(ctx context.Context, c cid.Cid) error
	// Peers lists the peers this router is in touch with.
	Peers() []PeerInfo
}
