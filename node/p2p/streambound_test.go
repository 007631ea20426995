package p2p

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/flocon/flocon/node/routing/routingtest"
)

// cancelBound is how long a question may take to end once its context is
// cancelled: a bound on a hang, not a speed (a reset is immediate; the
// deadlines it replaced were a minute, or none). Generous: the machine
// running the tests is shared and loaded.
const cancelBound = 10 * time.Second

// TestQuestionsEndWithTheirContext: a question to a peer that takes it and
// never answers ends when its context ends, whatever the stream's own
// deadline. Measured before: a daemon's shutdown waited on a provide to a
// peer killed with SIGKILL over QUIC (nothing tells the survivors), past
// the 15 s systemd and the e2e harness give it (bench-sources, kill -9).
func TestQuestionsEndWithTheirContext(t *testing.T) {
	t.Parallel()
	c := routingtest.CID(t, "a blob nobody answers for")
	cases := []struct {
		name   string
		protos []protocol.ID
		ask    func(ctx context.Context, a *testNode, silent *testNode) error
	}{
		{"provide", []protocol.ID{recordsProto}, func(ctx context.Context, a, silent *testNode) error {
			return a.s.dht.sendProvide(ctx, silent.id(), []recordKey{keyOf(c)})
		}},
		{"records get", []protocol.ID{recordsProto}, func(ctx context.Context, a, silent *testNode) error {
			_, _, err := a.s.dht.askRecords(ctx, silent.id(), keyOf(c))
			return err
		}},
		{"have", []protocol.ID{haveProtoHead, haveProto}, func(ctx context.Context, a, silent *testNode) error {
			_, err := a.s.queryHave(ctx, silent.id(), c)
			return err
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := startNode(t, newMemStore(t))
			silent := startNode(t, newMemStore(t))
			asked := make(chan struct{}, 1)
			release := make(chan struct{})
			var held sync.WaitGroup
			t.Cleanup(func() { close(release); held.Wait() }) // before the hosts close
			for _, p := range tc.protos {
				silent.s.h.SetStreamHandler(p, func(str network.Stream) {
					held.Add(1)
					defer held.Done()
					select {
					case asked <- struct{}{}:
					default:
					}
					<-release // takes the question, never answers
					_ = str.Reset()
				})
			}
			if err := a.s.h.Connect(t.Context(), silent.addrInfo()); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() { done <- tc.ask(ctx, a, silent) }()
			<-asked
			cancel()
			select {
			case err := <-done:
				if err == nil {
					t.Fatalf("%s: no error from a peer that never answered", tc.name)
				}
			case <-time.After(cancelBound):
				t.Fatalf("%s: still waiting %s after its context was cancelled", tc.name, cancelBound)
			}
		})
	}
}
