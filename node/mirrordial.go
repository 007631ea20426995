package node

import (
	"context"
	"net"
	"time"
)

// dialFunc dials as net.Dialer.DialContext.
type dialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// hedgedDial is dial with dialHedged's second try after dialHedgeAfter.
func hedgedDial(dial dialFunc) dialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		return dialHedged(ctx, dial, network, addr, dialHedgeAfter)
	}
}

// dialHedgeAfter is how long a mirror dial waits alone before a second one
// starts beside it.
const dialHedgeAfter = time.Second

// dialHedged dials addr and, when no connection came within after, dials
// again beside the first and keeps whichever connects first. The second
// socket has a new source port: a SYN whose flow a NAT router's connection
// tracking lost (seen in e2e TestNATSites: every retransmission of one
// connection unanswered for the whole 5 s dial timeout, while the other
// machines behind the same router reached the mirror) then costs a second,
// not a failed request. A dial that fails before the second starts (a
// refusal) fails at once. Every mirror connection dials this way, through
// net/http (https, proxies) and plainTransport alike (newHTTPClient).
// A mirror that answers neither dial fails after dialHedgeAfter plus the
// dialer's timeout.
func dialHedged(ctx context.Context, dial dialFunc, network, addr string, after time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the losing dial
	type result struct {
		conn net.Conn
		err  error
	}
	results := make(chan result, 2)
	try := func() {
		c, err := dial(ctx, network, addr)
		results <- result{c, err}
	}
	go try()
	hedge := time.NewTimer(after)
	defer hedge.Stop()
	running, hedged := 1, false
	var firstErr error
	for {
		select {
		case <-hedge.C:
			hedged = true
			running++
			go try()
		case r := <-results:
			running--
			if r.err == nil {
				if running > 0 { // the other may still connect: close it
					go func() {
						if late := <-results; late.conn != nil {
							_ = late.conn.Close()
						}
					}()
				}
				return r.conn, nil
			}
			if firstErr == nil {
				firstErr = r.err
			}
			if !hedged || running == 0 {
				return nil, firstErr
			}
		}
	}
}
