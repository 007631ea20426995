package node

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/flocon/flocon/verify"
)

// logBuffer collects JSON log records for a test.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// records returns the records whose message is msg.
func (b *logBuffer) records(t *testing.T, msg string) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(b.buf.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

func withLog(b *logBuffer) func(*Config) {
	return func(c *Config) { c.Logger = slog.New(slog.NewJSONHandler(b, nil)) }
}

func TestStatsCountBytesBySourceAndLogOneLine(t *testing.T) {
	t.Parallel()
	const size, fromPeer = 64 << 10, 1000
	pkg := newTestPkg(t, "stats-1.0-1-x86_64.pkg.tar.zst", size, testKeyring(t).packager)
	m := newFakeMirror(t, mirrorMode{}, map[string][]byte{pkg.name: pkg.data})
	var logs logBuffer
	n, _ := newTestNode(t, []string{m.template()}, withLog(&logs))
	cut := &fakePeer{id: "peerA", data: pkg.data, cutAt: fromPeer}
	n.peers = func(context.Context, cid.Cid) ([]source, <-chan source) { return []source{cut}, nil }
	if _, err := fetchAndRead(t, n, pkg.expect(verify.SigRequired, true)); err != nil {
		t.Fatalf("download: %v", err)
	}
	<-waitIdle(n)
	s := n.Stats()
	if s.BytesFrom[SourcePeer] != fromPeer || s.BytesFrom[SourceMirror] != size-fromPeer {
		t.Errorf("bytes from = %v, want peer %d, mirror %d", s.BytesFrom, fromPeer, size-fromPeer)
	}
	if s.Downloads[VerdictVerified] != 1 || s.Verify.Count != 1 {
		t.Errorf("downloads = %v, verify checks = %d; want 1 verified, 1 check", s.Downloads, s.Verify.Count)
	}
	recs := logs.records(t, "download")
	if len(recs) != 1 {
		t.Fatalf("%d download log lines, want 1", len(recs))
	}
	r := recs[0]
	sources, _ := r["sources"].(string)
	if r["level"] != "INFO" || r["verdict"] != VerdictVerified || r["file"] != pkg.name ||
		r["bytes"] != float64(size) || r["fromPeers"] != float64(fromPeer) ||
		r["fromMirrors"] != float64(size-fromPeer) || r["took"] == nil ||
		!strings.Contains(sources, peer.ID("peerA").String()) || !strings.Contains(sources, "=1000") ||
		!strings.Contains(sources, m.srv.URL) || !strings.Contains(sources, "="+strconv.Itoa(size-fromPeer)) {
		t.Errorf("download log = %v", r)
	}
}

func TestStatsVerdictOfRefusedDownload(t *testing.T) {
	t.Parallel()
	pkg := newTestPkg(t, "bad-1.0-1-x86_64.pkg.tar.zst", 4096, testKeyring(t).packager)
	m := newFakeMirror(t, mirrorMode{corrupt: true}, map[string][]byte{pkg.name: pkg.data})
	var logs logBuffer
	n, _ := newTestNode(t, []string{m.template()}, withLog(&logs))
	if _, err := fetchAndRead(t, n, pkg.expect(verify.SigRequired, true)); err == nil {
		t.Fatal("a corrupt download was accepted")
	}
	<-waitIdle(n)
	if got := n.Stats().Downloads; got[VerdictRefused] != 1 || got[VerdictVerified] != 0 {
		t.Errorf("downloads = %v, want 1 refused", got)
	}
	recs := logs.records(t, "download")
	if len(recs) != 1 || recs[0]["verdict"] != VerdictRefused || recs[0]["level"] != "WARN" || recs[0]["err"] == nil {
		t.Errorf("download log lines = %v, want one refused warning with its error", recs)
	}
}

func TestStatsMirrorHealth(t *testing.T) {
	t.Parallel()
	pkg := newTestPkg(t, "health-1.0-1-x86_64.pkg.tar.zst", 4096, testKeyring(t).packager)
	files := map[string][]byte{pkg.name: pkg.data, pkg.name + ".sig": pkg.sig}
	dead := deadMirror(t)
	broken := newFakeMirror(t, mirrorMode{status: http.StatusBadGateway}, files)
	good := newFakeMirror(t, mirrorMode{}, files)
	n, _ := newTestNode(t, []string{"http://user:secret@" + strings.TrimPrefix(dead, "http://"),
		broken.template(), good.template()})
	if _, err := fetchAndRead(t, n, pkg.expect(verify.SigRequired, true)); err != nil {
		t.Fatalf("download: %v", err)
	}
	ms := n.Stats().Mirrors
	if len(ms) != 3 {
		t.Fatalf("mirrors = %+v, want 3", ms)
	}
	for i, want := range []bool{false, false, true} {
		if ms[i].Reachable() != want || ms[i].Requests == 0 || (ms[i].Errors > 0) == want {
			t.Errorf("mirror %d = %+v, want reachable %v", i, ms[i], want)
		}
		if strings.Contains(ms[i].URL, "secret") || strings.Contains(ms[i].LastErr, "secret") {
			t.Errorf("mirror %d shows its credentials: %+v", i, ms[i])
		}
	}
	if rtt := n.Stats().MirrorRTT; rtt.Count == 0 || rtt.Counts[len(rtt.Counts)-1] > rtt.Count {
		t.Errorf("mirror latency histogram = %+v", rtt)
	}
}

// heldPeer sends the first half of a blob, says so, then waits for release.
type heldPeer struct {
	data     []byte
	sent     chan struct{}
	released chan struct{}
}

func (h *heldPeer) String() string { return "peer held" }
func (h *heldPeer) Peer() peer.ID  { return "peerHeld" }

func (h *heldPeer) Fetch(ctx context.Context, _ cid.Cid, off int64, w io.Writer) (int64, error) {
	half := int64(len(h.data) / 2)
	k, err := w.Write(h.data[off:half])
	close(h.sent)
	if err != nil {
		return int64(k), err
	}
	select {
	case <-h.released:
	case <-ctx.Done():
		return int64(k), ctx.Err()
	}
	k2, err := w.Write(h.data[half:])
	return int64(k + k2), err
}

func TestStatsInflightProgress(t *testing.T) {
	t.Parallel()
	pkg := newTestPkg(t, "slow-1.0-1-x86_64.pkg.tar.zst", 8192, testKeyring(t).packager)
	m := newFakeMirror(t, mirrorMode{}, nil)
	n, _ := newTestNode(t, []string{m.template()})
	held := &heldPeer{data: pkg.data, sent: make(chan struct{}), released: make(chan struct{})}
	n.peers = func(context.Context, cid.Cid) ([]source, <-chan source) { return []source{held}, nil }
	p, err := n.Fetch(t.Context(), "core", "x86_64", pkg.expect(verify.SigRequired, true))
	if err != nil {
		t.Fatal(err)
	}
	<-held.sent
	in := n.Stats().Inflight
	if len(in) != 1 || in[0].Filename != pkg.name || in[0].Have != 4096 || in[0].Size != 8192 ||
		in[0].SourceKind != SourcePeer || in[0].Source != peer.ID("peerHeld").String() || in[0].Started.IsZero() {
		t.Fatalf("in flight = %+v", in)
	}
	close(held.released)
	<-p.Done()
	<-waitIdle(n)
	if in := n.Stats().Inflight; len(in) != 0 {
		t.Errorf("in flight after the end = %+v", in)
	}
}

// waitIdle is closed once no download is registered (the log line and the
// counters come just before the download unregisters).
func waitIdle(n *Node) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		n.wg.Wait()
		close(done)
	}()
	return done
}
