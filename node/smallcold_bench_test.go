package node

import (
	"io"
	"testing"

	"github.com/flocon/flocon/store"
	"github.com/flocon/flocon/verify"
)

// BenchmarkFetchSmallCold measures what a burst of small cold packages
// costs the node per package, allocations included: each iteration fetches
// a new 50 KiB package from a local mirror and reads it as a client would
// (scripts/bench.sh row 5a without the gateway); the commits, which no
// client waits for, are gathered as in the daemon and awaited per store.
func BenchmarkFetchSmallCold(b *testing.B) {
	keys := testKeyring(b)
	const batch = 256
	pkgs := make([]testPkg, batch)
	files := make(map[string][]byte, 2*batch)
	for i := range pkgs {
		pkgs[i] = newTestPkg(b, "small"+string(rune('a'+i/26%26))+string(rune('a'+i%26))+"-1.0-1-x86_64.pkg.tar.zst", 50<<10, keys.packager)
		files[pkgs[i].name] = pkgs[i].data
	}
	m := newFakeMirror(b, mirrorMode{}, files)
	b.ReportAllocs()
	b.SetBytes(50 << 10)
	i := batch
	var n *Node
	var started []*store.Pending
	committed := func() {
		for _, p := range started {
			<-p.Done()
			if err := p.Err(); err != nil {
				b.Fatal(err)
			}
		}
		started = started[:0]
	}
	defer committed()
	buf := make([]byte, 64<<10)
	for b.Loop() {
		if i == batch { // a new store: every package cold again
			b.StopTimer()
			committed()
			n, _ = newTestNode(b, []string{m.template()})
			i = 0
			b.StartTimer()
		}
		p, err := n.Fetch(b.Context(), "core", "x86_64", pkgs[i].expect(verify.SigRequired, true))
		if err != nil || p == nil {
			b.Fatalf("fetch: %v", err)
		}
		r := p.NewReader(b.Context(), 0)
		if _, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{r}, buf); err != nil {
			b.Fatal(err)
		}
		r.Close()
		started = append(started, p)
		i++
	}
}
