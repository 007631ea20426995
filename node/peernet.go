package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/flocon/flocon/node/p2p"
	"github.com/flocon/flocon/node/routing"
)

// Errors and types of the peer-to-peer side that callers of node see.
var (
	ErrP2PDisabled  = errors.New("peer-to-peer is not running")
	ErrBadPeerID    = p2p.ErrBadPeerID
	ErrPeerNotFound = p2p.ErrPeerNotFound
	ErrNotBanned    = p2p.ErrNotBanned
	ErrSelfBan      = p2p.ErrSelfBan
)

// Ban is one banned peer, as persisted in the store and shown by `flocon bans`.
type Ban = p2p.Ban

// Evidence is why a peer was banned.
type Evidence = p2p.Evidence

// Refused counts inbound connections refused since start, by reason.
type Refused = p2p.Refused

// Refused returns how many outsiders were refused since start: failed
// secure handshakes (no or wrong swarm key), peers not on the allow-list,
// banned peers (ErrP2PDisabled when p2p is not running).
func (n *Node) Refused() (Refused, error) {
	pn := n.side()
	if pn == nil {
		return Refused{}, ErrP2PDisabled
	}
	return pn.host.Refused(), nil
}

// blobTransfer moves the bytes of one blob from one peer.
type blobTransfer interface {
	// FetchBlob writes c's bytes from offset off, as p sends them, to w and
	// returns how many it wrote; nil only when p delivered to the end. An
	// error wrapping store.ErrNotFound means p lacks c. A peer that lies on
	// the wire is banned by the transfer itself.
	FetchBlob(ctx context.Context, p peer.ID, c cid.Cid, off int64, w io.Writer) (int64, error)
	// FetchSig returns the detached signature p says it verified c with;
	// the caller verifies it.
	FetchSig(ctx context.Context, p peer.ID, c cid.Cid) ([]byte, error)
}

// banner bans peers that sent bad data.
type banner interface {
	// Ban enforces a ban on p at once and persists it (an error: until
	// restart only).
	Ban(p peer.ID, reason string, ev Evidence) error
}

// peerNet is the running peer-to-peer side as fetching sees it: who has a
// blob, how to get its bytes, whom to ban; host serves the admin calls.
type peerNet struct {
	router routing.Router
	blobs  blobTransfer
	bans   banner
	host   *p2p.Host
}

// side returns the running peer-to-peer side, or nil.
func (n *Node) side() *peerNet { return n.net.Load() }

// lookupBound is how long a lookup keeps listening for answers: the
// download starts on what came within the soft deadline (HaveTimeout), and
// an answer after it still joins the download (hedge.go, offer).
const lookupBound = 5 * time.Second

// asksLAN reports whether a lookup now asks a peer of this site.
func (n *Node) asksLAN() bool {
	pn := n.side()
	return pn != nil && pn.host != nil && pn.host.AsksLAN()
}

// peerSources lists the peers that have (or are downloading) c that
// answered within the soft deadline, best first, and streams those that
// answer later on the second result until the lookup ends (nil: the lookup
// ended in time). The soft deadline stretches on a loaded LAN
// (sourcechoice.go, softDeadline). A complete copy on this LAN ends the wait at once: no
// source is better, and in a herd some peer's answer is always slow (the
// downloads of 5 machines at once each waited the whole 150 ms), so the
// others follow as late answers. A lookup that runs past its deadline is
// logged with what it would have missed.
func (n *Node) peerSources(ctx context.Context, c cid.Cid) ([]source, <-chan source) {
	pn := n.side()
	if pn == nil {
		return nil, nil
	}
	start := time.Now()
	lctx, cancel := context.WithTimeout(ctx, lookupBound)
	answers := pn.router.FindProviders(lctx, c)
	deadline := n.softDeadline()
	soft := time.NewTimer(deadline)
	defer soft.Stop()
	var found []routing.Provider
	for {
		select {
		case pr, ok := <-answers:
			if !ok {
				cancel()
				return n.peerList(pn, n.rank(found, time.Now())), nil
			}
			found = append(found, pr)
			n.noteAnswer(pr, time.Since(start))
			if pr.Site != routing.SameLAN || pr.InFlight {
				continue
			}
		case <-soft.C:
		}
		late := make(chan source)
		go n.listenLate(lctx, cancel, pn, c, answers, late, start, deadline)
		return n.peerList(pn, n.rank(found, time.Now())), late
	}
}

// listenLate forwards the answers a lookup gets after its sources were
// handed out, then logs what the soft deadline alone would have missed.
func (n *Node) listenLate(ctx context.Context, cancel context.CancelFunc, pn *peerNet, c cid.Cid, answers <-chan routing.Provider, late chan<- source, start time.Time, deadline time.Duration) {
	defer cancel()
	defer close(late)
	var missed []string
	for pr := range answers {
		n.noteAnswer(pr, time.Since(start))
		if after := time.Since(start); after > deadline {
			kind := "complete"
			if pr.InFlight {
				kind = "in flight"
			}
			missed = append(missed, fmt.Sprintf("%s (%s, %s) after %s", pr.ID, pr.Site, kind, after.Round(time.Millisecond)))
		}
		select {
		case late <- n.peerSource(pn, pr):
		case <-ctx.Done():
		}
	}
	took := time.Since(start)
	if took <= deadline {
		return // started early on a complete copy, every answer in time
	}
	// Info when the deadline alone would have missed a peer; a lookup that
	// only waited on silent routers (a DHT walk finding nobody) is debug.
	level := slog.LevelDebug
	if len(missed) > 0 {
		level = slog.LevelInfo
	}
	n.log.Log(ctx, level, "lookup ran past its deadline", "cid", c.String(), "deadline", deadline.Round(time.Millisecond),
		"took", took.Round(time.Millisecond), "late", strings.Join(missed, ", "))
}

func (n *Node) peerList(pn *peerNet, ranked []routing.Provider) []source {
	out := make([]source, len(ranked))
	for i, pr := range ranked {
		out[i] = n.peerSource(pn, pr)
	}
	return out
}

func (n *Node) peerSource(pn *peerNet, pr routing.Provider) source {
	return &peerSource{blobs: pn.blobs, ranks: n.ranks, p: pr.ID, pr: pr}
}

// peerSignature asks the peers that have c, best first (then those that
// answer late), for the detached signature they verified it with (for a
// blob whose db entry has no %PGPSIG% when the mirrors have no .sig). The
// caller verifies it against the bytes; a signature that fails on bytes
// matching c bans the peer it came from.
func (n *Node) peerSignature(ctx context.Context, c cid.Cid) ([]byte, peer.ID, error) {
	pn := n.side()
	if pn == nil {
		return nil, "", ErrP2PDisabled
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	srcs, late := n.peerSources(ctx, c)
	var last error = ErrPeerNotFound
	try := func(src source) ([]byte, bool) {
		sig, err := pn.blobs.FetchSig(ctx, src.Peer(), c)
		if err != nil {
			last = err
			return nil, false
		}
		return sig, true
	}
	for _, src := range srcs {
		if sig, ok := try(src); ok {
			return sig, src.Peer(), nil
		}
	}
	if late == nil { // the lookup ended in time: no late answers (a range over nil never ends)
		return nil, "", fmt.Errorf("signature of %s from peers: %w", c, last)
	}
	for src := range late {
		if sig, ok := try(src); ok {
			return sig, src.Peer(), nil
		}
	}
	return nil, "", fmt.Errorf("signature of %s from peers: %w", c, last)
}

// banPeer bans p at once (persisted, with reason and evidence) and closes
// its connections.
func (n *Node) banPeer(p peer.ID, reason string, ev Evidence) {
	pn := n.side()
	if pn == nil {
		n.log.Warn("ban without p2p host", "peer", p.String(), "reason", reason)
		return
	}
	if err := pn.bans.Ban(p, reason, ev); err != nil && !errors.Is(err, ErrAlreadyBanned) {
		n.log.Error("ban peer", "peer", p.String(), "err", err)
	}
}

// announce tells the routers that c is available (complete, or in flight
// from the first call).
func (n *Node) announce(ctx context.Context, c cid.Cid) {
	if pn := n.side(); pn != nil {
		if err := pn.router.Announce(ctx, c); err != nil {
			n.log.Debug("announce", "cid", c.String(), "err", err)
		}
	}
}

// withdraw tells the routers this node no longer offers c (its download
// failed).
func (n *Node) withdraw(ctx context.Context, c cid.Cid) {
	if pn := n.side(); pn != nil {
		if err := pn.router.Withdraw(ctx, c); err != nil {
			n.log.Debug("withdraw", "cid", c.String(), "err", err)
		}
	}
}

// peerSource fetches a blob from one peer through the blob transfer and
// keeps the peer's transfer record (rank.go).
type peerSource struct {
	blobs blobTransfer
	ranks *rankHistory
	p     peer.ID
	pr    routing.Provider // as the router found it
}

func (ps *peerSource) String() string { return "peer " + ps.p.String() }

// traits: a peer found on this link is a LAN peer, any other a remote one.
func (ps *peerSource) traits() sourceTraits {
	kind := sourceRemotePeer
	if ps.pr.Site == routing.SameLAN {
		kind = sourceLANPeer
	}
	return sourceTraits{kind: kind, inFlight: ps.pr.InFlight, have: ps.pr.Have}
}

func (ps *peerSource) Peer() peer.ID { return ps.p }

// foundBy is the router that found the peer (the download log says it).
func (ps *peerSource) foundBy() string { return ps.pr.Via }

// busyRetry is how long a download waits before asking a busy peer again:
// a busy peer is serving others and will have a slot soon; the hedge starts
// the next source if it stays busy (health.go).
const busyRetry = 100 * time.Millisecond

// Fetch streams c from offset off into w; a failure other than "not found",
// "busy" or the caller giving up counts against the peer. A busy peer is
// asked again until it has a slot or ctx ends.
func (ps *peerSource) Fetch(ctx context.Context, c cid.Cid, off int64, w io.Writer) (int64, error) {
	for {
		n, err := ps.blobs.FetchBlob(ctx, ps.p, c, off, w)
		switch {
		case err == nil:
			ps.ranks.success(ps.p)
		case errors.Is(err, p2p.ErrPeerBusy) && n == 0:
			select {
			case <-time.After(busyRetry):
				continue
			case <-ctx.Done():
			}
		case !errors.Is(err, ErrPeerNotFound) && ctx.Err() == nil:
			ps.ranks.failure(ps.p, time.Now())
		}
		return n, err
	}
}
