package status

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// fakeSource returns a fixed snapshot (or an error).
type fakeSource struct {
	snap Snapshot
	err  error
}

func (f fakeSource) Snapshot(context.Context) (Snapshot, error) { return f.snap, f.err }

var t0 = time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC)

func sample() Snapshot {
	return Snapshot{
		Version: "1.2.3", Started: t0.Add(-90 * time.Minute), Now: t0, P2P: true, PeerID: "12D3KooWSelfSelfSelfSelf",
		Downloaded: Downloaded{PeerBytes: 3000, MirrorBytes: 1000},
		Downloads:  map[string]int64{"verified": 2, "refused": 1},
		Inflight: []Inflight{{Repo: "core", Arch: "x86_64", File: "big-1-1-x86_64.pkg.tar.zst", Size: 1000, Have: 250,
			Source: "12D3KooWPeerAPeerAPeerA", SourceKind: "peer", Started: t0.Add(-3 * time.Second)}},
		Peers: []Peer{{ID: "12D3KooWPeerAPeerAPeerA", Addrs: []string{"/ip4/10.0.0.2/tcp/19432"},
			Latency: 300 * time.Microsecond, SentBytes: 10, RecvBytes: 3000, Successes: 2,
			Score: 100 * time.Microsecond, Bandwidth: 2 << 20, Site: "lan", DemotedUntil: t0.Add(time.Minute)}},
		Bans: []Ban{{Peer: "12D3KooWLiarLiarLiarLiar", Reason: "sent bad bytes <script>alert(1)</script>",
			Time: t0, CID: "bafkreiabc", WantSHA256: "aa", GotSHA256: "bb"}},
		RefusedConnections: map[string]int64{"handshake": 4, "not-allowed": 0, "banned": 1},
		Mirrors: []Mirror{
			{URL: "https://down.example", Requests: 3, Errors: 3, LastError: t0, LastErr: "connection refused"},
			{URL: "https://up.example", Reachable: true, Requests: 5, LastOK: t0, Latency: 20 * time.Millisecond},
		},
		Store:   Store{Blobs: 3, Bytes: 5 << 20, QuotaBytes: 10 << 20},
		Keyring: Keyring{Valid: 100, ExpiringSoon: 2, Expired: 5, Other: 3, Updated: t0.Add(-24 * time.Hour)},
		Verify:  Histogram{Bounds: []float64{.01, .1}, Counts: []uint64{2, 3}, Count: 3, Sum: .05},
	}
}

func newTestPage(t *testing.T, src Source, served Served, reg prometheus.Registerer) *Page {
	t.Helper()
	p, err := New(Config{Source: src, Served: func() Served { return served }, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func get(t *testing.T, h http.Handler, path string) *http.Response {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Result()
}

func TestPageShowsTheSnapshot(t *testing.T) {
	t.Parallel()
	served := Served{CacheBytes: 6000, DownloadBytes: 4000, Refusals: map[string]int64{ReasonUnknownKey: 1},
		Recent: []Refusal{{Time: t0, Path: "core/os/x86_64/x-1-1-any.pkg.tar.zst", Status: 502, Reason: ReasonUnknownKey}}}
	resp := get(t, newTestPage(t, fakeSource{snap: sample()}, served, nil), "/")
	body, _ := io.ReadAll(resp.Body)
	page := string(body)
	if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type = %q", ct)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("Content-Security-Policy = %q", csp)
	}
	for _, want := range []string{
		`data-served-bytes="10000"`, `data-cache-bytes="6000"`, `data-peer-bytes="3000"`, `data-mirror-bytes="1000"`,
		`data-saved-bytes="9000"`, `data-inflight="big-1-1-x86_64.pkg.tar.zst" data-have="250" data-size="1000"`,
		`data-source-kind="peer"`, `<progress max="1000" value="250">`,
		`data-peer="12D3KooWPeerAPeerAPeerA" data-site="lan" data-sent="10" data-recv="3000"`,
		`data-refused-connections="handshake" data-value="4"`, `data-score="100000"`, `2.0 MiB/s`, `data-site="lan"`, `>demoted<`, `data-ban="12D3KooWLiarLiarLiarLiar"`, `data-mirror="https://down.example" data-reachable="false"`,
		`data-mirrors-reachable="1"`, `data-store-quota="10485760"`, `data-keys-expiring="2"`,
		`data-warning="unknown-key"`, `data-refusal="unknown-key"`, `data-version>1.2.3<`, `data-uptime="5400"`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	if strings.Contains(page, "<script>") {
		t.Error("a ban reason reached the page unescaped")
	}
	if strings.Contains(page, "src=") || strings.Contains(page, "http://") {
		t.Error("the page loads something from elsewhere")
	}
}

func TestJSONTwin(t *testing.T) {
	t.Parallel()
	served := Served{CacheBytes: 500, Requests: map[string]int64{"hit": 1}}
	resp := get(t, newTestPage(t, fakeSource{snap: sample()}, served, nil), "/status.json")
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	var got Snapshot
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if got.Served.CacheBytes != 500 || got.Downloaded.PeerBytes != 3000 || len(got.Peers) != 1 ||
		got.Bans[0].WantSHA256 != "aa" || got.Inflight[0].Have != 250 || got.SavedBytes != 0 ||
		got.Mirrors[1].Latency != 20*time.Millisecond || len(got.Warnings) != 0 {
		// Saved is 0: 500 served, 1000 from mirrors.
		t.Errorf("status.json = %+v", got)
	}
}

func TestWarnings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		edit func(*Snapshot)
		want []string
	}{
		{"all well", func(s *Snapshot) { s.Mirrors[0].Reachable = true }, nil},
		{"one mirror up is enough", func(*Snapshot) {}, nil},
		{"no mirror reachable", func(s *Snapshot) { s.Mirrors = s.Mirrors[:1] }, []string{"no-mirror"}},
		{"mirrors not tried yet", func(s *Snapshot) { s.Mirrors = []Mirror{{URL: "https://a"}} }, nil},
		{"refused for an unknown key", func(s *Snapshot) { s.Served.Refusals = map[string]int64{ReasonUnknownKey: 2} },
			[]string{"unknown-key"}},
		{"old keyring", func(s *Snapshot) { s.Keyring.Updated = s.Now.Add(-KeyringOldAfter - time.Hour) },
			[]string{"keyring-old"}},
		{"empty keyring", func(s *Snapshot) { s.Keyring.Valid = 0 }, []string{"keyring-empty"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := sample()
			tt.edit(&s)
			var got []string
			for _, w := range warnings(&s) {
				got = append(got, w.ID)
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("warnings = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestMetricsSayWhatThePageSays(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	served := Served{CacheBytes: 6000, DownloadBytes: 4000, Refusals: map[string]int64{"digest-mismatch": 2}}
	newTestPage(t, fakeSource{snap: sample()}, served, reg)
	got := gather(t, reg)
	for series, want := range map[string]float64{
		`flocon_download_bytes_total{source="mirror"}`:              1000,
		`flocon_download_bytes_total{source="peer"}`:                3000,
		`flocon_served_bytes_total{source="cache"}`:                 6000,
		`flocon_mirrors_reachable`:                                  1,
		`flocon_mirror_up{mirror="https://down.example"}`:           0,
		`flocon_refusals_total{reason="digest-mismatch"}`:           2,
		`flocon_saved_bytes`:                                        9000,
		`flocon_downloads_inflight_bytes`:                           250,
		`flocon_peers`:                                              1,
		`flocon_p2p_refused_connections_total{reason="handshake"}`:  4,
		`flocon_peer_score_seconds{peer="12D3KooWPeerAPeerAPeerA"}`: 0.0001,
		`flocon_bans`:                             1,
		`flocon_store_quota_bytes`:                10 << 20,
		`flocon_keyring_keys{state="expiring"}`:   2,
		`flocon_build_info{version="1.2.3"}`:      1,
		`flocon_verify_seconds_count`:             3,
		`flocon_verify_seconds_bucket{le="0.01"}`: 2,
		`flocon_peer_bytes_total{direction="received",peer="12D3KooWPeerAPeerAPeerA"}`: 3000,
	} {
		if v, ok := got[series]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", series, v, ok, want)
		}
	}
}

// gather scrapes reg into series name{labels sorted by name} → value.
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+strconv.Quote(l.GetValue()))
			}
			name := f.GetName()
			key := func(n string, extra ...string) string {
				all := append(append([]string(nil), labels...), extra...)
				if len(all) == 0 {
					return n
				}
				return n + "{" + strings.Join(all, ",") + "}"
			}
			switch {
			case m.GetCounter() != nil:
				out[key(name)] = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				out[key(name)] = m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				h := m.GetHistogram()
				out[key(name+"_count")] = float64(h.GetSampleCount())
				for _, b := range h.GetBucket() {
					out[key(name+"_bucket", "le="+strconv.Quote(strconv.FormatFloat(b.GetUpperBound(), 'g', -1, 64)))] =
						float64(b.GetCumulativeCount())
				}
			}
		}
	}
	return out
}

func TestSnapshotErrorIsA500(t *testing.T) {
	t.Parallel()
	resp := get(t, newTestPage(t, fakeSource{err: errors.New("boom")}, Served{}, nil), "/")
	if resp.StatusCode != http.StatusInternalServerError {
		t.Errorf("status = %d, want 500", resp.StatusCode)
	}
}
