package node

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ipfs/go-cid"
	"go.uber.org/goleak"

	"github.com/flocon/flocon/node/nodetest"
	"github.com/flocon/flocon/store"
	"github.com/flocon/flocon/verify"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Fixtures shared by the fetch and mirror tests: a keyring built in test
// code, fake upstream mirrors and a node over a real store.

// ---- keyring fixture -------------------------------------------------------

// testKeys is nodetest's keyring: a packager certified by three trusted
// masters, and a stranger key that is in no keyring.
type testKeys struct {
	packager *openpgp.Entity
	stranger *openpgp.Entity
	keyring  *verify.Keyring
}

func testKeyring(t testing.TB) *testKeys {
	t.Helper()
	k := nodetest.SharedKeys(t)
	return &testKeys{packager: k.Packager, stranger: k.Stranger, keyring: k.Keyring}
}

func sign(t testing.TB, key *openpgp.Entity, data []byte) []byte {
	t.Helper()
	return nodetest.Sign(t, key, data)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	nodetest.WaitFor(t, what, cond)
}

// testPkg is a package file: a tar whose first member is the .PKGINFO its
// file name implies, padded with random bytes to size, with its CID and
// signature.
type testPkg struct {
	name string
	data []byte
	cid  cid.Cid
	sig  []byte
}

func newTestPkg(t testing.TB, name string, size int, signer *openpgp.Entity) testPkg {
	t.Helper()
	data := packageBytes(t, name, size)
	sum := sha256.Sum256(data)
	c, err := verify.CIDFromSHA256(sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return testPkg{name: name, data: data, cid: c, sig: sign(t, signer, data)}
}

// packageBytes is a plain tar package of at least size bytes whose .PKGINFO
// matches file name name (the verifier reads only up to .PKGINFO).
func packageBytes(t testing.TB, name string, size int) []byte {
	t.Helper()
	f, err := verify.ParsePkgFilename(name)
	if err != nil {
		t.Fatalf("test package name: %v", err)
	}
	info := fmt.Sprintf("pkgname = %s\npkgbase = %s\npkgver = %s\narch = %s\n", f.Name, f.Name, f.Version, f.Arch)
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	if err := tw.WriteHeader(&tar.Header{Name: ".PKGINFO", Mode: 0o644, Size: int64(len(info)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write([]byte(info)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Flush(); err != nil {
		t.Fatal(err)
	}
	data := make([]byte, max(size, b.Len()))
	if _, err := rand.Read(data[b.Len():]); err != nil {
		t.Fatal(err)
	}
	copy(data, b.Bytes())
	return data
}

func (p testPkg) expect(policy verify.SigPolicy, withSig bool) verify.Expect {
	exp := verify.Expect{CID: p.cid, Size: int64(len(p.data)), Filename: p.name, Policy: policy}
	if withSig {
		exp.Signature = p.sig
	}
	return exp
}

// ---- fake upstream mirror --------------------------------------------------

// mirrorMode is how a fake mirror misbehaves on bodies (not on .sig files).
type mirrorMode struct {
	status     int  // answer everything with this status
	hang       bool // send nothing, not even headers
	cutAfter   int  // send this many bytes of the body, then drop the connection
	stallAfter int  // send this many bytes of the body, then hang
	corrupt    bool // flip one byte of the body
	trailing   int  // append this many bytes of garbage to the body
}

type mirrorRequest struct {
	path, rangeHdr, ims, userAgent string
}

// fakeMirror is an upstream mirror serving /core/os/x86_64/FILE and logging
// every request.
type fakeMirror struct {
	t       testing.TB
	srv     *httptest.Server
	mode    mirrorMode
	modTime time.Time
	gate    chan struct{} // when set, package bodies wait for it
	asked   chan string   // when set, gets each package request's Range (never blocks)
	mu      sync.Mutex
	files   map[string][]byte
	reqs    []mirrorRequest
}

func newFakeMirror(t testing.TB, mode mirrorMode, files map[string][]byte) *fakeMirror {
	t.Helper()
	m := &fakeMirror{t: t, mode: mode, files: files, modTime: time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)}
	m.srv = httptest.NewServer(http.HandlerFunc(m.serve))
	t.Cleanup(m.srv.Close)
	return m
}

func (m *fakeMirror) template() string { return m.srv.URL + "/$repo/os/$arch" }

func (m *fakeMirror) serve(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	m.reqs = append(m.reqs, mirrorRequest{path: r.URL.Path, rangeHdr: r.Header.Get("Range"),
		ims: r.Header.Get("If-Modified-Since"), userAgent: r.Header.Get("User-Agent")})
	data, ok := m.files[path.Base(r.URL.Path)]
	gate, asked := m.gate, m.asked
	m.mu.Unlock()
	if asked != nil && !strings.HasSuffix(r.URL.Path, ".sig") {
		select {
		case asked <- r.Header.Get("Range"):
		default:
		}
	}
	if m.mode.status != 0 {
		http.Error(w, "mirror says no", m.mode.status)
		return
	}
	if !ok || path.Dir(r.URL.Path) != "/core/os/x86_64" {
		http.NotFound(w, r)
		return
	}
	isPkg := !strings.HasSuffix(r.URL.Path, ".sig")
	if isPkg && gate != nil {
		select {
		case <-gate:
		case <-r.Context().Done():
			return
		}
	}
	switch {
	case isPkg && m.mode.trailing > 0:
		data = append(bytes.Clone(data), bytes.Repeat([]byte{'x'}, m.mode.trailing)...)
	case isPkg && m.mode.hang:
		<-r.Context().Done() // the client gives up
		return
	case isPkg && m.mode.corrupt:
		bad := bytes.Clone(data)
		bad[len(bad)/2] ^= 0xff
		data = bad
	case isPkg && m.mode.cutAfter > 0:
		m.partial(w, data, m.mode.cutAfter)
		panic(http.ErrAbortHandler) // drops the connection mid-body
	case isPkg && m.mode.stallAfter > 0:
		m.partial(w, data, m.mode.stallAfter)
		<-r.Context().Done() // the client gives up
		return
	}
	http.ServeContent(w, r, path.Base(r.URL.Path), m.modTime, bytes.NewReader(data))
}

// partial announces the whole body and sends only its first n bytes.
func (m *fakeMirror) partial(w http.ResponseWriter, data []byte, n int) {
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(data[:n])
	w.(http.Flusher).Flush()
}

// requests returns the logged requests for file name.
func (m *fakeMirror) requests(name string) []mirrorRequest {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []mirrorRequest
	for _, r := range m.reqs {
		if path.Base(r.path) == name {
			out = append(out, r)
		}
	}
	return out
}

// deadMirror is a URL template on a port where nothing listens.
func deadMirror(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return "http://" + addr + "/$repo/os/$arch"
}

// ---- node under test -------------------------------------------------------

// fastTimeouts make stalls show within a second or two. (A 200 ms window
// failed healthy local transfers when the machine was loaded.)
func fastTimeouts(c *Config) {
	c.MirrorTimeout = 2 * time.Second
	c.StallWindow = time.Second
	c.MinSpeed = 1024
}

// noTimeouts make any wait on a timer hang the test: what must be fast
// cannot pass by waiting for a timeout.
func noTimeouts(c *Config) {
	c.MirrorTimeout = time.Hour
	c.StallWindow = time.Hour
}

// newTestNode runs a mirror-only node over a real store in a temp dir.
func newTestNode(t testing.TB, mirrors []string, opts ...func(*Config)) (*Node, *store.Store) {
	t.Helper()
	st, err := store.Open(store.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	cfg := Config{Store: st, Keyring: testKeyring(t).keyring, Mirrors: Mirrors{Default: mirrors}}
	fastTimeouts(&cfg)
	for _, o := range opts {
		o(&cfg)
	}
	n, err := New(cfg)
	if err != nil {
		t.Fatalf("new node: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	return n, st
}

// readPending reads a download to its end, as a client would, and waits
// for its outcome. A reader must never get a whole file that is not the
// verified one: either its read fails or it got exactly the verified bytes.
func readPending(t *testing.T, p *store.Pending) ([]byte, error) {
	t.Helper()
	r := p.NewReader(t.Context(), 0)
	defer r.Close()
	got, rerr := io.ReadAll(r)
	select {
	case <-p.Done():
	case <-t.Context().Done():
		t.Fatal("download never ended")
	}
	if rerr == nil && p.Err() != nil {
		t.Errorf("reader got the whole file of an aborted download (%v)", p.Err())
	}
	if rerr == nil && p.Err() == nil {
		sum := sha256.Sum256(got)
		if c, _ := verify.CIDFromSHA256(sum[:]); !c.Equals(p.CID()) {
			t.Error("reader got a whole file that is not the verified blob")
		}
	}
	return got, p.Err()
}

// fetchAndRead starts a fetch and reads the download to its end.
func fetchAndRead(t *testing.T, n *Node, exp verify.Expect) ([]byte, error) {
	t.Helper()
	p, err := n.Fetch(t.Context(), "core", "x86_64", exp)
	if err != nil {
		return nil, err
	}
	if p == nil {
		t.Fatal("Fetch returned no download for a blob not in the store")
	}
	return readPending(t, p)
}

// assertStored checks that the store holds exactly pkg, with its signature.
func assertStored(t *testing.T, st *store.Store, pkg testPkg, wantSig []byte) {
	t.Helper()
	f, info, err := st.OpenBlob(pkg.cid)
	if err != nil {
		t.Fatalf("blob not stored: %v", err)
	}
	defer f.Close()
	got, err := io.ReadAll(f)
	if err != nil || !bytes.Equal(got, pkg.data) {
		t.Fatalf("stored blob differs from the package (err %v)", err)
	}
	if info.Filename != pkg.name || info.Repo != "core" || info.Arch != "x86_64" || info.Size != int64(len(pkg.data)) {
		t.Errorf("blob info = %+v", info)
	}
	if wantSig == nil {
		return
	}
	if info.Signer == "" {
		t.Error("blob info has no signer")
	}
	sig, err := st.Sig(pkg.cid)
	if err != nil || !bytes.Equal(sig, wantSig) {
		t.Errorf("stored signature differs (err %v)", err)
	}
}
