package main

import (
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/flocon/flocon/verify"
)

func newStatusCmd(env clientEnv) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the running daemon's store, keyring, peers and mirrors (through its admin socket)",
		Args:  cobra.NoArgs,
	}
	c := addAdminFlags(cmd, env)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		var rep statusReport
		if err := c.call(cmd.Context(), http.MethodGet, "/v1/status", nil, &rep); err != nil {
			return err
		}
		return c.print(cmd.OutOrStdout(), rep, func(w io.Writer) { printStatus(w, rep, time.Now()) })
	}
	return cmd
}

// printStatus writes the report for people: a header, then one section
// each for the store, the keyring, the peers and the mirrors.
func printStatus(w io.Writer, rep statusReport, now time.Time) {
	row := func(k string, v any) { fmt.Fprintf(w, "  %s:\t%v\n", k, v) }
	fmt.Fprintf(w, "flocon %s, up %s\n", rep.Version, (time.Duration(rep.Uptime) * time.Second).String())
	row("gateway", "http://"+rep.Listen)
	row("data dir", rep.DataDir)
	row("admin socket", rep.AdminSocket)

	fmt.Fprintln(w, "store")
	if s := rep.Store; s != nil {
		row("packages", fmt.Sprintf("%d (%s)", s.Blobs, humanBytes(s.Bytes)))
		row("downloading", s.Inflight)
		row("repo databases", fmt.Sprintf("%d files (%s), %d packages listed", s.DBFiles, humanBytes(s.DBBytes), s.Entries))
		row("quota", quotaText(s.Bytes, s.MaxBytes))
		row("keep", keepText(s.KeepVersions))
	}

	fmt.Fprintln(w, "keyring")
	if k := rep.Keyring; k != nil {
		row("directory", k.Dir)
		row("loaded", fmt.Sprintf("%s (%s ago)", k.LoadedAt.Local().Format(time.DateTime), now.Sub(k.LoadedAt).Round(time.Second)))
		row("keys", keysText(k))
		if k.Missing != "" {
			row("WARNING", "no keyring: every signed package is refused ("+k.Missing+")")
		}
		for _, repo := range sortedKeys(k.Repos) {
			row("repo "+repo, fmt.Sprintf("%d keys", k.Repos[repo]))
		}
	}

	fmt.Fprintln(w, "peers")
	if !rep.P2P {
		row("p2p", "off (mirror only)")
	} else {
		row("peer ID", rep.PeerID)
		for _, a := range rep.P2PAddrs {
			row("address", a)
		}
		row("connected", fmt.Sprintf("%d (flocon peers)", rep.Peers.Connected))
	}
	row("banned", fmt.Sprintf("%d (flocon bans)", rep.Peers.Banned))
	if rep.Peers.Error != "" {
		row("error", rep.Peers.Error)
	}

	fmt.Fprintln(w, "mirrors")
	if rep.MirrorSource != "" {
		row("from", rep.MirrorSource)
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
}

func quotaText(used, max int64) string {
	if max <= 0 {
		return "none"
	}
	return fmt.Sprintf("%s of %s (%d%%)", humanBytes(used), humanBytes(max), used*100/max)
}

func keepText(n int) string {
	if n <= 0 {
		return "every version"
	}
	return fmt.Sprintf("%d newest versions per package", n)
}

// keysText is "N keys: a valid, b expired, ..." in a fixed order.
func keysText(k *keyringStatus) string {
	parts := []string{}
	for _, v := range []verify.KeyVerdict{verify.KeyValid, verify.KeyMarginal, verify.KeyExpired,
		verify.KeyRevoked, verify.KeyDisabled, verify.KeyUntrusted} {
		if n := k.Verdicts[v]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, v))
		}
	}
	if len(parts) == 0 {
		return fmt.Sprintf("%d", k.Keys)
	}
	return fmt.Sprintf("%d (%s)", k.Keys, strings.Join(parts, ", "))
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
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
