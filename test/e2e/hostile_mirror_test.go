package e2e

import (
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The hostile-mirror suite (issue 10): through flocon, the real pacman
// faces mirrors that send one wrong byte, cut the file, answer 200 to a
// Range, or send more than the db's size. Each case ends with the signed
// bytes in pacman's cache or a clean failure, and at no point is there a
// complete wrong file: not in pacman's cache or its .part, not in flocon's
// store.

// clientHolds checks pacman's cache for f: the file, if there, is the
// signed one; a .part, if there, is shorter than the file (so no resume
// can be served as a complete file without passing pacman's checks). It
// reports whether the signed file is there.
func clientHolds(t *testing.T, p *Pacman, f FixtureFile, when string) bool {
	t.Helper()
	done := false
	if sum, err := FileSHA256(p.CacheFile(f.File)); err == nil {
		if sum != f.SHA256 {
			t.Errorf("%s: pacman's cache holds a complete wrong %s (sha256 %s)", when, f.File, sum)
		}
		done = sum == f.SHA256
	}
	if st, err := os.Stat(p.CacheFile(f.File + ".part")); err == nil && st.Size() >= f.Size {
		t.Errorf("%s: pacman's %s.part has %d bytes of %d", when, f.File, st.Size(), f.Size)
	}
	return done
}

// storeClean checks that flocon stores no wrong bytes for f.
func storeClean(t *testing.T, d *Daemon, f FixtureFile, badSHA256 ...string) {
	t.Helper()
	assertBlobsIntact(t, d)
	for _, sum := range badSHA256 {
		if p := d.BlobWithSHA256(sum); p != "" {
			t.Errorf("store holds the wrong bytes of %s in %s", f.File, p)
		}
	}
}

// TestHostileMirrorResume is issue 10's point 1 with the real pacman: the
// first mirror sends the big package with one byte wrong, the second is
// good. pacman, streaming from flocon, is cut before the last byte (flocon
// holds it back until the verdict) and keeps its .part; flocon starts over
// from the good mirror. On the next run pacman resumes the .part with
// Range: flocon must not complete it with the proven tail (a complete wrong
// file), so it answers 416; pacman 6.0 then deletes the .part (a >= 400
// answer with no server left: dload.c unlink_on_fail) and fails that run.
// The run after downloads the signed file whole. pacman cannot do better
// within one run: it resumes a .part on every server it tries
// (curl_retry_next_server) and only drops it after a >= 400 from the last.
func TestHostileMirrorResume(t *testing.T) {
	t.Parallel()
	fx := LoadFixtures(t)
	big := fx.Package(t, "big")
	lying := NewUpstream(t, fx.Mirror, WithFaults(Fault{Kind: FaultCorrupt, File: big.File}))
	good := NewUpstream(t, fx.Mirror)
	d := StartDaemon(t, DaemonConfig{Mirrors: []string{lying.Mirror(), good.Mirror()}, Keyring: fx.Keyring})
	tap := NewTap(t, d.URL())
	p := NewPacman(t, fx.Keyring, []string{tap.Server()})
	p.Sy()
	bad := corruptSHA256(t, fx, big)

	out, err := p.Run("-Sw", big.Name)
	if err == nil {
		t.Fatalf("pacman was not cut: it read none of the lying mirror's copy before the verdict\n%s", out)
	}
	clientHolds(t, p, big, "after the cut")
	st, err := os.Stat(p.CacheFile(big.File + ".part"))
	if err != nil || st.Size() == 0 {
		t.Fatalf("pacman kept no partial file after the cut (%v): the resume is not exercised\n%s", err, out)
	}
	part := st.Size()
	storeClean(t, d, big, bad)
	Eventually(t, 60*time.Second, "the good copy in flocon's store", func() bool { return d.HasBlob(big.CID()) })

	out, err = p.Run("-Sw", big.Name)
	if err == nil {
		t.Fatalf("pacman completed its partial file from flocon: %s\n%s", p.CacheFile(big.File), out)
	}
	if !regexp.MustCompile(`error: 416`).MatchString(out) {
		t.Errorf("pacman's resume was not refused with 416:\n%s", out)
	}
	refused := tap.Count(func(r Request) bool {
		return matchPath(r.Path, big.File) && r.Range == fmt.Sprintf("bytes=%d-", part) &&
			r.Status == http.StatusRequestedRangeNotSatisfiable
	})
	if refused != 1 {
		t.Errorf("want pacman's Range: bytes=%d- answered 416 once\n%s", part, tap.LogString())
	}
	clientHolds(t, p, big, "after the refused resume")
	if _, err := os.Stat(p.CacheFile(big.File + ".part")); err == nil {
		t.Errorf("pacman kept its partial file after the 416")
	}

	p.Sw(big.Name)
	if !clientHolds(t, p, big, "after the fresh download") {
		t.Errorf("pacman's cache lacks the signed %s", big.File)
	}
	storeClean(t, d, big, bad)
}

// TestHostileMirrors: for each way a mirror lies, pacman through flocon ends
// with the signed package (trying again after a clean failure, as a user
// would), and never with a complete wrong file on either side.
func TestHostileMirrors(t *testing.T) {
	t.Parallel()
	fx := LoadFixtures(t)
	big, hello := fx.Package(t, "big"), fx.Package(t, "hello")
	const cut = 5 << 20
	tests := []struct {
		name    string
		f       FixtureFile
		mirrors [][]Fault // one upstream per entry, in order
		bad     []string  // sha256 of wrong copies that must never be stored
		// refused: no mirror has the right bytes, every run fails cleanly
		refused bool
	}{
		{"one byte wrong, no good mirror", hello, [][]Fault{{{Kind: FaultCorrupt, File: hello.File}}},
			[]string{corruptSHA256(t, fx, hello)}, true},
		{"one byte wrong, then a good mirror", hello, [][]Fault{{{Kind: FaultCorrupt, File: hello.File}}, nil},
			[]string{corruptSHA256(t, fx, hello)}, false},
		{"truncated, then a good mirror", big, [][]Fault{{{Kind: FaultCut, File: big.File, Bytes: cut}}, nil}, nil, false},
		{"truncated, then 200 to the Range", big, [][]Fault{{{Kind: FaultCut, File: big.File, Bytes: cut}},
			{{Kind: FaultIgnoreRange, File: big.File}}}, nil, false},
		{"longer than the db size, then a good mirror", hello, [][]Fault{{{Kind: FaultLonger, File: hello.File, Bytes: 4096}}, nil},
			nil, false},
		// The signed bytes are there, followed by junk: flocon takes the
		// size the db gives and not a byte more.
		{"longer than the db size, only mirror", hello, [][]Fault{{{Kind: FaultLonger, File: hello.File, Bytes: 4096}}},
			nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var mirrors []string
			for _, faults := range tt.mirrors {
				mirrors = append(mirrors, NewUpstream(t, fx.Mirror, WithFaults(faults...)).Mirror())
			}
			d := StartDaemon(t, DaemonConfig{Mirrors: mirrors, Keyring: fx.Keyring})
			p := NewPacman(t, fx.Keyring, []string{d.Server()})
			p.Sy()
			var outs []string
			done := false
			for run := 1; run <= 3 && !done; run++ {
				out, err := p.Run("-Sw", tt.f.Name)
				outs = append(outs, fmt.Sprintf("run %d (err %v):\n%s", run, err, out))
				done = clientHolds(t, p, tt.f, fmt.Sprintf("run %d", run))
				if err == nil && !done {
					t.Errorf("run %d: pacman succeeded without the signed file in its cache", run)
				}
				storeClean(t, d, tt.f, tt.bad...)
			}
			switch {
			case tt.refused && done:
				t.Errorf("pacman got %s though no mirror has its signed bytes", tt.f.File)
			case !tt.refused && !done:
				t.Errorf("pacman never got the signed %s:\n%s", tt.f.File, strings.Join(outs, "\n"))
			}
			if tt.refused && d.HasBlob(tt.f.CID()) {
				t.Errorf("flocon stored %s though no mirror has its bytes", tt.f.File)
			}
		})
	}
}
