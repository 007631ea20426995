package store

import (
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// Files are opened without the runtime's poller. os.Open and os.CreateTemp
// offer every new descriptor to the network poller, which a regular file
// refuses: each open costs two fcntl calls to set O_NONBLOCK, a failing
// epoll_ctl and two more fcntl calls to clear it again (strace -c over 200
// small cold packages: 9 fcntl and 2 failed epoll_ctl per package). Blobs
// and temp files are only ever read and written at offsets, fsynced and
// sent with sendfile, never polled, so the store opens them with open(2)
// and wraps the descriptor: os.NewFile costs one fcntl (F_GETFL) and no
// epoll_ctl.

// openFile opens path with flag (O_CLOEXEC added) and perm.
func openFile(path string, flag int, perm fs.FileMode) (*os.File, error) {
	for {
		fd, err := syscall.Open(path, flag|syscall.O_CLOEXEC, uint32(perm.Perm()))
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: path, Err: err}
		}
		return os.NewFile(uintptr(fd), path), nil
	}
}

// openRead opens path read-only.
func openRead(path string) (*os.File, error) { return openFile(path, os.O_RDONLY, 0) }

// createTemp creates a new file prefix<random> in dir, read-write, mode
// 0600, like os.CreateTemp(dir, prefix+"*").
func createTemp(dir, prefix string) (*os.File, error) { return createTempMode(dir, prefix, 0o600) }

// createTempMode is createTemp with the file's mode perm. The descriptor is
// read-write whatever perm says (open(2) checks the mode only for later
// opens), so a file written once can be created read-only.
func createTempMode(dir, prefix string, perm fs.FileMode) (*os.File, error) {
	for range 10000 {
		name := filepath.Join(dir, prefix+strconv.FormatUint(uint64(rand.Uint32()), 10))
		f, err := openFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, perm)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		return f, err
	}
	return nil, &fs.PathError{Op: "createtemp", Path: filepath.Join(dir, prefix+"*"), Err: fs.ErrExist}
}

// renameFile is rename(2). os.Rename first stats the new name to refuse
// replacing a directory with a file, one more syscall per blob for a
// destination the store names itself (blobs/<cid>, never a directory).
func renameFile(oldpath, newpath string) error {
	for {
		err := syscall.Rename(oldpath, newpath)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: err}
		}
		return nil
	}
}
