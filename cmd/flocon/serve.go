package main

import "github.com/spf13/cobra"

// STUB: gateway/cmd implementation (config file, env FLOCON_*, flags, wiring, admin socket).
func newServeCmd() *cobra.Command  { return &cobra.Command{Use: "serve"} }
func newStatusCmd() *cobra.Command { return &cobra.Command{Use: "status"} }
