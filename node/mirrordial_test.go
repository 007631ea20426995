package node

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
)

// A mirror dial that gets no answer is joined by a second one after
// dialHedgeAfter, which wins; the first is canceled. A refusal before the
// hedge fails at once, without a second dial.
func TestDialHedged(t *testing.T) {
	t.Run("lost SYN", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var dials atomic.Int32
			firstCanceled := make(chan struct{})
			dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
				if dials.Add(1) == 1 { // its SYN is lost: no answer until canceled
					<-ctx.Done()
					close(firstCanceled)
					return nil, ctx.Err()
				}
				c, _ := net.Pipe()
				return c, nil
			}
			start := time.Now()
			c, err := dialHedged(t.Context(), dial, "tcp", "mirror:80", dialHedgeAfter)
			if err != nil {
				t.Fatalf("dialHedged: %v", err)
			}
			defer c.Close()
			if took := time.Since(start); took != dialHedgeAfter {
				t.Errorf("connected after %v, want %v", took, dialHedgeAfter)
			}
			<-firstCanceled
			if n := dials.Load(); n != 2 {
				t.Errorf("%d dials, want 2", n)
			}
		})
	})
	t.Run("refused", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var dials atomic.Int32
			dial := func(context.Context, string, string) (net.Conn, error) {
				dials.Add(1)
				return nil, syscall.ECONNREFUSED
			}
			start := time.Now()
			_, err := dialHedged(t.Context(), dial, "tcp", "mirror:80", dialHedgeAfter)
			if !errors.Is(err, syscall.ECONNREFUSED) || time.Since(start) != 0 || dials.Load() != 1 {
				t.Errorf("err %v after %v, %d dials; want ECONNREFUSED at once, 1 dial", err, time.Since(start), dials.Load())
			}
		})
	})
}
