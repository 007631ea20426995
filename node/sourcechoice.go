package node

import (
	"slices"
	"time"
)

// Source choice policy: which source a download tries first, and next.
//
// Every place the bytes of a blob can come from is a source (node.go): a
// peer on this LAN, a peer at another site, a peer that is itself still
// downloading the blob (in flight), or a mirror. Each is described by its
// traits (what it is) and its health (what this node measured of it:
// first-byte time, bandwidth, strikes and demotion, health.go).
//
// The order is the peers as the lookup ranked them, then the mirrors in
// their configured order, with every demoted source moved behind the
// healthy ones (a stalled mirror is tried after the others until its
// demotion ends). A download re-decides as it runs: the transfer (hedge.go)
// starts the next source in this order when the current one turns slow.

// sourceKind is what a source is.
type sourceKind int

const (
	sourceMirror sourceKind = iota
	sourceLANPeer
	sourceRemotePeer
)

func (k sourceKind) String() string {
	switch k {
	case sourceLANPeer:
		return "lan"
	case sourceRemotePeer:
		return "remote"
	}
	return "mirror"
}

// sourceTraits is what a source is, as far as choosing among sources goes.
type sourceTraits struct {
	kind     sourceKind
	inFlight bool  // a peer relaying its own download still under way
	have     int64 // bytes an in-flight peer held when it answered
}

// traitsOf returns s's traits: those it declares, else a mirror's for a
// source behind no peer and a LAN peer's for the others.
func traitsOf(s source) sourceTraits {
	if t, ok := s.(interface{ traits() sourceTraits }); ok {
		return t.traits()
	}
	if s.Peer() == "" {
		return sourceTraits{kind: sourceMirror}
	}
	return sourceTraits{kind: sourceLANPeer}
}

// sourceKey names a source in the health book: a peer by its ID (whatever
// blob it serves), a mirror by its base URL.
func sourceKey(s source) string {
	if p := s.Peer(); p != "" {
		return "peer " + p.String()
	}
	return s.String()
}

// order returns srcs with the demoted sources moved, in their order, behind
// the healthy ones.
func (b *healthBook) order(srcs []source, now time.Time) []source {
	out := slices.Clone(srcs)
	slices.SortStableFunc(out, func(x, y source) int {
		dx, dy := b.get(sourceKey(x)).demoted(now), b.get(sourceKey(y)).demoted(now)
		switch {
		case dx == dy:
			return 0
		case dy:
			return -1
		}
		return 1
	})
	return out
}
