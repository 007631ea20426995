// Command httpbench is the HTTP client side of flocon's foundation benchmark
// (scripts/bench.sh): it times what curl alone cannot, namely several
// concurrent clients on one URL, a client joining a download in flight, and
// many files fetched in sequence over one keep-alive connection.
//
// Every subcommand prints one line of space-separated key=value pairs, so the
// shell script can read it with a tiny parser:
//
//	httpbench freeport
//	httpbench concurrent -n 8 -size 209715200 URL
//	httpbench join -after 33554432 -size 209715200 -joiners 5 URL
//	httpbench seq -base http://127.0.0.1:8080/bench/os/x86_64 -list files.txt
//	httpbench wait -timeout 30s URL
//
// Bodies are counted, never stored; a short body, a status other than 200 or
// a reused-connection failure is an error (exit status 1), so a broken server
// cannot produce a fast-looking number.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
)

// readBufSize is large enough that the client is never the bottleneck of a
// loopback transfer (io.Discard's 8 KiB pieces cost measurable CPU at GB/s).
const readBufSize = 256 << 10

var errBadResponse = errors.New("bad response")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "httpbench:", err)
		os.Exit(1)
	}
}

// run executes the subcommand in args, printing its result line to out.
func run(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: httpbench freeport|concurrent|join|seq|wait [flags] [URL]")
	}
	cmds := map[string]func(context.Context, []string, io.Writer) error{
		"freeport":   cmdFreePort,
		"concurrent": cmdConcurrent,
		"join":       cmdJoin,
		"seq":        cmdSeq,
		"wait":       cmdWait,
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		return fmt.Errorf("unknown subcommand %q", args[0])
	}
	return cmd(ctx, args[1:], out)
}

// newClient returns a client with its own transport, so each measurement
// starts without pooled connections; maxConns 1 pins it to one connection.
func newClient(maxConns int) *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:               nil,
		DisableCompression:  true,
		MaxConnsPerHost:     maxConns,
		MaxIdleConnsPerHost: max(maxConns, 1),
		ReadBufferSize:      readBufSize,
		ForceAttemptHTTP2:   false,
	}}
}

// fetchResult is what one GET measured; durations count from its start.
type fetchResult struct {
	Start     time.Time
	Header    time.Duration // response headers received
	FirstByte time.Duration // first body byte read
	Total     time.Duration // body read to the end
	Bytes     int64
	Reused    bool // the connection came from the pool
}

// fetch GETs url and reads the whole body into buf (nil: a new buffer),
// calling progress (if not nil) with the running byte count after every read.
func fetch(ctx context.Context, c *http.Client, url string, buf []byte, progress func(int64)) (fetchResult, error) {
	res := fetchResult{Start: time.Now()}
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { res.Reused = i.Reused }}
	resp, err := get(httptrace.WithClientTrace(ctx, trace), c, url, &res)
	if err != nil {
		return res, err
	}
	defer resp.Body.Close()
	if buf == nil {
		buf = make([]byte, readBufSize)
	}
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 && res.Bytes == 0 {
			res.FirstByte = time.Since(res.Start)
		}
		res.Bytes += int64(n)
		if n > 0 && progress != nil {
			progress(res.Bytes)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return res, fmt.Errorf("read %s after %d bytes: %w", url, res.Bytes, err)
		}
	}
	res.Total = time.Since(res.Start)
	if resp.ContentLength >= 0 && res.Bytes != resp.ContentLength {
		return res, fmt.Errorf("read %s: %d of %d bytes: %w", url, res.Bytes, resp.ContentLength, errBadResponse)
	}
	return res, nil
}

func checkSize(url string, got, want int64) error {
	if want > 0 && got != want {
		return fmt.Errorf("get %s: got %d bytes, want %d: %w", url, got, want, errBadResponse)
	}
	return nil
}

func secs(d time.Duration) string { return fmt.Sprintf("%.4f", d.Seconds()) }

func oneURL(fs *flag.FlagSet, args []string) (string, error) {
	if err := fs.Parse(args); err != nil {
		return "", err
	}
	if fs.NArg() != 1 {
		return "", fmt.Errorf("%s: want exactly one URL", fs.Name())
	}
	return fs.Arg(0), nil
}

// cmdFreePort prints a TCP port of 127.0.0.1 that was free a moment ago.
func cmdFreePort(_ context.Context, _ []string, out io.Writer) error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer l.Close()
	fmt.Fprintln(out, l.Addr().(*net.TCPAddr).Port)
	return nil
}

// cmdConcurrent starts n clients on one URL at the same instant and reports
// the wall time until the last one has the whole body.
func cmdConcurrent(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("concurrent", flag.ContinueOnError)
	n := fs.Int("n", 8, "number of concurrent clients")
	size := fs.Int64("size", 0, "expected body size (0: only Content-Length is checked)")
	url, err := oneURL(fs, args)
	if err != nil {
		return err
	}
	results := make([]fetchResult, *n)
	start := make(chan struct{})
	g, gctx := errgroup.WithContext(ctx)
	for i := range *n {
		g.Go(func() error {
			c := newClient(1)
			<-start
			r, err := fetch(gctx, c, url, nil, nil)
			results[i] = r
			if err != nil {
				return err
			}
			return checkSize(url, r.Bytes, *size)
		})
	}
	t0 := time.Now()
	close(start)
	if err := g.Wait(); err != nil {
		return err
	}
	wall := time.Since(t0)
	var slowest, fastest, maxFirst time.Duration = 0, time.Hour, 0
	for _, r := range results {
		slowest, fastest, maxFirst = max(slowest, r.Total), min(fastest, r.Total), max(maxFirst, r.FirstByte)
	}
	fmt.Fprintf(out, "clients=%d wall=%s fastest=%s slowest=%s maxfirstbyte=%s bytes=%d\n",
		*n, secs(wall), secs(fastest), secs(slowest), secs(maxFirst), results[0].Bytes)
	return nil
}

// cmdJoin starts a first client and, once it has read -after bytes, a
// second one; it reports the second client's time to first byte and whether
// the first client was still downloading at that moment (a real join).
// With -joiners N > 1, N-1 more clients join one after another (each once
// the one before has its first byte), read only their first bytes and
// hang up: firstbyte is then the median of the N, firstbytes lists them,
// and inflight holds only when every one joined in flight. One sample is
// at the mercy of the scheduler of a loaded machine.
func cmdJoin(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("join", flag.ContinueOnError)
	after := fs.Int64("after", 32<<20, "bytes the first client must have before the second starts")
	size := fs.Int64("size", 0, "expected body size (0: only Content-Length is checked)")
	joiners := fs.Int("joiners", 1, "clients joining the first one's download, one after another")
	url, err := oneURL(fs, args)
	if err != nil {
		return err
	}
	if *joiners < 1 {
		return errors.New("join: -joiners must be at least 1")
	}
	reached := make(chan struct{})
	var once sync.Once
	var first, second fetchResult
	var firstDone time.Time
	probes := make([]fetchResult, *joiners-1)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		r, err := fetch(gctx, newClient(1), url, nil, func(n int64) {
			if n >= *after {
				once.Do(func() { close(reached) })
			}
		})
		first, firstDone = r, time.Now()
		once.Do(func() { close(reached) }) // a body shorter than -after still releases the joiner
		if err != nil {
			return err
		}
		return checkSize(url, r.Bytes, *size)
	})
	secondFirst := make(chan struct{})
	var sfOnce sync.Once
	g.Go(func() error {
		select {
		case <-reached:
		case <-gctx.Done():
			return gctx.Err()
		}
		r, err := fetch(gctx, newClient(1), url, nil, func(int64) { sfOnce.Do(func() { close(secondFirst) }) })
		sfOnce.Do(func() { close(secondFirst) })
		second = r
		if err != nil {
			return err
		}
		return checkSize(url, r.Bytes, *size)
	})
	g.Go(func() error {
		select {
		case <-secondFirst:
		case <-gctx.Done():
			return gctx.Err()
		}
		for i := range probes {
			r, err := firstBytes(gctx, url)
			if err != nil {
				return err
			}
			probes[i] = r
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return err
	}
	all := append([]fetchResult{second}, probes...)
	joinedInFlight := true
	firsts := make([]time.Duration, len(all))
	list := make([]string, len(all))
	for i, r := range all {
		joinedInFlight = joinedInFlight && r.Start.Add(r.FirstByte).Before(firstDone)
		firsts[i], list[i] = r.FirstByte, secs(r.FirstByte)
	}
	slices.Sort(firsts)
	fmt.Fprintf(out, "firstbyte=%s firstbytes=%s header=%s total=%s inflight=%t leadertotal=%s bytes=%d\n",
		secs(firsts[(len(firsts)-1)/2]), strings.Join(list, ","), secs(second.Header), secs(second.Total),
		joinedInFlight, secs(first.Total), second.Bytes)
	return nil
}

// get sends a GET of url and records when its headers came in res; the
// response is a 200 (its body the caller's to close) or an error.
func get(ctx context.Context, c *http.Client, url string, res *fetchResult) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", url, err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", url, err)
	}
	res.Header = time.Since(res.Start)
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // keep the connection
		resp.Body.Close()
		return nil, fmt.Errorf("get %s: status %d: %w", url, resp.StatusCode, errBadResponse)
	}
	return resp, nil
}

// firstBytes GETs url on a new connection, reads until the first body
// bytes arrive and hangs up.
func firstBytes(ctx context.Context, url string) (fetchResult, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c := newClient(1)
	defer c.CloseIdleConnections()
	res := fetchResult{Start: time.Now()}
	resp, err := get(ctx, c, url, &res)
	if err != nil {
		return res, err
	}
	defer resp.Body.Close()
	n, err := readSome(resp.Body, make([]byte, readBufSize))
	if n == 0 {
		return res, fmt.Errorf("read %s: no body: %w", url, err)
	}
	res.FirstByte, res.Bytes = time.Since(res.Start), int64(n)
	return res, nil
}

// readSome reads until it gets at least one byte or an error.
func readSome(r io.Reader, b []byte) (int, error) {
	for {
		n, err := r.Read(b)
		if n > 0 || err != nil {
			return n, err
		}
	}
}

// cmdSeq fetches every file named in -list (one per line) from -base, one
// after the other over a single keep-alive connection. A failed file is
// counted and reported, and the run goes on: one bad answer should not hide
// the timing of the other files; the exit status still says it failed.
func cmdSeq(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("seq", flag.ContinueOnError)
	base := fs.String("base", "", "URL the file names are appended to")
	list := fs.String("list", "", "file with one file name per line")
	if err := fs.Parse(args); err != nil {
		return err
	}
	names, err := readLines(*list)
	if err != nil {
		return err
	}
	if *base == "" || len(names) == 0 {
		return errors.New("seq: need -base and a non-empty -list")
	}
	c := newClient(1)
	buf := make([]byte, readBufSize)
	var total int64
	var errs []error
	conns := 0
	t0 := time.Now()
	for _, name := range names {
		r, err := fetch(ctx, c, strings.TrimSuffix(*base, "/")+"/"+name, buf, nil)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			errs = append(errs, err)
		}
		total += r.Bytes
		if !r.Reused {
			conns++
		}
	}
	wall := time.Since(t0)
	fmt.Fprintf(out, "files=%d wall=%s bytes=%d conns=%d failed=%d\n", len(names), secs(wall), total, conns, len(errs))
	if conns != 1 {
		errs = append(errs, fmt.Errorf("seq: used %d connections, want 1 keep-alive connection: %w", conns, errBadResponse))
	}
	return errors.Join(errs...)
}

func readLines(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read list: %w", err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			lines = append(lines, l)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read list %s: %w", path, err)
	}
	return lines, nil
}

// cmdWait polls URL until it answers 200, for daemons that are starting.
func cmdWait(ctx context.Context, args []string, _ io.Writer) error {
	fs := flag.NewFlagSet("wait", flag.ContinueOnError)
	timeout := fs.Duration("timeout", 30*time.Second, "give up after this long")
	url, err := oneURL(fs, args)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	c := newClient(1)
	for {
		_, err := fetch(ctx, c, url, nil, nil)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait %s: %w (last: %w)", url, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
