// Command flocon is a peer-to-peer, content-addressed cache of Arch Linux
// packages: `flocon serve` runs the daemon pacman uses as its first mirror;
// the other subcommands inspect and steer it through its admin socket.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "flocon:", err)
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "flocon",
		Short:         "Peer-to-peer, verified cache of Arch Linux packages",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(
		newServeCmd(), newStatusCmd(), // serve.go, status.go
		newVerifyCmd(), newKeysCmd(), // verify.go
		newIDCmd(), newPeersCmd(), newBanCmd(), newUnbanCmd(), newBansCmd(), // peers.go
	)
	return root
}
