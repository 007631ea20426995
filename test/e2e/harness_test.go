package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// Environment knobs of the e2e suite.
const (
	// envEnable set to "0" skips every e2e test.
	envEnable = "FLOCON_E2E"
	// envKeep set to "1" keeps the temp dirs of the tests (their paths are logged).
	envKeep = "TEST_E2E_KEEP"
	// envBigMB overrides the size of the big fixture package (MiB, default 50).
	envBigMB = "FLOCON_E2E_BIG_MB"
)

// suite is what TestMain prepares once per `go test` run.
var suite struct {
	moduleRoot string // the flocon module (holds go.mod)
	workDir    string // temp dir of the run: the built binary and shared state
	binary     string // the built flocon binary
	buildErr   error  // why the binary could not be built
}

func TestMain(m *testing.M) {
	code := runMain(m)
	os.Exit(code)
}

// runMain builds the binary once, runs the tests, cleans up, and checks
// that no goroutine outlives them.
func runMain(m *testing.M) int {
	if !e2eEnabled() {
		return m.Run()
	}
	var err error
	if suite.moduleRoot, err = findModuleRoot(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	if suite.workDir, err = os.MkdirTemp("", "flocon-e2e-"); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	suite.binary = filepath.Join(suite.workDir, "flocon")
	suite.buildErr = buildBinary(suite.moduleRoot, suite.binary)
	code := m.Run()
	shutdownPacmanTemplates()
	if os.Getenv(envKeep) == "1" {
		fmt.Fprintln(os.Stderr, "e2e: kept", suite.workDir)
	} else {
		_ = os.RemoveAll(suite.workDir)
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: goroutines leaked:", err)
			code = 1
		}
	}
	return code
}

func e2eEnabled() bool { return os.Getenv(envEnable) != "0" }

// requireE2E skips the test when the suite is switched off (FLOCON_E2E=0).
// Every e2e test calls it first, usually through a helper.
func requireE2E(t testing.TB) {
	t.Helper()
	if !e2eEnabled() {
		t.Skip("e2e tests disabled by FLOCON_E2E=0")
	}
}

// Binary returns the flocon binary built by TestMain; the test fails when the
// build failed (the build output is in the message).
func Binary(t testing.TB) string {
	t.Helper()
	requireE2E(t)
	if suite.buildErr != nil {
		t.Fatalf("flocon binary unavailable: %v", suite.buildErr)
	}
	return suite.binary
}

func findModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the test directory")
		}
		dir = parent
	}
}

func buildBinary(root, out string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/flocon")
	cmd.Dir = root
	output, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go build ./cmd/flocon: %w\n%s", err, output)
	}
	return nil
}

// TempDir is t.TempDir that survives the test when TEST_E2E_KEEP=1, and that
// stays short (unix socket and gpg-agent paths are limited to ~107 bytes).
func TempDir(t testing.TB, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "fe2e-"+prefix+"-")
	if err != nil {
		t.Fatalf("temp dir: %v", err)
	}
	t.Cleanup(func() {
		if os.Getenv(envKeep) == "1" {
			t.Logf("kept %s (TEST_E2E_KEEP=1)", dir)
			return
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Logf("remove %s: %v", dir, err)
		}
	})
	return dir
}

// FreeAddr returns a 127.0.0.1 address with a port that was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatalf("free port: %v", err)
	}
	return addr
}

// DeadMirror returns a mirror URL template whose port refuses connections.
func DeadMirror(t testing.TB) string {
	t.Helper()
	return "http://" + FreeAddr(t) + "/$repo/os/$arch"
}

// HTTPClient is a client without a global connection pool: its idle
// connections are closed when the test ends (no goroutine outlives it).
func HTTPClient(t testing.TB) *http.Client {
	t.Helper()
	tr := &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 16}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 2 * time.Minute}
}

// Response is a fully read HTTP answer. Err is set when the body was cut
// (the bytes read before the cut are in Body).
type Response struct {
	Status int
	Header http.Header
	Body   []byte
	Err    error
}

// Get does a GET with optional headers (pairs of name, value) and reads the
// whole body. A transport error before the headers fails the test.
func Get(t testing.TB, c *http.Client, url string, headers ...string) Response {
	t.Helper()
	resp, err := do(t.Context(), c, url, headers...)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp
}

func do(ctx context.Context, c *http.Client, url string, headers ...string) (Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return Response{}, err
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		return Response{}, err
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, err = io.Copy(&buf, resp.Body)
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: buf.Bytes(), Err: err}, nil
}

// SHA256Hex is the hex sha256 of b.
func SHA256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// FileSHA256 is the hex sha256 of a file ("" and the error when unreadable).
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Eventually polls cond every 50ms until it is true or the timeout passes.
// It is for waiting on another process, never for timing assertions.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		select {
		case <-t.Context().Done():
			t.Fatalf("test ended while waiting for %s", what)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// requireTools skips the test when one of the commands is not installed.
func requireTools(t testing.TB, tools ...string) {
	t.Helper()
	var missing []string
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) > 0 {
		skipUnlessRequired(t, "e2e needs %s (Debian: pacman-package-manager makepkg gnupg zstd libarchive-tools fakeroot)",
			strings.Join(missing, ", "))
	}
}

// skipUnlessRequired skips the test for a missing prerequisite, or fails it
// when FLOCON_E2E_REQUIRE=1 (CI sets it: there every e2e test must run).
func skipUnlessRequired(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("FLOCON_E2E_REQUIRE") == "1" {
		t.Fatalf("FLOCON_E2E_REQUIRE=1: "+format, args...)
	}
	t.Skipf(format, args...)
}

// Hashed is an HTTP answer whose body was hashed while streaming (for big
// files: nothing is kept in memory). Err is set when the body was cut.
type Hashed struct {
	Status int
	Header http.Header
	N      int64  // body bytes received
	SHA256 string // of the bytes received
	Err    error
}

// Complete reports whether the answer is a 200 with exactly the bytes of sum.
func (h Hashed) Complete(size int64, sum string) bool {
	return h.Status == http.StatusOK && h.Err == nil && h.N == size && h.SHA256 == sum
}

// GetHashed does a GET with optional headers (name, value pairs) and hashes the body.
func GetHashed(ctx context.Context, c *http.Client, url string, headers ...string) (Hashed, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return Hashed{}, err
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		return Hashed{}, err
	}
	defer resp.Body.Close()
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	return Hashed{Status: resp.StatusCode, Header: resp.Header, N: n, SHA256: hex.EncodeToString(h.Sum(nil)), Err: err}, nil
}

// listenLocal listens on a free 127.0.0.1 port.
func listenLocal(t testing.TB) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	return l
}
