package status

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// scrapeTimeout bounds the snapshot of one scrape.
const scrapeTimeout = 5 * time.Second

// The metrics derived from a Snapshot at every scrape, so they say what the
// page says. Counters are counted by the daemon since it started.
var (
	descBuildInfo = prometheus.NewDesc("flocon_build_info",
		"Always 1; the version label is the running daemon's.", []string{"version"}, nil)
	descStartTime = prometheus.NewDesc("flocon_start_time_seconds",
		"When the daemon started, in Unix seconds.", nil, nil)
	descDownloadBytes = prometheus.NewDesc("flocon_download_bytes_total",
		"Bytes downloads received, by kind of source (peer, mirror).", []string{"source"}, nil)
	descDownloads = prometheus.NewDesc("flocon_downloads_total",
		"Finished package downloads by verdict (verified, notfound, refused, failed).", []string{"verdict"}, nil)
	descInflight = prometheus.NewDesc("flocon_downloads_inflight",
		"Package downloads running now.", nil, nil)
	descInflightBytes = prometheus.NewDesc("flocon_downloads_inflight_bytes",
		"Bytes received so far by the downloads running now.", nil, nil)
	descServedBytes = prometheus.NewDesc("flocon_served_bytes_total",
		"Package bytes the gateway sent to clients, by where they came from (cache, download).", []string{"source"}, nil)
	// A gauge: served minus mirror bytes can step back (a mirror download
	// is counted before the request that serves it ends).
	descSavedBytes = prometheus.NewDesc("flocon_saved_bytes",
		"Package bytes served since start that did not come from a mirror (served minus mirror bytes).", nil, nil)
	descPeers = prometheus.NewDesc("flocon_peers",
		"Connected peers.", nil, nil)
	descPeerBytes = prometheus.NewDesc("flocon_peer_bytes_total",
		"Bytes exchanged with each connected peer, by direction (sent, received).", []string{"peer", "direction"}, nil)
	descPeerLatency = prometheus.NewDesc("flocon_peer_latency_seconds",
		"Round-trip latency (EWMA) of each connected peer.", []string{"peer"}, nil)
	descPeerScore = prometheus.NewDesc("flocon_peer_score_seconds",
		"Ranking score of each connected peer as a source (latency inflated by failed transfers; lower is tried first).", []string{"peer"}, nil)
	descBans = prometheus.NewDesc("flocon_bans",
		"Banned peers.", nil, nil)
	descRefusedConns = prometheus.NewDesc("flocon_p2p_refused_connections_total",
		"Inbound peer connections refused, by reason (handshake, not-allowed, banned).", []string{"reason"}, nil)
	descStoreBytes = prometheus.NewDesc("flocon_store_bytes",
		"Bytes of verified package blobs in the store.", nil, nil)
	descStoreBlobs = prometheus.NewDesc("flocon_store_blobs",
		"Verified package blobs in the store.", nil, nil)
	descStoreQuota = prometheus.NewDesc("flocon_store_quota_bytes",
		"The store's size quota (0: none).", nil, nil)
	descMirrorRequests = prometheus.NewDesc("flocon_mirror_requests_total",
		"HTTP requests to each configured mirror host.", []string{"mirror"}, nil)
	descMirrorErrors = prometheus.NewDesc("flocon_mirror_errors_total",
		"Mirror requests that got no answer or a 5xx.", []string{"mirror"}, nil)
	descMirrorUp = prometheus.NewDesc("flocon_mirror_up",
		"1 when the mirror's last request got an answer, else 0.", []string{"mirror"}, nil)
	descMirrorsReachable = prometheus.NewDesc("flocon_mirrors_reachable",
		"Mirrors whose last request got an answer; 0 with flocon_mirror_requests_total > 0 means no mirror reachable.", nil, nil)
	descMirrorLatency = prometheus.NewDesc("flocon_mirror_latency_seconds",
		"Time from a mirror request to its response headers.", nil, nil)
	descVerify = prometheus.NewDesc("flocon_verify_seconds",
		"Time of the final signature check of each download (hashing runs while bytes stream).", nil, nil)
	descKeys = prometheus.NewDesc("flocon_keyring_keys",
		"Keys of the keyring by state (valid, expiring, expired, other).", []string{"state"}, nil)
	descKeyringUpdated = prometheus.NewDesc("flocon_keyring_updated_time_seconds",
		"Modification time of the newest keyring file, in Unix seconds.", nil, nil)
	descRefusals = prometheus.NewDesc("flocon_refusals_total",
		"Requests the gateway refused, by reason (same as the X-Flocon-Refusal header).", []string{"reason"}, nil)
)

// collector turns a fresh snapshot into metrics at every scrape.
type collector struct{ p *Page }

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descBuildInfo, descStartTime, descDownloadBytes, descDownloads,
		descInflight, descInflightBytes, descServedBytes, descSavedBytes, descPeers, descPeerBytes,
		descPeerLatency, descPeerScore, descBans, descRefusedConns, descStoreBytes, descStoreBlobs, descStoreQuota, descMirrorRequests,
		descMirrorErrors, descMirrorUp, descMirrorsReachable, descMirrorLatency, descVerify, descKeys,
		descKeyringUpdated, descRefusals} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	s, err := c.p.snapshot(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descBuildInfo, err)
		return
	}
	m := metricSink{ch: ch}
	m.gauge(descBuildInfo, 1, s.Version)
	m.gauge(descStartTime, float64(s.Started.Unix()))
	m.counter(descDownloadBytes, s.Downloaded.PeerBytes, "peer")
	m.counter(descDownloadBytes, s.Downloaded.MirrorBytes, "mirror")
	for verdict, n := range s.Downloads {
		m.counter(descDownloads, n, verdict)
	}
	var have int64
	for _, in := range s.Inflight {
		have += in.Have
	}
	m.gauge(descInflight, float64(len(s.Inflight)))
	m.gauge(descInflightBytes, float64(have))
	m.counter(descServedBytes, s.Served.CacheBytes, "cache")
	m.counter(descServedBytes, s.Served.DownloadBytes, "download")
	m.gauge(descSavedBytes, float64(s.SavedBytes))
	c.collectPeers(&m, &s)
	m.gauge(descStoreBytes, float64(s.Store.Bytes))
	m.gauge(descStoreBlobs, float64(s.Store.Blobs))
	m.gauge(descStoreQuota, float64(s.Store.QuotaBytes))
	c.collectMirrors(&m, &s)
	m.histogram(descVerify, s.Verify)
	m.gauge(descKeys, float64(s.Keyring.Valid), "valid")
	m.gauge(descKeys, float64(s.Keyring.ExpiringSoon), "expiring")
	m.gauge(descKeys, float64(s.Keyring.Expired), "expired")
	m.gauge(descKeys, float64(s.Keyring.Other), "other")
	if !s.Keyring.Updated.IsZero() {
		m.gauge(descKeyringUpdated, float64(s.Keyring.Updated.Unix()))
	}
	for reason, n := range s.Served.Refusals {
		m.counter(descRefusals, n, reason)
	}
}

func (c *collector) collectPeers(m *metricSink, s *Snapshot) {
	m.gauge(descPeers, float64(len(s.Peers)))
	for _, p := range s.Peers {
		m.counter(descPeerBytes, p.SentBytes, p.ID, "sent")
		m.counter(descPeerBytes, p.RecvBytes, p.ID, "received")
		if p.Latency > 0 {
			m.gauge(descPeerLatency, p.Latency.Seconds(), p.ID)
		}
		if p.Score > 0 {
			m.gauge(descPeerScore, p.Score.Seconds(), p.ID)
		}
	}
	m.gauge(descBans, float64(len(s.Bans)))
	for reason, n := range s.RefusedConnections {
		m.counter(descRefusedConns, n, reason)
	}
}

func (c *collector) collectMirrors(m *metricSink, s *Snapshot) {
	for _, mr := range s.Mirrors {
		m.counter(descMirrorRequests, mr.Requests, mr.URL)
		m.counter(descMirrorErrors, mr.Errors, mr.URL)
		up := 0.0
		if mr.Reachable {
			up = 1
		}
		m.gauge(descMirrorUp, up, mr.URL)
	}
	m.gauge(descMirrorsReachable, float64(MirrorsReachable(s.Mirrors)))
	m.histogram(descMirrorLatency, s.MirrorLatency)
}

// metricSink sends const metrics; a metric that cannot be built is sent
// as invalid, so the scrape says what is wrong.
type metricSink struct{ ch chan<- prometheus.Metric }

func (m *metricSink) gauge(d *prometheus.Desc, v float64, labels ...string) {
	m.ch <- constMetric(d, prometheus.GaugeValue, v, labels)
}

func (m *metricSink) counter(d *prometheus.Desc, v int64, labels ...string) {
	m.ch <- constMetric(d, prometheus.CounterValue, float64(v), labels)
}

func (m *metricSink) histogram(d *prometheus.Desc, h Histogram) {
	buckets := make(map[float64]uint64, len(h.Bounds))
	for i, b := range h.Bounds {
		if i < len(h.Counts) {
			buckets[b] = h.Counts[i]
		}
	}
	metric, err := prometheus.NewConstHistogram(d, h.Count, h.Sum, buckets)
	if err != nil {
		metric = prometheus.NewInvalidMetric(d, err)
	}
	m.ch <- metric
}

func constMetric(d *prometheus.Desc, t prometheus.ValueType, v float64, labels []string) prometheus.Metric {
	metric, err := prometheus.NewConstMetric(d, t, v, labels...)
	if err != nil {
		return prometheus.NewInvalidMetric(d, err)
	}
	return metric
}
