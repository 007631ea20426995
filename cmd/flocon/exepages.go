package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// releaseExecutable drops this process's mappings of the executable's
// read-only pages (code, read-only data, the function table), which the
// kernel mapped while packages initialised and the daemon started: it maps
// 64 KiB around each page that faults (fault-around), so a start-up that
// runs a little code of each of 300 packages leaves most of the 40 MB
// executable resident, though it never runs again (ARCHITECTURE.md,
// Memory). The pages stay in the page cache; what runs later faults back
// in, a page-cache hit. Only private read-only mappings without anonymous
// pages are dropped (a debugger's breakpoints would be anonymous copies),
// so no byte the process sees can change.
//
// Dropping the mappings alone leaves the whole executable in the page
// cache, and fault-around maps it back 64 KiB at a time: serving plus the
// garbage collector's stack scans then fault about 18 MiB of it back in
// (mostly the function table, which every unwound frame reads). So the
// executable's pages that no process maps also leave the page cache
// (evictExecutable), and the read-only data and the function table read
// one page per fault from then on (MADV_RANDOM: no read-around); a fault
// in the code still reads around it (Linux ignores MADV_RANDOM on
// executable mappings), so part of the file comes back to the cache. It
// returns how many bytes were resident in the mappings it dropped.
func releaseExecutable() (int64, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, err
	}
	maps, err := readMappings(exe)
	if err != nil {
		return 0, err
	}
	var dropped int64
	for _, m := range maps {
		// every mapping, the data segment too: a fault in it would read
		// around it (read_ahead_kb, 8 MiB on some disks) into the cache
		if err := madvise(m, syscall.MADV_RANDOM); err != nil {
			return dropped, err
		}
		if !m.dropable() {
			continue
		}
		if err := madvise(m, syscall.MADV_DONTNEED); err != nil {
			return dropped, err
		}
		dropped += m.rss
	}
	return dropped, evictExecutable(exe, maps)
}

// dropable: m is read-only and holds no anonymous page.
func (m mapping) dropable() bool {
	return m.anonymous == 0 && (m.perms == "r-xp" || m.perms == "r--p")
}

func madvise(m mapping, advice uintptr) error {
	if _, _, e := syscall.Syscall(syscall.SYS_MADVISE, m.start, m.end-m.start, advice); e != 0 {
		return fmt.Errorf("madvise %x-%x: %w", m.start, m.end, e)
	}
	return nil
}

// evictExecutable asks the kernel to drop exe's clean pages that no process
// maps from the page cache (POSIX_FADV_DONTNEED), so that fault-around has
// no cached neighbours to map. Other threads fault pages back in meanwhile,
// and a cached folio with one mapped page stays whole (folios written by
// the build or read ahead at exec span up to hundreds of KiB), so the drop
// is repeated once: the pages faulted in between are single pages.
// Another process running the same executable keeps what it maps; a page
// it needs later is read again.
func evictExecutable(exe string, maps []mapping) error {
	f, err := os.Open(exe)
	if err != nil {
		return err
	}
	defer f.Close()
	for range 2 {
		for _, m := range maps {
			if m.dropable() {
				_ = madvise(m, syscall.MADV_DONTNEED) // worked a moment ago
			}
		}
		if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
			return fmt.Errorf("fadvise %s: %w", exe, err)
		}
	}
	return nil
}

// mapping is one line of /proc/self/smaps with its Rss and Anonymous (bytes).
type mapping struct {
	start, end     uintptr
	perms          string
	rss, anonymous int64
}

// readMappings are the mappings of path in /proc/self/smaps.
func readMappings(path string) ([]mapping, error) {
	b, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return nil, err
	}
	var out []mapping
	var cur *mapping
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) >= 6 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":"):
			cur = nil
			if strings.Join(f[5:], " ") != path {
				continue
			}
			lo, hi, ok := strings.Cut(f[0], "-")
			start, err1 := strconv.ParseUint(lo, 16, 64)
			end, err2 := strconv.ParseUint(hi, 16, 64)
			if !ok || err1 != nil || err2 != nil {
				return nil, fmt.Errorf("smaps: bad range %q", f[0])
			}
			out = append(out, mapping{start: uintptr(start), end: uintptr(end), perms: f[1]})
			cur = &out[len(out)-1]
		case cur != nil && len(f) == 3 && f[2] == "kB" && (f[0] == "Rss:" || f[0] == "Anonymous:"):
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("smaps: %q: %w", sc.Text(), err)
			}
			if f[0] == "Rss:" {
				cur.rss = kb << 10
			} else {
				cur.anonymous = kb << 10
			}
		}
	}
	return out, sc.Err()
}

// releaseStartPages releases the executable's pages after a phase of
// start-up (releaseExecutable); a failure costs memory only.
func releaseStartPages(log *slog.Logger, phase string) {
	n, err := releaseExecutable()
	if err != nil {
		log.Debug("executable pages kept", "phase", phase, "err", err)
		return
	}
	log.Debug("executable pages released", "phase", phase, "bytes", n)
}

// releaseWhenStarted releases the executable's pages once the node is up
// (started closed): the peer-to-peer host's set-up (identify, relay,
// AutoNAT, the resource manager, their protobuf tables) runs once, after
// serving begins, and released before it those pages stayed mapped until
// the release startSettle later, during the first requests
// (ARCHITECTURE.md, Memory).
func releaseWhenStarted(ctx context.Context, log *slog.Logger, started <-chan struct{}) {
	select {
	case <-started:
		releaseStartPages(log, "serving")
	case <-ctx.Done():
	}
}
