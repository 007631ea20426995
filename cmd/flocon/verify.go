package main

import "github.com/spf13/cobra"

// STUB: verify implementation.
func newVerifyCmd() *cobra.Command { return &cobra.Command{Use: "verify"} }
func newKeysCmd() *cobra.Command   { return &cobra.Command{Use: "keys"} }
