package store

import (
	"context"
	"io"

	"github.com/ipfs/go-cid"
)

// Pending is one in-flight download: a temp file that grows as bytes arrive
// and that any number of readers follow. Readers never see the final byte(s)
// before Commit, so no client holds a complete unverified file; after Abort
// readers get an error and the temp file is removed.
type Pending struct {
	// STUB: the store implementation fills this in.
}

// CID is the content being downloaded.
func (p *Pending) CID() cid.Cid { panic("unimplemented") }

// Size is the expected size, or -1.
func (p *Pending) Size() int64 { panic("unimplemented") }

// Written is how many bytes are in the temp file.
func (p *Pending) Written() int64 { panic("unimplemented") }

// Write appends b (leader only).
func (p *Pending) Write(b []byte) (int, error) { panic("unimplemented") }

// Truncate drops everything after off (leader only: a source restarts there).
func (p *Pending) Truncate(off int64) error { panic("unimplemented") }

// Commit publishes the verified bytes as blob info.CID (fsync, rename, index
// row) and releases readers to the end.
func (p *Pending) Commit(info BlobInfo, sig []byte) error { panic("unimplemented") }

// Abort fails the download with err: readers get err, the temp file goes.
func (p *Pending) Abort(err error) { panic("unimplemented") }

// Done is closed once the download is committed or aborted.
func (p *Pending) Done() <-chan struct{} { panic("unimplemented") }

// Err is nil after Commit, the abort error after Abort.
func (p *Pending) Err() error { panic("unimplemented") }

// NewReader reads from offset off, blocking while bytes are still to come.
// It returns io.EOF only at the end of a committed download and the abort
// error after Abort; ctx ends a blocked read. Peers serve partial blobs
// through it: a reader only ever gets what is already written.
func (p *Pending) NewReader(ctx context.Context, off int64) io.ReadCloser {
	panic("unimplemented")
}
