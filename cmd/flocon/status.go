package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/flocon/flocon/verify"
)

func newStatusCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the running daemon's status (through its admin socket)",
		Args:  cobra.NoArgs,
	}
	c := addAdminFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		var raw json.RawMessage
		if err := c.call(cmd.Context(), http.MethodGet, "/v1/status", nil, &raw); err != nil {
			return err
		}
		if c.json {
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "%s\n", raw)
			return err
		}
		var rep statusReport
		if err := json.Unmarshal(raw, &rep); err != nil {
			return fmt.Errorf("status: decode: %w", err)
		}
		return printStatus(cmd.OutOrStdout(), rep)
	}
	return cmd
}

func printStatus(w io.Writer, rep statusReport) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k string, v any) { fmt.Fprintf(tw, "%s:\t%v\n", k, v) }
	row("version", rep.Version)
	row("gateway", "http://"+rep.Listen)
	row("data dir", rep.DataDir)
	row("admin socket", rep.AdminSocket)
	row("uptime", (time.Duration(rep.Uptime) * time.Second).String())
	if rep.P2P {
		row("peer ID", rep.PeerID)
		for _, a := range rep.P2PAddrs {
			row("  address", a)
		}
	} else {
		row("p2p", "off (mirror only)")
	}
	if len(rep.Store) > 0 {
		var stats map[string]any
		if err := json.Unmarshal(rep.Store, &stats); err == nil {
			keys := make([]string, 0, len(stats))
			for k := range stats {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				row("store "+k, stats[k])
			}
		}
	}
	for _, m := range rep.Mirrors {
		row("mirror", m)
	}
	for _, r := range rep.Repos {
		desc := r.SigLevel
		if len(r.Arches) > 0 {
			desc += " arches=" + strings.Join(r.Arches, ",")
		}
		if len(r.Mirrors) > 0 {
			desc += " mirrors=" + strings.Join(r.Mirrors, " ")
		}
		row("repo "+r.Name, desc)
	}
	return tw.Flush()
}

func sigLevelName(p verify.SigPolicy) string {
	switch p {
	case verify.SigOptional:
		return "optional"
	case verify.SigNever:
		return "never"
	default:
		return "required"
	}
}
