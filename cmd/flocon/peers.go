package main

import (
	"net/http"

	"github.com/spf13/cobra"

	"github.com/flocon/flocon/node"
)

// STUB: p2p implementation.
func newIDCmd() *cobra.Command    { return &cobra.Command{Use: "id"} }
func newPeersCmd() *cobra.Command { return &cobra.Command{Use: "peers"} }
func newBanCmd() *cobra.Command   { return &cobra.Command{Use: "ban"} }
func newUnbanCmd() *cobra.Command { return &cobra.Command{Use: "unban"} }
func newBansCmd() *cobra.Command  { return &cobra.Command{Use: "bans"} }

// registerP2PAdmin adds the peer routes (id, peers, bans) to the admin mux.
// STUB: p2p implementation.
func registerP2PAdmin(mux *http.ServeMux, n *node.Node) {}
