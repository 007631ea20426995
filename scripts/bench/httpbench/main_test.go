package main

import (
	"bytes"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fields parses a result line of key=value pairs.
func fields(t *testing.T, line string) map[string]string {
	t.Helper()
	kv := map[string]string{}
	for _, f := range strings.Fields(line) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			t.Fatalf("field %q of %q is not key=value", f, line)
		}
		kv[k] = v
	}
	return kv
}

// fileServer serves body under any path, except the names in fail, which
// get a 502 with a short error body (like flocon refusing a download).
func fileServer(t *testing.T, body []byte, fail ...string) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, f := range fail {
			if strings.HasSuffix(r.URL.Path, "/"+f) {
				http.Error(w, "refused", http.StatusBadGateway)
				return
			}
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = w.Write(body)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &conns
}

func writeList(t *testing.T, names ...string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "list.txt")
	if err := os.WriteFile(p, []byte(strings.Join(names, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSeq(t *testing.T) {
	t.Parallel()
	body := bytes.Repeat([]byte("x"), 50<<10)
	tests := []struct {
		name       string
		files      []string
		fail       []string
		wantFailed string
		wantBytes  int
		wantErr    bool
	}{
		{name: "all served", files: []string{"a", "b", "c"}, wantFailed: "0", wantBytes: 3 * len(body)},
		{name: "one refused, the rest still timed", files: []string{"a", "bad", "c"}, fail: []string{"bad"},
			wantFailed: "1", wantBytes: 2 * len(body), wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv, conns := fileServer(t, body, tc.fail...)
			var out bytes.Buffer
			err := run(t.Context(), []string{"seq", "-base", srv.URL + "/repo/", "-list", writeList(t, tc.files...)}, &out)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %t", err, tc.wantErr)
			}
			kv := fields(t, out.String())
			if kv["files"] != strconv.Itoa(len(tc.files)) || kv["failed"] != tc.wantFailed ||
				kv["bytes"] != strconv.Itoa(tc.wantBytes) || kv["conns"] != "1" {
				t.Errorf("result %q: want files=%d failed=%s bytes=%d conns=1", out.String(), len(tc.files), tc.wantFailed, tc.wantBytes)
			}
			if got := conns.Load(); got != 1 {
				t.Errorf("server saw %d connections, want 1 keep-alive connection", got)
			}
		})
	}
}

func TestConcurrent(t *testing.T) {
	t.Parallel()
	body := bytes.Repeat([]byte("y"), 1<<20)
	tests := []struct {
		name    string
		size    int
		wantErr bool
	}{
		{name: "every client gets the whole body", size: len(body)},
		{name: "a size other than expected fails", size: len(body) + 1, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv, conns := fileServer(t, body)
			var out bytes.Buffer
			err := run(t.Context(), []string{"concurrent", "-n", "4", "-size", strconv.Itoa(tc.size), srv.URL + "/f"}, &out)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %t", err, tc.wantErr)
			}
			if tc.wantErr {
				if !errors.Is(err, errBadResponse) {
					t.Errorf("err = %v, want errBadResponse", err)
				}
				return
			}
			kv := fields(t, out.String())
			if kv["clients"] != "4" || kv["bytes"] != strconv.Itoa(len(body)) {
				t.Errorf("result %q: want clients=4 bytes=%d", out.String(), len(body))
			}
			if got := conns.Load(); got != 4 {
				t.Errorf("server saw %d connections, want one per client (4)", got)
			}
		})
	}
}

func TestConcurrentShortBody(t *testing.T) {
	t.Parallel()
	// Content-Length promises more than is sent: a truncated transfer must
	// fail, never count as a fast one.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		_, _ = w.Write(make([]byte, 10))
		panic(http.ErrAbortHandler)
	}))
	t.Cleanup(srv.Close)
	var out bytes.Buffer
	if err := run(t.Context(), []string{"concurrent", "-n", "2", srv.URL + "/f"}, &out); err == nil {
		t.Fatalf("truncated body accepted: %q", out.String())
	}
}

// joinServer serves one body of size bytes to a first client and joiners:
// the first gets its first MiB, then waits until every joiner had its
// first 64 KiB flushed. The body is much larger than loopback socket
// buffers, so each joiner has read bytes before the first client can
// finish: a real join.
func joinServer(t *testing.T, size, joiners int) *httptest.Server {
	t.Helper()
	body := bytes.Repeat([]byte("z"), size)
	joined := make(chan struct{}, joiners)
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(size))
		if n.Add(1) > 1 {
			_, _ = w.Write(body[:64<<10])
			http.NewResponseController(w).Flush()
			joined <- struct{}{}
			_, _ = w.Write(body[64<<10:]) // a probe hangs up before the end
			return
		}
		_, _ = w.Write(body[:1<<20])
		http.NewResponseController(w).Flush()
		for range joiners {
			select {
			case <-joined:
			case <-r.Context().Done():
				return
			}
		}
		_, _ = w.Write(body[1<<20:])
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestJoin(t *testing.T) {
	t.Parallel()
	const size = 32 << 20
	tests := []struct {
		name         string
		after        int
		joiners      int
		wantInflight string
	}{
		{name: "joins while the first download runs", after: 1 << 20, joiners: 1, wantInflight: "true"},
		{name: "three join one after another", after: 1 << 20, joiners: 3, wantInflight: "true"},
		// -after beyond the body: the second client starts once the first
		// is done, and must not be reported as a join.
		{name: "starts after the first one finished", after: size + 1, joiners: 1, wantInflight: "false"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := joinServer(t, size, tc.joiners)
			if tc.wantInflight == "false" {
				srv = httptestPlain(t, size)
			}
			var out bytes.Buffer
			err := run(t.Context(), []string{"join", "-after", strconv.Itoa(tc.after), "-size", strconv.Itoa(size),
				"-joiners", strconv.Itoa(tc.joiners), srv.URL + "/f"}, &out)
			if err != nil {
				t.Fatal(err)
			}
			kv := fields(t, out.String())
			if kv["inflight"] != tc.wantInflight || kv["bytes"] != strconv.Itoa(size) ||
				len(strings.Split(kv["firstbytes"], ",")) != tc.joiners {
				t.Errorf("result %q: want inflight=%s bytes=%d and %d first bytes", out.String(),
					tc.wantInflight, size, tc.joiners)
			}
		})
	}
}

// httptestPlain serves size bytes at once to every client.
func httptestPlain(t *testing.T, size int) *httptest.Server {
	t.Helper()
	srv, _ := fileServer(t, bytes.Repeat([]byte("z"), size))
	return srv
}

func TestWaitAndFreePort(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := run(t.Context(), []string{"freeport"}, &out); err != nil {
		t.Fatal(err)
	}
	port := strings.TrimSpace(out.String())
	if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 {
		t.Fatalf("freeport printed %q", port)
	}
	srv, _ := fileServer(t, []byte("ok"))
	if err := run(t.Context(), []string{"wait", "-timeout", "5s", srv.URL + "/healthz"}, &out); err != nil {
		t.Fatalf("wait on a live server: %v", err)
	}
	// Nothing listens on the port freeport found free a moment ago.
	dead := "http://127.0.0.1:" + port + "/healthz"
	if err := run(t.Context(), []string{"wait", "-timeout", "200ms", dead}, &out); err == nil {
		t.Fatal("wait on a dead port succeeded")
	}
}

func TestUnknownSubcommand(t *testing.T) {
	t.Parallel()
	if err := run(t.Context(), []string{"nope"}, &bytes.Buffer{}); err == nil {
		t.Fatal("unknown subcommand accepted")
	}
}
