package status

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"time"
)

//go:embed page.html
var pageHTML string

// page is parsed once; html/template escapes every value it prints.
var page = template.Must(template.New("status").Funcs(template.FuncMap{
	"bytes":     humanBytes,
	"duration":  humanDuration,
	"latency":   humanLatency,
	"percent":   percent,
	"short":     shortID,
	"reachable": MirrorsReachable,
	"seconds":   func(d time.Duration) int64 { return int64(d.Seconds()) },
	"add":       func(a, b int64) int64 { return a + b },
	"rate":      func(bps float64) string { return humanBytes(int64(bps)) + "/s" },
}).Parse(pageHTML))

func renderPage(w io.Writer, s *Snapshot) error { return page.Execute(w, s) }

// humanBytes is n in IEC units, as pacman prints sizes.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

func humanDuration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	default:
		return fmt.Sprintf("%dd%02dh", int(d.Hours()/24), int(d.Hours())%24)
	}
}

func humanLatency(d time.Duration) string {
	if d <= 0 {
		return "–"
	}
	return d.Round(10 * time.Microsecond).String()
}

// percent is part/whole as "42%" ("" when whole is not positive).
func percent(part, whole int64) string {
	if whole <= 0 {
		return ""
	}
	return fmt.Sprintf("%d%%", part*100/whole)
}

// shortID keeps the end of a long peer ID (the start is the same
// "12D3KooW" for every ed25519 key).
func shortID(id string) string {
	if len(id) <= 16 {
		return id
	}
	return "…" + id[len(id)-12:]
}
