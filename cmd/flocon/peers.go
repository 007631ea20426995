package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/flocon/flocon/node"
)

// p2pAdmin is what the peer routes need from the node.
type p2pAdmin interface {
	ID() (node.Identity, error)
	Peers() ([]node.PeerInfo, error)
	Ban(peerID, reason string) error
	Unban(peerID string) error
	Bans() ([]node.Ban, error)
}

var _ p2pAdmin = (*node.Node)(nil)

// registerP2PRoutes adds the peer routes (id, peers, bans) to the admin mux.
func registerP2PRoutes(mux *http.ServeMux, n p2pAdmin) {
	mux.HandleFunc("GET /v1/id", func(w http.ResponseWriter, _ *http.Request) {
		id, err := n.ID()
		writeAdmin(w, id, err)
	})
	mux.HandleFunc("GET /v1/peers", func(w http.ResponseWriter, _ *http.Request) {
		peers, err := n.Peers()
		writeAdmin(w, peers, err)
	})
	mux.HandleFunc("GET /v1/bans", func(w http.ResponseWriter, _ *http.Request) {
		bans, err := n.Bans()
		writeAdmin(w, bans, err)
	})
	mux.HandleFunc("POST /v1/bans", func(w http.ResponseWriter, r *http.Request) {
		var req banRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil {
			http.Error(w, "body must be JSON {peer, reason}", http.StatusBadRequest)
			return
		}
		writeAdmin(w, map[string]string{"banned": req.Peer}, n.Ban(req.Peer, req.Reason))
	})
	mux.HandleFunc("DELETE /v1/bans/{peer}", func(w http.ResponseWriter, r *http.Request) {
		p := r.PathValue("peer")
		writeAdmin(w, map[string]string{"unbanned": p}, n.Unban(p))
	})
}

// adminMessage is err in the words `flocon` prints, with what to do next.
func adminMessage(err error) string {
	switch {
	case errors.Is(err, node.ErrAlreadyBanned):
		return err.Error() + " (the first ban is kept: `flocon unban` it first to ban it for another reason)"
	case errors.Is(err, node.ErrP2PDisabled):
		return err.Error() + " (the daemon runs without peer-to-peer, or is still starting it)"
	case errors.Is(err, node.ErrBadPeerID):
		return err.Error() + " (a peer ID looks like 12D3KooW…; `flocon peers` and `flocon bans` list them)"
	}
	return err.Error()
}

type banRequest struct {
	Peer   string `json:"peer"`
	Reason string `json:"reason"`
}

// writeAdmin answers v as JSON, or err with its status.
func writeAdmin(w http.ResponseWriter, v any, err error) {
	if err != nil {
		code := http.StatusInternalServerError
		switch {
		case errors.Is(err, node.ErrBadPeerID), errors.Is(err, node.ErrSelfBan):
			code = http.StatusBadRequest
		case errors.Is(err, node.ErrNotBanned):
			code = http.StatusNotFound
		case errors.Is(err, node.ErrAlreadyBanned):
			code = http.StatusConflict
		case errors.Is(err, node.ErrP2PDisabled):
			code = http.StatusServiceUnavailable
		}
		http.Error(w, adminMessage(err), code)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func newIDCmd(env clientEnv) *cobra.Command {
	cmd := &cobra.Command{Use: "id", Short: "Show this daemon's peer ID and addresses", Args: cobra.NoArgs}
	c := addAdminFlags(cmd, env)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		var id node.Identity
		if err := c.call(cmd.Context(), http.MethodGet, "/v1/id", nil, &id); err != nil {
			return err
		}
		return c.print(cmd.OutOrStdout(), id, func(w io.Writer) {
			fmt.Fprintf(w, "peer ID\t%s\n", id.PeerID)
			for _, a := range id.Addrs {
				fmt.Fprintf(w, "address\t%s\n", a)
			}
			fmt.Fprintf(w, "announced\t%d\n", id.Announced)
			fmt.Fprintf(w, "shared files\t%d\n", id.Shared)
		})
	}
	return cmd
}

func newPeersCmd(env clientEnv) *cobra.Command {
	cmd := &cobra.Command{Use: "peers", Short: "List connected peers", Args: cobra.NoArgs}
	c := addAdminFlags(cmd, env)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		var peers []node.PeerInfo
		if err := c.call(cmd.Context(), http.MethodGet, "/v1/peers", nil, &peers); err != nil {
			return err
		}
		return c.print(cmd.OutOrStdout(), peers, func(w io.Writer) {
			fmt.Fprintln(w, "PEER\tSITE\tLATENCY\tBANDWIDTH\tSCORE\tSENT\tRECEIVED\tSERVED\tOK/FAIL\tADDRESS")
			for _, p := range peers {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d/%d\t%s\n", p.PeerID, p.Site, p.Latency.Round(10*time.Microsecond),
					peerBandwidth(p), peerScore(p), humanBytes(p.BytesSent), humanBytes(p.BytesRecv), p.BlobsServed,
					p.Successes, p.Failures, strings.Join(p.Addrs, ","))
			}
		})
	}
	return cmd
}

// peerBandwidth is the measured download bandwidth, or "-" before any.
func peerBandwidth(p node.PeerInfo) string {
	if p.Bandwidth <= 0 {
		return "-"
	}
	return humanBytes(int64(p.Bandwidth)) + "/s"
}

// peerScore is the rank score in milliseconds, marked when demoted.
func peerScore(p node.PeerInfo) string {
	s := fmt.Sprintf("%.1f", p.Score/float64(time.Millisecond))
	if !p.DemotedUntil.IsZero() {
		s += " (demoted)"
	}
	return s
}

func newBanCmd(env clientEnv) *cobra.Command {
	cmd := &cobra.Command{Use: "ban PEER", Short: "Ban a peer (persisted; its connections are closed)", Args: needArgs("PEER")}
	c := addAdminFlags(cmd, env)
	reason := cmd.Flags().String("reason", "", "why (shown by flocon bans)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		body := banRequest{Peer: args[0], Reason: *reason}
		var out map[string]string
		if err := c.call(cmd.Context(), http.MethodPost, "/v1/bans", body, &out); err != nil {
			return err
		}
		return c.print(cmd.OutOrStdout(), out, func(w io.Writer) { fmt.Fprintf(w, "banned\t%s\n", args[0]) })
	}
	return cmd
}

func newUnbanCmd(env clientEnv) *cobra.Command {
	cmd := &cobra.Command{Use: "unban PEER", Short: "Lift a peer's ban", Args: needArgs("PEER")}
	c := addAdminFlags(cmd, env)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		var out map[string]string
		if err := c.call(cmd.Context(), http.MethodDelete, "/v1/bans/"+url.PathEscape(args[0]), nil, &out); err != nil {
			return err
		}
		return c.print(cmd.OutOrStdout(), out, func(w io.Writer) { fmt.Fprintf(w, "unbanned\t%s\n", args[0]) })
	}
	return cmd
}

func newBansCmd(env clientEnv) *cobra.Command {
	cmd := &cobra.Command{Use: "bans", Short: "List banned peers with reason and evidence", Args: cobra.NoArgs}
	c := addAdminFlags(cmd, env)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		var bans []node.Ban
		if err := c.call(cmd.Context(), http.MethodGet, "/v1/bans", nil, &bans); err != nil {
			return err
		}
		return c.print(cmd.OutOrStdout(), bans, func(w io.Writer) {
			fmt.Fprintln(w, "PEER\tSINCE\tREASON\tCID\tEVIDENCE")
			for _, b := range bans {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", b.Peer, b.Time.Format(time.RFC3339), b.Reason,
					orDash(b.Evidence.CID), evidenceText(b.Evidence))
			}
		})
	}
	return cmd
}

// print writes v as JSON with --json, else the table.
func (c *adminClient) print(out io.Writer, v any, table func(io.Writer)) error {
	if c.json {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	table(tw)
	return tw.Flush()
}

func evidenceText(e node.Evidence) string {
	var parts []string
	if e.WantSHA256 != "" || e.GotSHA256 != "" {
		parts = append(parts, fmt.Sprintf("want sha256 %s got %s", orDash(e.WantSHA256), orDash(e.GotSHA256)))
	}
	if e.Detail != "" {
		parts = append(parts, e.Detail)
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, "; ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
