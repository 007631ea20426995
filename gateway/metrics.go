package gateway

import (
	"io"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Outcomes of a request, the label of the metrics and of the request log.
const (
	outcomeHit      = "hit"      // served from the store
	outcomeMiss     = "miss"     // started a download (or fetched a db) and streamed it
	outcomeJoin     = "join"     // streamed a download another request started
	outcomeStale    = "stale"    // db served from the store, upstream unreachable
	outcomeNotFound = "notfound" // 404
	outcomeRefused  = "refused"  // any other error, or a connection cut
	outcomeOther    = "other"    // healthz, metrics
)

type metrics struct {
	requests *prometheus.CounterVec
	bytes    *prometheus.CounterVec
	handler  http.Handler
}

func newMetrics(reg *prometheus.Registry) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "flocon", Subsystem: "gateway", Name: "requests_total",
			Help: "HTTP requests by file kind (pkg, sig, db, other) and outcome.",
		}, []string{"kind", "outcome"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "flocon", Subsystem: "gateway", Name: "response_bytes_total",
			Help: "Response body bytes by file kind and outcome.",
		}, []string{"kind", "outcome"}),
		handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.bytes} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// recorder sees what a handler answered, for the log line and the metrics.
type recorder struct {
	http.ResponseWriter
	status  int
	bytes   int64
	outcome string
	target  *target
}

func (rw *recorder) WriteHeader(code int) {
	if rw.status == 0 {
		rw.status = code
	}
	rw.ResponseWriter.WriteHeader(code)
}

func (rw *recorder) Write(b []byte) (int, error) {
	if rw.status == 0 {
		rw.status = http.StatusOK
	}
	n, err := rw.ResponseWriter.Write(b)
	rw.bytes += int64(n)
	return n, err
}

// ReadFrom keeps sendfile working behind the recorder (http.ServeContent
// copies an *os.File through it).
func (rw *recorder) ReadFrom(r io.Reader) (int64, error) {
	if rw.status == 0 {
		rw.status = http.StatusOK
	}
	n, err := io.Copy(rw.ResponseWriter, r)
	rw.bytes += n
	return n, err
}

// Unwrap lets http.ResponseController reach Flush.
func (rw *recorder) Unwrap() http.ResponseWriter { return rw.ResponseWriter }

// setOutcome labels the request being served through w.
func setOutcome(w http.ResponseWriter, outcome string) {
	if rw, ok := w.(*recorder); ok {
		rw.outcome = outcome
	}
}

// noteTarget attaches the validated target to the request log.
func noteTarget(w http.ResponseWriter, t *target) {
	if rw, ok := w.(*recorder); ok {
		rw.target = t
	}
}

// middleware refuses malformed paths before routing, then logs and counts
// every request in one place. A handler that cuts the connection
// (panic(http.ErrAbortHandler)) is counted as refused and the panic goes on.
func (g *Gateway) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rw := &recorder{ResponseWriter: w}
		defer func() {
			p := recover()
			if p != nil {
				rw.outcome = outcomeRefused
			}
			g.record(r, rw, time.Since(start))
			if p != nil {
				panic(p)
			}
		}()
		if err := checkRawPath(r); err != nil {
			g.fail(rw, r, nil, err)
			return
		}
		next.ServeHTTP(rw, r)
	})
}

func (g *Gateway) record(r *http.Request, rw *recorder, took time.Duration) {
	g.recordAs(r.Method, r.Context().Err() != nil, rw, took)
}

// recordAs counts and logs a request answered through rw (by net/http's
// path or the keep-alive one); gone: the client left before the end.
func (g *Gateway) recordAs(method string, gone bool, rw *recorder, took time.Duration) {
	kind, outcome := "other", rw.outcome
	if rw.target != nil {
		kind = rw.target.kind.String()
	}
	switch {
	case rw.status == http.StatusNotFound:
		outcome = outcomeNotFound
	case rw.status >= 400 && outcome != outcomeRefused:
		outcome = outcomeRefused
	case outcome == "":
		outcome = outcomeOther
	}
	g.served.request(kind, outcome, rw.bytes)
	g.metrics.requests.WithLabelValues(kind, outcome).Inc()
	g.metrics.bytes.WithLabelValues(kind, outcome).Add(float64(rw.bytes))
	args := []any{"method", method, "kind", kind, "status", rw.status, "outcome", outcome,
		"bytes", rw.bytes, "took", took}
	if t := rw.target; t != nil { // validated, so safe to log
		args = append(args, "repo", t.repo.Name, "arch", t.arch, "file", t.file)
	}
	if gone {
		args = append(args, "clientGone", true)
	}
	g.log.Info("request", args...)
}
