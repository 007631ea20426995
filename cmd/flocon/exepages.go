package main

import (
	"bufio"
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"syscall"
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
// so no byte the process sees can change. It returns how many bytes were
// resident in the mappings it dropped.
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
		if m.anonymous != 0 || (m.perms != "r-xp" && m.perms != "r--p") {
			continue
		}
		_, _, e := syscall.Syscall(syscall.SYS_MADVISE, m.start, m.end-m.start, syscall.MADV_DONTNEED)
		if e != 0 {
			return dropped, fmt.Errorf("madvise %x-%x: %w", m.start, m.end, e)
		}
		dropped += m.rss
	}
	return dropped, nil
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
