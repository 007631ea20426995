package gateway

import (
	"errors"
	"io"
	"syscall"
)

// blobFile is a stored blob as http.ServeContent's content, without the
// two lseek calls ServeContent makes to learn its size (to the end and
// back, per request): the size comes from the store's row, and until the
// first read or send a Seek only moves a position kept here. The
// descriptor is moved (one lseek) only when that first read or send starts
// elsewhere than at 0, e.g. for a Range; after it, every call goes to the
// file. A file shorter than its row (changed on disk behind the store) is
// cut short under the row's Content-Length: the client sees an error, not
// a complete short body.
//
// It has a SyscallConn and no WriteTo, so net/http's sendfile still sends
// from the descriptor (net's sendFile takes any syscall.Conn).
type blobFile struct {
	f    blobFD
	size int64
	pos  int64 // where the first read or send starts, while lazy
	lazy bool  // nothing read or sent yet: the descriptor is at offset 0
}

// blobFD is an open blob at offset 0 (a *store.Blob, an *os.File).
type blobFD interface {
	io.ReadSeeker
	syscall.Conn
}

func newBlobFile(f blobFD, size int64) *blobFile {
	return &blobFile{f: f, size: size, lazy: true}
}

var errSeekBlob = errors.New("seek blob: invalid position")

func (b *blobFile) Seek(off int64, whence int) (int64, error) {
	if !b.lazy {
		return b.f.Seek(off, whence)
	}
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		off += b.pos
	case io.SeekEnd:
		off += b.size
	default:
		return 0, errSeekBlob
	}
	if off < 0 {
		return 0, errSeekBlob
	}
	b.pos = off
	return off, nil
}

// begin puts the descriptor where the first read or send starts.
func (b *blobFile) begin() error {
	if !b.lazy {
		return nil
	}
	b.lazy = false
	if b.pos == 0 {
		return nil
	}
	_, err := b.f.Seek(b.pos, io.SeekStart)
	return err
}

func (b *blobFile) Read(p []byte) (int, error) {
	if err := b.begin(); err != nil {
		return 0, err
	}
	return b.f.Read(p)
}

// SyscallConn hands the descriptor to net's sendfile, at the position a
// read would start from.
func (b *blobFile) SyscallConn() (syscall.RawConn, error) {
	if err := b.begin(); err != nil {
		return nil, err
	}
	return b.f.SyscallConn()
}
