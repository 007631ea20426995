//go:build linux && (amd64 || arm64)

package exeinit

import (
	"bytes"
	"os"
	"syscall"
)

// init keeps `flocon serve`'s package initialisation from
// mapping most of the executable: imported by cmd/flocon for its init
// alone, it runs before the large packages' inits (Go initialises ready
// packages in import-path order, and this path sorts before libp2p's,
// protobuf's, badger's and prometheus's) and, for `serve` only, marks the
// executable's mappings MADV_RANDOM and drops the executable's pages that
// no process maps from the page cache.
//
// Why: right after a build or an install the whole executable is in the
// page cache, and the kernel maps 64 KiB around each page that faults
// (fault-around), so the inits of 300 packages mapped about 19 MiB of it,
// the daemon's highest RSS of its whole life (VmHWM, scripts/bench.sh row
// 6), before cmd/flocon's first release (exepages.go) could drop them.
// With the pages out of the cache, read-only data and the function table
// come back one page per fault. Nothing the process reads changes: only
// clean file pages leave the cache, and what runs faults them back in.
// The package imports only bytes, os and syscall so that it is ready to
// initialise early (golang.org/x/sys/unix is initialised much later).
func init() {
	if serving(os.Args) {
		_ = Prepare() // a failure costs memory only
	}
}

// serving reports whether args run the daemon. Other subcommands are
// short-lived and gain nothing from reading their code from the disk.
func serving(args []string) bool {
	return len(args) > 1 && args[1] == "serve"
}

// Prepare marks every mapping of the executable MADV_RANDOM (no read-around
// on a fault) and drops its pages that no process maps from the page cache.
func Prepare() error {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return err
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return err
	}
	for _, line := range bytes.Split(maps, []byte("\n")) {
		start, end, ok := exeRange(line, exe)
		if !ok {
			continue
		}
		if _, _, e := syscall.Syscall(syscall.SYS_MADVISE, start, end-start, syscall.MADV_RANDOM); e != 0 {
			return e
		}
	}
	f, err := os.Open(exe)
	if err != nil {
		return err
	}
	defer f.Close()
	return fadviseDontNeed(f.Fd())
}

// exeRange parses one line of /proc/self/maps ("START-END PERMS OFFSET DEV
// INODE PATH") and reports the range when it maps path.
func exeRange(line []byte, path string) (start, end uintptr, ok bool) {
	f := bytes.Fields(line)
	if len(f) < 6 || string(bytes.Join(f[5:], []byte(" "))) != path {
		return 0, 0, false
	}
	lo, hi, found := bytes.Cut(f[0], []byte("-"))
	if !found {
		return 0, 0, false
	}
	s, okS := parseHex(lo)
	e, okE := parseHex(hi)
	if !okS || !okE || s >= e {
		return 0, 0, false
	}
	return s, e, true
}

func parseHex(b []byte) (uintptr, bool) {
	if len(b) == 0 || len(b) > 16 {
		return 0, false
	}
	var v uintptr
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | uintptr(c-'0')
		case c >= 'a' && c <= 'f':
			v = v<<4 | uintptr(c-'a'+10)
		default:
			return 0, false
		}
	}
	return v, true
}

// posixFadvDontNeed is POSIX_FADV_DONTNEED on Linux.
const posixFadvDontNeed = 4

// fadviseDontNeed asks the kernel to drop fd's clean, unmapped pages from
// the page cache (fadvise64 on amd64 and arm64: fd, offset, len, advice).
func fadviseDontNeed(fd uintptr) error {
	if _, _, e := syscall.Syscall6(syscall.SYS_FADVISE64, fd, 0, 0, posixFadvDontNeed, 0, 0); e != 0 {
		return e
	}
	return nil
}
