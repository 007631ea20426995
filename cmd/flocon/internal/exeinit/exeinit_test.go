//go:build linux && (amd64 || arm64)

package exeinit

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

func TestServing(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want bool
	}{
		{name: "serve", args: []string{"flocon", "serve", "--no-mdns"}, want: true},
		{name: "other subcommand", args: []string{"flocon", "status"}},
		{name: "no subcommand", args: []string{"flocon"}},
		{name: "serve as a flag value", args: []string{"flocon", "--config", "serve"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := serving(tt.args); got != tt.want {
				t.Errorf("serving(%q) = %v, want %v", tt.args, got, tt.want)
			}
		})
	}
}

func TestExeRange(t *testing.T) {
	t.Parallel()
	const exe = "/usr/bin/flocon"
	tests := []struct {
		name       string
		line       string
		start, end uintptr
		ok         bool
	}{
		{name: "text", line: "00400000-01037000 r-xp 00000000 fe:01 1234 /usr/bin/flocon", start: 0x400000, end: 0x1037000, ok: true},
		{name: "other file", line: "7ff9-7ffa rw-s 00000000 fe:01 99 /var/cache/flocon/index/00001.mem"},
		{name: "anonymous", line: "7ff952820000-7ff952b00000 rw-p 00000000 00:00 0"},
		{name: "bad hex", line: "0040000g-01037000 r-xp 00000000 fe:01 1234 /usr/bin/flocon"},
		{name: "empty range", line: "01037000-01037000 r-xp 00000000 fe:01 1234 /usr/bin/flocon"},
		{name: "path with a space", line: "00400000-00401000 r-xp 00000000 fe:01 1 /usr/bin/flocon (deleted)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, e, ok := exeRange([]byte(tt.line), exe)
			if ok != tt.ok || s != tt.start || e != tt.end {
				t.Errorf("exeRange(%q) = %#x, %#x, %v; want %#x, %#x, %v", tt.line, s, e, ok, tt.start, tt.end, tt.ok)
			}
		})
	}
}

// TestPrepare: every mapping of the executable (here the test binary) is
// marked for random access ("rr" in smaps' VmFlags) afterwards.
func TestPrepare(t *testing.T) {
	t.Parallel()
	if err := Prepare(); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	seen, inExe := 0, false
	for _, line := range bytes.Split(smaps, []byte("\n")) {
		if _, _, ok := exeRange(line, exe); ok {
			inExe, seen = true, seen+1
			continue
		}
		if f := bytes.Fields(line); len(f) >= 6 { // another mapping's header
			inExe = false
			continue
		}
		if rest, ok := bytes.CutPrefix(line, []byte("VmFlags:")); ok && inExe {
			if !strings.Contains(" "+string(rest)+" ", " rr ") {
				t.Errorf("a mapping of %s lacks rr: VmFlags:%s", exe, rest)
			}
		}
	}
	if seen == 0 {
		t.Fatalf("no mapping of %s in smaps", exe)
	}
}
