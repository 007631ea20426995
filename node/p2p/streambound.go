package p2p

import (
	"context"

	"github.com/libp2p/go-libp2p/core/network"
)

// boundTo ties a question-and-answer stream to ctx: the stream's deadline
// is ctx's, and ctx ending (a cancelled lookup, the node's shutdown) resets
// it at once. A deadline alone does not do: a peer killed without a word
// (over QUIC nothing tells the survivors) leaves a read waiting for the
// deadline, a minute for a provide, and the daemon's shutdown waited on
// that read past systemd's and the e2e harness's 15 s. The returned func
// unties the stream; call it before the stream's Close.
func boundTo(ctx context.Context, str network.Stream) (untie func() bool) {
	if d, ok := ctx.Deadline(); ok {
		_ = str.SetDeadline(d)
	}
	return context.AfterFunc(ctx, func() { _ = str.Reset() })
}
