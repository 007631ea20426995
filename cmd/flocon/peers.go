package main

import "github.com/spf13/cobra"

// STUB: p2p implementation.
func newIDCmd() *cobra.Command    { return &cobra.Command{Use: "id"} }
func newPeersCmd() *cobra.Command { return &cobra.Command{Use: "peers"} }
func newBanCmd() *cobra.Command   { return &cobra.Command{Use: "ban"} }
func newUnbanCmd() *cobra.Command { return &cobra.Command{Use: "unban"} }
func newBansCmd() *cobra.Command  { return &cobra.Command{Use: "bans"} }
