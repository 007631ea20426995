package store

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/ipfs/go-cid"
)

// nsDiscarded is the meta namespace of discarded prefixes: cid → how far
// readers got into bytes of that CID that were never proven.
const nsDiscarded = "discarded"

// exposeLocked notes that a reader handed out bytes up to pos of the
// current, unproven content; p.mu must be held.
func (p *Pending) exposeLocked(pos int64) {
	if !p.verified && pos > p.exposed {
		p.exposed = pos
	}
}

// discardExposed records, once the bytes readers got beyond keep are
// thrown away (a Truncate to keep, or an abort with keep 0), how far they
// got: a client holding that prefix may hold wrong bytes, and a resume must
// never complete it with the proven tail. It is persisted, because a
// client's partial file outlives this process.
func (p *Pending) discardExposed(keep int64) {
	p.mu.Lock()
	exposed := p.exposed
	if p.verified || exposed <= keep {
		p.mu.Unlock()
		return
	}
	p.exposed = keep
	p.mu.Unlock()
	if err := p.s.noteDiscarded(p.cid, exposed); err != nil {
		p.s.log.Warn("recording a discarded prefix failed", "cid", p.cid.String(), "err", err)
	}
}

// noteDiscarded raises the discarded prefix of c to upTo.
func (s *Store) noteDiscarded(c cid.Cid, upTo int64) error {
	s.discardMu.Lock()
	defer s.discardMu.Unlock()
	if upTo <= s.Discarded(c) {
		return nil
	}
	return s.PutMeta(nsDiscarded, c.String(), strconv.AppendInt(nil, upTo, 10))
}

// Discarded is how far readers of c ever got into bytes that were then
// thrown away (a source proven wrong, a download that failed): any prefix of
// c a client holds that ends within (0, Discarded] may contain wrong bytes.
// 0 when no reader ever got unproven bytes that were discarded.
func (s *Store) Discarded(c cid.Cid) int64 {
	b, err := s.Meta(nsDiscarded, c.String())
	if err != nil {
		if !errors.Is(err, ErrNotFound) {
			s.log.Warn("reading a discarded prefix failed", "cid", c.String(), "err", err)
		}
		return 0
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil || n < 0 {
		s.log.Warn("discarded prefix unreadable", "cid", c.String(), "err", fmt.Errorf("%q: %w", b, ErrInvalid))
		return 0
	}
	return n
}
