package verify

import "bytes"

// identityInline is the largest expected size whose .PKGINFO is read after
// the last byte, on the goroutine that asks for the verdict, from a copy of
// the stream the verifier keeps. Larger (or unknown) sizes are read while
// they stream, by a goroutine behind a pipe, so that nothing the size of a
// package is held. Below it the goroutine cost more than it saved: every
// Write waited for the reader to take its bytes (a hand-off to another
// goroutine per chunk, up to 13 per 50 KiB package), for a read that
// decodes the package's first zstd block (most of a small package) only
// once it is complete anyway. Memory: one copy of a small body per
// download held in memory by the store (store.DefaultMemoryBody, the same
// bound).
const identityInline = 1 << 20

// inlineIdentity reports whether a stream of exp's size has its identity
// read at the verdict from a kept copy (see identityInline).
func inlineIdentity(exp Expect) bool {
	return exp.Size >= 0 && exp.Size <= identityInline
}

// keep adds p to the copy of a small stream (the Verifier's Write never
// passes more than Expect.Size bytes in all).
func (c *identityCheck) keep(p []byte) {
	if c.byWriter { // handed over at the verdict (FinishWithKept)
		return
	}
	if c.held == nil {
		c.held = make([]byte, 0, c.size)
	}
	c.held = append(c.held, p...)
}

// readKept reads .PKGINFO from the kept copy, at the verdict.
func (c *identityCheck) readKept() identityResult {
	var res identityResult
	res.info, res.err = ReadPKGINFO(bytes.NewReader(c.held))
	c.held = nil
	return res
}
