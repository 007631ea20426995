package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"sync"
	"time"

	"github.com/flocon/flocon/store"
	"github.com/flocon/flocon/verify"
)

// Kinds of source a download takes bytes from (Stats.BytesFrom keys).
const (
	SourcePeer   = "peer"
	SourceMirror = "mirror"
)

// Verdicts of a finished download (Stats.Downloads keys, the download log).
const (
	VerdictVerified = "verified" // committed to the store
	VerdictNotFound = "notfound" // no source had it
	VerdictRefused  = "refused"  // bytes or signature not the ones Arch signed
	VerdictFailed   = "failed"   // sources unreachable, stalled, store error, shutdown
)

// Stats is what the node did since it started, for the status page and the
// metrics. Counters only grow; Inflight and Mirrors are the state now.
type Stats struct {
	BytesFrom map[string]int64 // SourcePeer / SourceMirror → bytes received into downloads
	Downloads map[string]int64 // verdict → finished downloads
	Inflight  []InflightDownload
	Mirrors   []MirrorHealth  // one per configured mirror host, in configured order
	Verify    HistogramCounts // seconds of the final signature check of each download
	MirrorRTT HistogramCounts // seconds from a mirror request to its response headers
}

// InflightDownload is one download running now.
type InflightDownload struct {
	Repo, Arch, Filename string
	Size                 int64 // -1: unknown
	Have                 int64 // bytes received (and verified-as-they-stream) so far
	Source               string
	SourceKind           string // SourcePeer, SourceMirror, "" before the first source
	Started              time.Time
}

// MirrorHealth is what the node saw of one mirror host: any HTTP answer is
// "reachable" (a 404 too), a connection error or a 5xx is not.
type MirrorHealth struct {
	URL       string // scheme://host, no credentials
	Requests  int64
	Errors    int64
	LastOK    time.Time
	LastError time.Time
	LastErr   string        // the last failure, in words
	Latency   time.Duration // time to headers of the last answer
}

// Reachable: the mirror's last request got an answer.
func (m MirrorHealth) Reachable() bool { return !m.LastOK.IsZero() && !m.LastOK.Before(m.LastError) }

// HistogramCounts is a histogram: Counts[i] observations ≤ Bounds[i]
// (cumulative, as Prometheus buckets), Count and Sum over all.
type HistogramCounts struct {
	Bounds []float64
	Counts []uint64
	Count  uint64
	Sum    float64
}

// histogram accumulates observations into fixed buckets.
type histogram struct {
	bounds []float64
	counts []uint64 // per bucket, not cumulative; last: above every bound
	sum    float64
}

func newHistogram(bounds ...float64) histogram {
	return histogram{bounds: bounds, counts: make([]uint64, len(bounds)+1)}
}

func (h *histogram) observe(v float64) {
	i := sort.SearchFloat64s(h.bounds, v)
	h.counts[i]++
	h.sum += v
}

func (h *histogram) snapshot() HistogramCounts {
	out := HistogramCounts{Bounds: h.bounds, Counts: make([]uint64, len(h.bounds)), Sum: h.sum}
	for i, c := range h.counts {
		out.Count += c
		if i < len(h.bounds) {
			out.Counts[i] = out.Count
		}
	}
	return out
}

// stats is the node's side of Stats, made by newStats; a nil *stats
// counts nothing.
type stats struct {
	mu        sync.Mutex
	bytesFrom map[string]int64
	downloads map[string]int64
	mirrors   []*MirrorHealth
	byHost    map[string]*MirrorHealth
	verify    histogram
	rtt       histogram
}

func newStats(m Mirrors) *stats {
	s := &stats{
		bytesFrom: map[string]int64{SourcePeer: 0, SourceMirror: 0},
		downloads: map[string]int64{VerdictVerified: 0, VerdictNotFound: 0, VerdictRefused: 0, VerdictFailed: 0},
		byHost:    map[string]*MirrorHealth{},
		verify:    newHistogram(.001, .005, .01, .05, .1, .5, 1),
		rtt:       newHistogram(.01, .05, .1, .25, .5, 1, 2.5, 5, 10),
	}
	tpls := append([]string(nil), m.Default...)
	for _, ts := range m.PerRepo {
		tpls = append(tpls, ts...)
	}
	for _, t := range tpls {
		if host := mirrorHost(t); host != "" && s.byHost[host] == nil {
			h := &MirrorHealth{URL: host}
			s.byHost[host] = h
			s.mirrors = append(s.mirrors, h)
		}
	}
	return s
}

// mirrorHost is scheme://host of a mirror URL or template, without
// credentials, path or query (they may hold secrets).
func mirrorHost(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return ""
	}
	return u.Scheme + "://" + u.Host
}

// Stats returns what the node did since it started and what it is doing now.
func (n *Node) Stats() Stats {
	s := n.stats
	s.mu.Lock()
	out := Stats{
		BytesFrom: copyMap(s.bytesFrom), Downloads: copyMap(s.downloads),
		Verify: s.verify.snapshot(), MirrorRTT: s.rtt.snapshot(),
	}
	for _, m := range s.mirrors {
		out.Mirrors = append(out.Mirrors, *m)
	}
	s.mu.Unlock()
	n.mu.Lock()
	for d := range n.downloads {
		out.Inflight = append(out.Inflight, d.st.inflight(d))
	}
	n.mu.Unlock()
	sort.Slice(out.Inflight, func(i, j int) bool { return out.Inflight[i].Started.Before(out.Inflight[j].Started) })
	return out
}

func copyMap(m map[string]int64) map[string]int64 {
	out := make(map[string]int64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func (s *stats) received(kind string, k int64) {
	if s == nil { // a Node built by hand in a test
		return
	}
	s.mu.Lock()
	s.bytesFrom[kind] += k
	s.mu.Unlock()
}

func (s *stats) verified(took time.Duration) {
	if s == nil { // a Node built by hand in a test
		return
	}
	s.mu.Lock()
	s.verify.observe(took.Seconds())
	s.mu.Unlock()
}

func (s *stats) finished(verdict string) {
	if s == nil { // a Node built by hand in a test
		return
	}
	s.mu.Lock()
	s.downloads[verdict]++
	s.mu.Unlock()
}

// mirrorAnswer records one request to a configured mirror host.
func (s *stats) mirrorAnswer(host string, took time.Duration, err error) {
	if s == nil { // a Node built by hand in a test
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.byHost[host]
	if m == nil {
		return // a redirect target: its outcome is the first hop's
	}
	now := time.Now()
	m.Requests++
	if err != nil {
		m.Errors++
		m.LastError, m.LastErr = now, err.Error()
		return
	}
	m.LastOK, m.Latency = now, took
	s.rtt.observe(took.Seconds())
}

// statsTransport records every mirror request's outcome and time to headers.
type statsTransport struct {
	http.RoundTripper
	s *stats
}

func (t statsTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.RoundTripper.RoundTrip(r)
	outcome := err
	if err == nil && resp.StatusCode >= 500 {
		outcome = fmt.Errorf("HTTP %s", resp.Status)
	}
	if err != nil && r.Context().Err() != nil {
		return resp, err // cancelled by us (hedging, shutdown): says nothing of the mirror
	}
	t.s.mirrorAnswer(r.URL.Scheme+"://"+r.URL.Host, time.Since(start), redactURLError(outcome))
	return resp, err
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the transport.
func (t statsTransport) CloseIdleConnections() {
	if c, ok := t.RoundTripper.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// redactURLError drops the URL from a transport error (it may carry
// credentials); the host is shown beside it anyway.
func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// downloadStats follows one download for the status page: when it
// started and the transfer running now. The zero value is ready; mu also
// guards download.sources.
type downloadStats struct {
	mu      sync.Mutex
	started time.Time
	sources time.Time // when the first attempt had its sources (signature and lookup done)
	running *transfer // the attempt running now
}

// peerOrMirror is the kind of s for Stats: SourcePeer or SourceMirror.
func peerOrMirror(s source) string {
	if s.Peer() != "" {
		return SourcePeer
	}
	return SourceMirror
}

func (ds *downloadStats) begin() {
	ds.mu.Lock()
	ds.started = time.Now()
	ds.mu.Unlock()
}

// follow notes the transfer of the attempt starting now.
func (ds *downloadStats) follow(t *transfer) {
	ds.mu.Lock()
	ds.running = t
	if ds.sources.IsZero() {
		ds.sources = time.Now()
	}
	ds.mu.Unlock()
}

// countSources adds what each source of an attempt delivered to the
// node's byte counters.
func (n *Node) countSources(srcs []source, got []int64) {
	for i, s := range srcs {
		if got[i] > 0 {
			n.stats.received(peerOrMirror(s), got[i])
		}
	}
}

// current is the source whose bytes the download takes now (nil before
// the first source starts).
func (t *transfer) current() source {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.owner == nil || t.done {
		return nil
	}
	return t.owner.src
}

func (ds *downloadStats) inflight(d *download) InflightDownload {
	ds.mu.Lock()
	in := InflightDownload{
		Repo: d.repo, Arch: d.arch, Filename: d.exp.Filename, Size: d.exp.Size,
		Have: d.p.Written(), Started: ds.started,
	}
	t := ds.running
	ds.mu.Unlock()
	if in.Size <= 0 {
		in.Size = d.p.Size()
	}
	if t != nil {
		if src := t.current(); src != nil {
			in.Source, in.SourceKind = publicSourceName(src), peerOrMirror(src)
		}
	}
	return in
}

// publicSourceName is a source as the status page may show it: a peer
// by its ID, a mirror as its host only (its URL may carry credentials).
func publicSourceName(s source) string {
	if s.Peer() != "" {
		return s.Peer().String()
	}
	if h := mirrorHost(s.String()); h != "" {
		return h
	}
	return SourceMirror
}

// verdictOf classifies how a download ended.
func verdictOf(err error) string {
	switch {
	case err == nil:
		return VerdictVerified
	case errors.Is(err, store.ErrNotFound):
		return VerdictNotFound
	case errors.Is(err, verify.ErrDigestMismatch), errors.Is(err, verify.ErrSizeMismatch),
		errors.Is(err, verify.ErrBadSignature), errors.Is(err, verify.ErrNoSignature),
		errors.Is(err, verify.ErrUnknownKey), errors.Is(err, verify.ErrUntrustedKey),
		errors.Is(err, verify.ErrRevokedKey), errors.Is(err, verify.ErrDisabledKey),
		errors.Is(err, verify.ErrExpiredKey), errors.Is(err, verify.ErrIdentityMismatch):
		return VerdictRefused
	default:
		return VerdictFailed
	}
}

// logDownload writes the one line of a finished download: package,
// sources with the bytes each gave, size, duration and verdict. It is at
// info level, or warn when the download was refused or failed.
func (n *Node) logDownload(ctx context.Context, d *download, size int64, err error) {
	verdict := verdictOf(err)
	n.stats.finished(verdict)
	d.st.mu.Lock()
	took := time.Since(d.st.started)
	var waited time.Duration // signature and lookup, before any byte was asked for
	if !d.st.sources.IsZero() {
		waited = d.st.sources.Sub(d.st.started)
	}
	var fromPeers, fromMirrors int64
	for _, sb := range d.sources {
		if sb.Kind == SourceMirror {
			fromMirrors += sb.Bytes
		} else {
			fromPeers += sb.Bytes
		}
	}
	sources := sourcesAttr(d.sources)
	d.st.mu.Unlock()
	args := []any{"repo", d.repo, "arch", d.arch, "file", d.exp.Filename, "cid", d.exp.CID.String(),
		"verdict", verdict, "bytes", size, "took", took.Round(time.Millisecond), "waited", waited.Round(time.Millisecond),
		"fromPeers", fromPeers, "fromMirrors", fromMirrors, "sources", sources}
	level := slog.LevelInfo
	if err != nil {
		args = append(args, "err", err)
		if verdict != VerdictNotFound {
			level = slog.LevelWarn
		}
	}
	n.log.Log(ctx, level, "download", args...)
}
