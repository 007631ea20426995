package status

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// gatewayMetrics are the series the gateway registers itself (gateway/metrics.go).
var gatewayMetrics = []string{"flocon_gateway_requests_total", "flocon_gateway_response_bytes_total"}

// TestDashboardNamesRealMetrics: every flocon_ series the Grafana dashboard
// queries is one flocon exports, so a renamed metric breaks this test, not
// the operator's board.
func TestDashboardNamesRealMetrics(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard is not valid JSON: %v", err)
	}
	known := map[string]bool{}
	for _, n := range gatewayMetrics {
		known[n] = true
	}
	descs := make(chan *prometheus.Desc, 64)
	(&collector{}).Describe(descs)
	close(descs)
	fqName := regexp.MustCompile(`fqName: "([a-z0-9_]+)"`)
	for d := range descs {
		name := fqName.FindStringSubmatch(d.String())[1]
		known[name] = true
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			known[name+suffix] = true
		}
	}
	series := regexp.MustCompile(`flocon_[a-z0-9_]+`)
	queried := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, name := range series.FindAllString(tg.Expr, -1) {
				queried++
				if !known[name] {
					t.Errorf("panel %q queries %s, which flocon does not export", p.Title, name)
				}
			}
		}
	}
	if queried == 0 || !strings.Contains(string(raw), "flocon_mirrors_reachable") {
		t.Error("the dashboard queries no flocon metric")
	}
}
