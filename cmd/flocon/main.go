// Command flocon is a peer-to-peer, content-addressed cache of Arch Linux
// packages: `flocon serve` runs the daemon pacman uses as its first mirror;
// the other subcommands inspect and steer it through its admin socket.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	_ "github.com/flocon/flocon/cmd/flocon/internal/exeinit" // first: see its doc
	"github.com/flocon/flocon/node"
)

func main() {
	node.Version = version()
	root := newRootCmd(osEnv)
	if err := root.Execute(); err != nil {
		reportError(os.Stderr, err)
		os.Exit(1)
	}
}

// reportError prints err; a usage mistake also gets the command's usage.
func reportError(w io.Writer, err error) {
	fmt.Fprintln(w, "flocon:", err)
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(w, "\n%s", ue.cmd.UsageString())
	}
}

func newRootCmd(env clientEnv) *cobra.Command {
	root := &cobra.Command{
		Use:           "flocon",
		Short:         "Peer-to-peer, verified cache of Arch Linux packages",
		Version:       node.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetVersionTemplate("flocon {{.Version}}\n")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error { return &usageError{cmd: cmd, err: err} })
	root.AddCommand(
		newServeCmd(), newStatusCmd(env), // serve.go, status.go
		newVerifyCmd(), newKeysCmd(), // verify.go
		newIDCmd(env), newPeersCmd(env), newBanCmd(env), newUnbanCmd(env), newBansCmd(env), // peers.go
	)
	for _, c := range root.Commands() {
		c.Args = withUsage(c.Args)
	}
	return root
}
