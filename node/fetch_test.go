package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/flocon/flocon/store"
	"github.com/flocon/flocon/verify"
)

// ---- keyring fixture -------------------------------------------------------

// testKeys is a keyring folder built in test code: three master keys
// (NAME-trusted), a packager key certified by all three, and a stranger
// key that is in no keyring.
type testKeys struct {
	dir      string
	packager *openpgp.Entity
	stranger *openpgp.Entity
	keyring  *verify.Keyring
}

var (
	keysOnce sync.Once
	keysFix  *testKeys
	keysErr  error
)

func testKeyring(t *testing.T) *testKeys {
	t.Helper()
	keysOnce.Do(func() { keysFix, keysErr = buildTestKeys() })
	if keysErr != nil {
		t.Fatalf("build test keyring: %v", keysErr)
	}
	return keysFix
}

func buildTestKeys() (*testKeys, error) {
	dir, err := os.MkdirTemp("", "flocon-node-keyring-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir) // the keyring is loaded in memory
	cfg := &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA, Time: func() time.Time { return time.Now().Add(-time.Hour) }}
	newKey := func(name string) (*openpgp.Entity, error) {
		return openpgp.NewEntity(name, "flocon node test", name+"@example.org", cfg)
	}
	k := &testKeys{dir: dir}
	var masters []*openpgp.Entity
	for i := range 3 {
		m, err := newKey(fmt.Sprintf("master%d", i))
		if err != nil {
			return nil, err
		}
		masters = append(masters, m)
	}
	if k.packager, err = newKey("packager"); err != nil {
		return nil, err
	}
	if k.stranger, err = newKey("stranger"); err != nil {
		return nil, err
	}
	var uid string
	for name := range k.packager.Identities {
		uid = name
	}
	for _, m := range masters {
		if err := k.packager.SignIdentity(uid, m, cfg); err != nil {
			return nil, err
		}
	}
	var ring bytes.Buffer
	w, err := armor.Encode(&ring, openpgp.PublicKeyType, nil)
	if err != nil {
		return nil, err
	}
	var trusted strings.Builder
	for _, e := range append(masters, k.packager) {
		if err := e.Serialize(w); err != nil {
			return nil, err
		}
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	for _, m := range masters {
		fmt.Fprintf(&trusted, "%X:4:\n", m.PrimaryKey.Fingerprint)
	}
	files := map[string][]byte{"test.gpg": ring.Bytes(), "test-trusted": []byte(trusted.String()), "test-revoked": nil}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return nil, err
		}
	}
	if k.keyring, err = verify.LoadKeyring(dir); err != nil {
		return nil, err
	}
	return k, nil
}

func sign(t *testing.T, key *openpgp.Entity, data []byte) []byte {
	t.Helper()
	var sig bytes.Buffer
	cfg := &packet.Config{DefaultHash: 0, Time: func() time.Time { return time.Now().Add(-time.Minute) }}
	if err := openpgp.DetachSign(&sig, key, bytes.NewReader(data), cfg); err != nil {
		t.Fatalf("sign: %v", err)
	}
	return sig.Bytes()
}

// testPkg is a package file: random bytes with their CID and signature.
type testPkg struct {
	name string
	data []byte
	cid  cid.Cid
	sig  []byte
}

func newTestPkg(t *testing.T, name string, size int, signer *openpgp.Entity) testPkg {
	t.Helper()
	data := make([]byte, size)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	c, err := verify.CIDFromSHA256(sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return testPkg{name: name, data: data, cid: c, sig: sign(t, signer, data)}
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
	t       *testing.T
	srv     *httptest.Server
	mode    mirrorMode
	modTime time.Time
	gate    chan struct{} // when set, package bodies wait for it
	mu      sync.Mutex
	files   map[string][]byte
	reqs    []mirrorRequest
}

func newFakeMirror(t *testing.T, mode mirrorMode, files map[string][]byte) *fakeMirror {
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
	gate := m.gate
	m.mu.Unlock()
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

// fastTimeouts make stalls show within a fraction of a second.
func fastTimeouts(c *Config) {
	c.MirrorTimeout = 2 * time.Second
	c.StallWindow = 200 * time.Millisecond
	c.MinSpeed = 1024
}

// noTimeouts make any wait on a timer hang the test: what must be fast
// cannot pass by waiting for a timeout.
func noTimeouts(c *Config) {
	c.MirrorTimeout = time.Hour
	c.StallWindow = time.Hour
}

// newTestNode runs a mirror-only node over a real store in a temp dir.
func newTestNode(t *testing.T, mirrors []string, opts ...func(*Config)) (*Node, *store.Store) {
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

// ---- tests -----------------------------------------------------------------

func TestFetchDBConditional(t *testing.T) {
	t.Parallel()
	db := []byte("not really a tar, the node does not care")
	m := newFakeMirror(t, mirrorMode{}, map[string][]byte{"core.db": db})
	n, _ := newTestNode(t, []string{m.template()})
	tests := []struct {
		name       string
		ims        time.Time
		wantStatus int
	}{
		{"no If-Modified-Since", time.Time{}, http.StatusOK},
		{"not modified since", m.modTime, http.StatusNotModified},
		{"older copy", m.modTime.Add(-time.Hour), http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp, err := n.FetchDB(t.Context(), "core", "x86_64", "core.db", tt.ims)
			if err != nil {
				t.Fatalf("FetchDB: %v", err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("read body: %v", err)
			}
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if lm, _ := http.ParseTime(resp.Header.Get("Last-Modified")); tt.wantStatus == http.StatusOK && !lm.Equal(m.modTime) {
				t.Errorf("Last-Modified = %v, want %v", lm, m.modTime)
			}
			if tt.wantStatus == http.StatusOK && !bytes.Equal(body, db) {
				t.Errorf("body = %q", body)
			}
		})
	}
	t.Cleanup(func() {
		for _, r := range m.requests("core.db") {
			if !strings.HasPrefix(r.userAgent, "flocon/") {
				t.Errorf("User-Agent = %q", r.userAgent)
			}
		}
	})
}

func TestFetchDBFailover(t *testing.T) {
	t.Parallel()
	db := []byte("db bytes")
	broken := newFakeMirror(t, mirrorMode{status: http.StatusInternalServerError}, nil)
	good := newFakeMirror(t, mirrorMode{}, map[string][]byte{"core.db": db})
	n, _ := newTestNode(t, []string{deadMirror(t), broken.template(), good.template()})
	resp, err := n.FetchDB(t.Context(), "core", "x86_64", "core.db", time.Time{})
	if err != nil {
		t.Fatalf("FetchDB: %v", err)
	}
	defer resp.Body.Close()
	if body, _ := io.ReadAll(resp.Body); resp.StatusCode != http.StatusOK || !bytes.Equal(body, db) {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	if len(broken.requests("core.db")) != 1 || len(good.requests("core.db")) != 1 {
		t.Errorf("requests: broken %d, good %d; want 1 each", len(broken.requests("core.db")), len(good.requests("core.db")))
	}
}

func TestFetchDBErrors(t *testing.T) {
	t.Parallel()
	notFound1 := newFakeMirror(t, mirrorMode{}, nil)
	notFound2 := newFakeMirror(t, mirrorMode{}, nil)
	broken := newFakeMirror(t, mirrorMode{status: http.StatusBadGateway}, nil)
	redirect := httptest.NewServer(http.RedirectHandler("ftp://example.org/core.db", http.StatusFound))
	t.Cleanup(redirect.Close)
	tests := []struct {
		name    string
		mirrors []string
		file    string
		want    error
	}{
		{"404 everywhere", []string{notFound1.template(), notFound2.template()}, "core.db.sig", store.ErrNotFound},
		{"dead and 404", []string{deadMirror(t), notFound1.template()}, "core.db.sig", store.ErrNotFound},
		{"5xx and 404", []string{broken.template(), notFound1.template()}, "core.db", ErrAllSourcesFailed},
		{"redirect to ftp", []string{redirect.URL + "/$repo/os/$arch"}, "core.db", ErrBadMirror},
		{"path in name", []string{notFound1.template()}, "../core.db", ErrBadName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			n, _ := newTestNode(t, tt.mirrors, noTimeouts)
			resp, err := n.FetchDB(t.Context(), "core", "x86_64", tt.file, time.Time{})
			if err == nil {
				resp.Body.Close()
				t.Fatalf("FetchDB: status %d, want an error", resp.StatusCode)
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestFetchDBStalledBody(t *testing.T) {
	t.Parallel()
	db := bytes.Repeat([]byte("db"), 4096)
	m := newFakeMirror(t, mirrorMode{stallAfter: 100}, map[string][]byte{"core.db": db})
	n, _ := newTestNode(t, []string{m.template()})
	resp, err := n.FetchDB(t.Context(), "core", "x86_64", "core.db", time.Time{})
	if err != nil {
		t.Fatalf("FetchDB: %v", err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if !errors.Is(err, ErrStalled) {
		t.Fatalf("read err = %v after %d bytes, want ErrStalled", err, len(got))
	}
}

func TestFetchFailover(t *testing.T) {
	t.Parallel()
	pkg := newTestPkg(t, "foo-1.0-1-x86_64.pkg.tar.zst", 300<<10, testKeyring(t).packager)
	files := map[string][]byte{pkg.name: pkg.data, pkg.name + ".sig": pkg.sig}
	broken := newFakeMirror(t, mirrorMode{status: http.StatusInternalServerError}, files)
	good := newFakeMirror(t, mirrorMode{}, files)
	n, st := newTestNode(t, []string{deadMirror(t), broken.template(), good.template()})
	got, err := fetchAndRead(t, n, pkg.expect(verify.SigRequired, true))
	if err != nil {
		t.Fatalf("download: %v", err)
	}
	if !bytes.Equal(got, pkg.data) {
		t.Fatal("reader got other bytes than the package")
	}
	assertStored(t, st, pkg, pkg.sig)
	if len(broken.requests(pkg.name)) != 1 || len(good.requests(pkg.name)) != 1 {
		t.Errorf("package requests: broken %d, good %d; want 1 each",
			len(broken.requests(pkg.name)), len(good.requests(pkg.name)))
	}
	// Stored now: a second Fetch has nothing to download.
	if p, err := n.Fetch(t.Context(), "core", "x86_64", pkg.expect(verify.SigRequired, true)); p != nil || err != nil {
		t.Errorf("Fetch of a stored blob = %v, %v; want nil, nil", p, err)
	}
}

func TestFetchNotFoundIsFast(t *testing.T) {
	t.Parallel()
	pkg := newTestPkg(t, "gone-1.0-1-x86_64.pkg.tar.zst", 1024, testKeyring(t).packager)
	m1 := newFakeMirror(t, mirrorMode{}, nil)
	m2 := newFakeMirror(t, mirrorMode{}, nil)
	// Timeouts of an hour: the answer can only come from the 404s.
	n, st := newTestNode(t, []string{m1.template(), m2.template()}, noTimeouts)
	_, err := fetchAndRead(t, n, pkg.expect(verify.SigRequired, true))
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("err = %v, want store.ErrNotFound", err)
	}
	if st.Has(pkg.cid) {
		t.Error("a blob was stored")
	}
	if len(m1.requests(pkg.name)) != 1 || len(m2.requests(pkg.name)) != 1 {
		t.Errorf("requests: %d and %d, want 1 each", len(m1.requests(pkg.name)), len(m2.requests(pkg.name)))
	}
}

func TestFetchResume(t *testing.T) {
	t.Parallel()
	const size, sent = 256 << 10, 100_000
	tests := []struct {
		name      string
		mode      mirrorMode
		wantRange string // of the second mirror's GET
	}{
		{"connection cut mid-body", mirrorMode{cutAfter: sent}, fmt.Sprintf("bytes=%d-", sent)},
		{"stalled mirror", mirrorMode{stallAfter: sent}, fmt.Sprintf("bytes=%d-", sent)},
		{"mirror never answers", mirrorMode{hang: true}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pkg := newTestPkg(t, "bar-2.0-1-x86_64.pkg.tar.zst", size, testKeyring(t).packager)
			files := map[string][]byte{pkg.name: pkg.data}
			first := newFakeMirror(t, tt.mode, files)
			second := newFakeMirror(t, mirrorMode{}, files)
			n, st := newTestNode(t, []string{first.template(), second.template()})
			got, err := fetchAndRead(t, n, pkg.expect(verify.SigRequired, true))
			if err != nil {
				t.Fatalf("download: %v", err)
			}
			if !bytes.Equal(got, pkg.data) {
				t.Fatal("reader got other bytes than the package")
			}
			assertStored(t, st, pkg, pkg.sig)
			reqs := second.requests(pkg.name)
			if len(reqs) != 1 || reqs[0].rangeHdr != tt.wantRange {
				t.Fatalf("second mirror requests = %+v, want one with Range %q", reqs, tt.wantRange)
			}
		})
	}
}

func TestFetchSingleFlight(t *testing.T) {
	t.Parallel()
	pkg := newTestPkg(t, "baz-3.0-1-x86_64.pkg.tar.zst", 64<<10, testKeyring(t).packager)
	m := newFakeMirror(t, mirrorMode{}, map[string][]byte{pkg.name: pkg.data})
	m.gate = make(chan struct{}) // hold the body until every client has joined
	n, st := newTestNode(t, []string{m.template()})
	const clients = 8
	pendings := make([]*store.Pending, clients)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			p, err := n.Fetch(t.Context(), "core", "x86_64", pkg.expect(verify.SigRequired, true))
			if err != nil || p == nil {
				t.Errorf("Fetch %d = %v, %v", i, p, err)
			}
			pendings[i] = p
		})
	}
	wg.Wait()
	for i, p := range pendings {
		if p != pendings[0] {
			t.Fatalf("client %d got another download", i)
		}
	}
	if t.Failed() {
		close(m.gate)
		return
	}
	// Every client follows the one download as it arrives.
	results := make([][]byte, clients)
	for i := range clients {
		r := pendings[0].NewReader(t.Context(), 0)
		wg.Go(func() {
			defer r.Close()
			b, err := io.ReadAll(r)
			if err != nil {
				t.Errorf("client %d read: %v", i, err)
			}
			results[i] = b
		})
	}
	close(m.gate)
	wg.Wait()
	for i, b := range results {
		if !bytes.Equal(b, pkg.data) {
			t.Errorf("client %d got %d bytes, not the package", i, len(b))
		}
	}
	assertStored(t, st, pkg, pkg.sig)
	if reqs := m.requests(pkg.name); len(reqs) != 1 {
		t.Errorf("upstream GETs = %d, want 1", len(reqs))
	}
}

func TestFetchDigestMismatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		secondMode mirrorMode
		wantErr    error
	}{
		{"every mirror sends bad bytes", mirrorMode{corrupt: true}, verify.ErrDigestMismatch},
		{"second mirror is good", mirrorMode{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pkg := newTestPkg(t, "qux-1.0-1-x86_64.pkg.tar.zst", 128<<10, testKeyring(t).packager)
			files := map[string][]byte{pkg.name: pkg.data}
			bad := newFakeMirror(t, mirrorMode{corrupt: true}, files)
			second := newFakeMirror(t, tt.secondMode, files)
			n, st := newTestNode(t, []string{bad.template(), second.template()})
			got, err := fetchAndRead(t, n, pkg.expect(verify.SigRequired, true))
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr != nil {
				if st.Has(pkg.cid) {
					t.Error("bad bytes were stored")
				}
				if len(got) >= len(pkg.data) {
					t.Errorf("a reader got %d bytes of a bad download", len(got))
				}
			} else {
				assertStored(t, st, pkg, pkg.sig)
			}
			// One try each: the bad mirror once, the second once (the retry, from 0).
			reqs := second.requests(pkg.name)
			if len(bad.requests(pkg.name)) != 1 || len(reqs) != 1 || reqs[0].rangeHdr != "" {
				t.Errorf("requests: bad %d, second %+v; want one each, no Range", len(bad.requests(pkg.name)), reqs)
			}
		})
	}
}

func TestFetchSignature(t *testing.T) {
	t.Parallel()
	keys := testKeyring(t)
	tests := []struct {
		name         string
		signer       *openpgp.Entity
		policy       verify.SigPolicy
		sigInExpect  bool // else only on the mirror
		sigOnMirror  bool
		oversizedSig bool
		otherSig     bool  // a valid signature, over other bytes
		wantFetchErr error // returned by Fetch itself
		wantErr      error // the download's outcome
		wantPkgGET   bool
		wantSig      bool
	}{
		{name: "sig fetched from the mirror", signer: keys.packager, sigOnMirror: true, wantPkgGET: true, wantSig: true},
		{name: "sig given", signer: keys.packager, sigInExpect: true, wantPkgGET: true, wantSig: true},
		{name: "unknown key given", signer: keys.stranger, sigInExpect: true, wantFetchErr: verify.ErrUnknownKey},
		{name: "unknown key on the mirror", signer: keys.stranger, sigOnMirror: true, wantErr: verify.ErrUnknownKey},
		{name: "required sig missing", signer: keys.packager, wantErr: verify.ErrNoSignature},
		{name: "optional sig missing", signer: keys.packager, policy: verify.SigOptional, wantPkgGET: true},
		{name: "oversized sig on the mirror", signer: keys.packager, sigOnMirror: true, oversizedSig: true, wantErr: ErrAllSourcesFailed},
		{name: "signature over other bytes", signer: keys.packager, sigInExpect: true, otherSig: true, wantErr: verify.ErrBadSignature, wantPkgGET: true},
		{name: "never checked", signer: keys.stranger, policy: verify.SigNever, sigOnMirror: true, wantPkgGET: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pkg := newTestPkg(t, "sig-1.0-1-any.pkg.tar.zst", 32<<10, tt.signer)
			files := map[string][]byte{pkg.name: pkg.data}
			if tt.sigOnMirror {
				files[pkg.name+".sig"] = pkg.sig
			}
			if tt.oversizedSig {
				files[pkg.name+".sig"] = append(bytes.Clone(pkg.sig), make([]byte, maxSigSize)...)
			}
			m := newFakeMirror(t, mirrorMode{}, files)
			n, st := newTestNode(t, []string{m.template()})
			exp := pkg.expect(tt.policy, tt.sigInExpect)
			if tt.otherSig {
				exp.Signature = sign(t, tt.signer, []byte("another package"))
			}
			p, err := n.Fetch(t.Context(), "core", "x86_64", exp)
			if tt.wantFetchErr != nil || err != nil {
				if !errors.Is(err, tt.wantFetchErr) || tt.wantFetchErr == nil {
					t.Fatalf("Fetch err = %v, want %v", err, tt.wantFetchErr)
				}
			} else if _, err := readPending(t, p); !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("download err = %v, want %v", err, tt.wantErr)
			}
			if got := len(m.requests(pkg.name)) > 0; got != tt.wantPkgGET {
				t.Errorf("package GET = %v, want %v", got, tt.wantPkgGET)
			}
			if sigGETs := len(m.requests(pkg.name + ".sig")); tt.sigInExpect == (sigGETs > 0) && tt.policy != verify.SigNever {
				t.Errorf(".sig GETs = %d with the signature given = %v", sigGETs, tt.sigInExpect)
			}
			if tt.wantPkgGET && tt.wantErr == nil {
				var wantSig []byte
				if tt.wantSig {
					wantSig = pkg.sig
				}
				assertStored(t, st, pkg, wantSig)
			} else if st.Has(pkg.cid) {
				t.Error("refused package was stored")
			}
		})
	}
}

func TestFetchSizeGuard(t *testing.T) {
	t.Parallel()
	pkg := newTestPkg(t, "long-1.0-1-x86_64.pkg.tar.zst", 64<<10, testKeyring(t).packager)
	m := newFakeMirror(t, mirrorMode{trailing: 4096}, map[string][]byte{pkg.name: pkg.data})
	n, st := newTestNode(t, []string{m.template()})
	if _, err := fetchAndRead(t, n, pkg.expect(verify.SigRequired, true)); err != nil {
		t.Fatalf("download: %v", err)
	}
	// Only the expected size was taken: the stored blob is the package, not
	// the package plus the mirror's trailing bytes.
	assertStored(t, st, pkg, pkg.sig)
}

func TestFetchShutdownAborts(t *testing.T) {
	t.Parallel()
	pkg := newTestPkg(t, "slow-1.0-1-x86_64.pkg.tar.zst", 4096, testKeyring(t).packager)
	m := newFakeMirror(t, mirrorMode{}, map[string][]byte{pkg.name: pkg.data})
	m.gate = make(chan struct{}) // never opened: the download hangs until shutdown
	st, err := store.Open(store.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cfg := Config{Store: st, Keyring: testKeyring(t).keyring, Mirrors: Mirrors{Default: []string{m.template()}}}
	noTimeouts(&cfg)
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	p, err := n.Fetch(t.Context(), "core", "x86_64", pkg.expect(verify.SigRequired, true))
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	select {
	case <-p.Done():
	default:
		t.Fatal("Run returned with a download still in flight")
	}
	if !errors.Is(p.Err(), ErrClosed) {
		t.Errorf("download err = %v, want ErrClosed", p.Err())
	}
	if _, err := n.Fetch(t.Context(), "core", "x86_64", pkg.expect(verify.SigRequired, true)); !errors.Is(err, ErrClosed) {
		t.Errorf("Fetch after shutdown = %v, want ErrClosed", err)
	}
}

func TestFetchRefusesBadRequests(t *testing.T) {
	t.Parallel()
	pkg := newTestPkg(t, "ok-1.0-1-x86_64.pkg.tar.zst", 16, testKeyring(t).packager)
	m := newFakeMirror(t, mirrorMode{}, nil)
	n, _ := newTestNode(t, []string{m.template()})
	noCID := pkg.expect(verify.SigRequired, true)
	noCID.CID = cid.Undef
	badName := pkg.expect(verify.SigRequired, true)
	badName.Filename = "../../etc/passwd"
	tests := []struct {
		name string
		exp  verify.Expect
		want error
	}{
		{"no cid", noCID, errNoCID},
		{"path in file name", badName, ErrBadName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if p, err := n.Fetch(t.Context(), "core", "x86_64", tt.exp); p != nil || !errors.Is(err, tt.want) {
				t.Fatalf("Fetch = %v, %v; want %v", p, err, tt.want)
			}
		})
	}
	t.Cleanup(func() { // after the parallel subtests
		m.mu.Lock()
		defer m.mu.Unlock()
		if len(m.reqs) != 0 {
			t.Errorf("refused requests reached the mirror: %+v", m.reqs)
		}
	})
}

// fakePeer is a peer source serving data from offset off, optionally
// corrupted or cut after a number of bytes.
type fakePeer struct {
	id      peer.ID
	data    []byte
	corrupt bool
	cutAt   int // stop with an error at this offset (0: send everything)
	calls   atomic.Int32
}

func (f *fakePeer) String() string { return "peer " + f.id.String() }
func (f *fakePeer) Peer() peer.ID  { return f.id }

func (f *fakePeer) Fetch(_ context.Context, _ cid.Cid, off int64, w io.Writer) (int64, error) {
	f.calls.Add(1)
	data := f.data
	if f.corrupt {
		data = bytes.Clone(data)
		data[len(data)-1] ^= 0xff
	}
	end := len(data)
	if f.cutAt > 0 {
		end = f.cutAt
	}
	k, err := w.Write(data[off:end])
	if err == nil && end < len(data) {
		err = errors.New("stream reset")
	}
	return int64(k), err
}

type banRecord struct {
	peer peer.ID
	ev   Evidence
}

func TestFetchFromPeers(t *testing.T) {
	t.Parallel()
	const size = 64 << 10
	tests := []struct {
		name       string
		peers      func(data []byte) []*fakePeer
		wantBans   int
		wantMirror []string // Range headers of the mirror's GETs
	}{
		{
			name:  "good peer, mirror untouched",
			peers: func(d []byte) []*fakePeer { return []*fakePeer{{id: "peerA", data: d}} },
		},
		{
			name:       "lying peer banned, mirror retried from 0",
			peers:      func(d []byte) []*fakePeer { return []*fakePeer{{id: "peerA", data: d, corrupt: true}} },
			wantBans:   1,
			wantMirror: []string{""},
		},
		{
			name: "peer cut, next peer resumes",
			peers: func(d []byte) []*fakePeer {
				return []*fakePeer{{id: "peerA", data: d, cutAt: 1000}, {id: "peerB", data: d}}
			},
		},
		{
			name:       "peer cut, mirror resumes",
			peers:      func(d []byte) []*fakePeer { return []*fakePeer{{id: "peerA", data: d, cutAt: 1000}} },
			wantMirror: []string{"bytes=1000-"},
		},
		{
			name: "two peers mixed bad bytes: no ban, mirror retried",
			peers: func(d []byte) []*fakePeer {
				return []*fakePeer{{id: "peerA", data: d, cutAt: 1000}, {id: "peerB", data: d, corrupt: true}}
			},
			wantMirror: []string{""},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pkg := newTestPkg(t, "p2p-1.0-1-x86_64.pkg.tar.zst", size, testKeyring(t).packager)
			m := newFakeMirror(t, mirrorMode{}, map[string][]byte{pkg.name: pkg.data})
			n, st := newTestNode(t, []string{m.template()})
			fakes := tt.peers(pkg.data)
			var mu sync.Mutex
			var bans []banRecord
			n.peers = func(context.Context, cid.Cid) []source {
				out := make([]source, len(fakes))
				for i, f := range fakes {
					out[i] = f
				}
				return out
			}
			n.ban = func(p peer.ID, _ string, ev Evidence) {
				mu.Lock()
				defer mu.Unlock()
				bans = append(bans, banRecord{p, ev})
			}
			// A reader may be cut when the download restarts; readPending
			// checks that it never gets a whole wrong file.
			if _, err := fetchAndRead(t, n, pkg.expect(verify.SigRequired, true)); err != nil {
				t.Fatalf("download: %v", err)
			}
			assertStored(t, st, pkg, pkg.sig)
			mu.Lock()
			defer mu.Unlock()
			if len(bans) != tt.wantBans {
				t.Fatalf("bans = %+v, want %d", bans, tt.wantBans)
			}
			for _, b := range bans {
				want := sha256.Sum256(pkg.data)
				if b.peer != fakes[0].id || b.ev.CID != pkg.cid.String() || b.ev.WantSHA256 != hex.EncodeToString(want[:]) || b.ev.GotSHA256 == "" {
					t.Errorf("ban = %+v", b)
				}
			}
			var ranges []string
			for _, r := range m.requests(pkg.name) {
				ranges = append(ranges, r.rangeHdr)
			}
			if !slices.Equal(ranges, tt.wantMirror) {
				t.Errorf("mirror GETs with Range %q, want %q", ranges, tt.wantMirror)
			}
		})
	}
}

// BenchmarkFetchMirror measures a cold miss end to end: GET from a local
// mirror, sha256 + signature check in the same pass, temp file, commit.
func BenchmarkFetchMirror(b *testing.B) {
	const size = 32 << 20
	keysOnce.Do(func() { keysFix, keysErr = buildTestKeys() })
	if keysErr != nil {
		b.Fatal(keysErr)
	}
	keys := keysFix
	data := make([]byte, size)
	if _, err := rand.Read(data); err != nil {
		b.Fatal(err)
	}
	var sig bytes.Buffer
	if err := openpgp.DetachSign(&sig, keys.packager, bytes.NewReader(data), nil); err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "pkg", time.Time{}, bytes.NewReader(data))
	}))
	defer srv.Close()
	sum := sha256.Sum256(data)
	c, _ := verify.CIDFromSHA256(sum[:])
	b.SetBytes(size)
	for b.Loop() {
		b.StopTimer()
		st, err := store.Open(store.Config{Dir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		n, err := New(Config{Store: st, Keyring: keys.keyring, Mirrors: Mirrors{Default: []string{srv.URL + "/$repo/os/$arch"}}})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		p, err := n.Fetch(b.Context(), "core", "x86_64", verify.Expect{CID: c, Size: size, Filename: "bench-1-1-any.pkg.tar.zst", Signature: sig.Bytes()})
		if err != nil {
			b.Fatal(err)
		}
		<-p.Done()
		if p.Err() != nil {
			b.Fatal(p.Err())
		}
		b.StopTimer()
		n.shutdown()
		_ = st.Close()
		b.StartTimer()
	}
}

func TestFetchPeerSignature(t *testing.T) {
	t.Parallel()
	keys := testKeyring(t)
	tests := []struct {
		name    string
		peerSig func(t *testing.T, pkg testPkg) []byte // nil: no peer has a signature
		wantErr error
		wantBan bool
	}{
		{name: "peer's signature verifies", peerSig: func(_ *testing.T, p testPkg) []byte { return p.sig }},
		{name: "peer's signature over other bytes", peerSig: func(t *testing.T, _ testPkg) []byte { return sign(t, keys.packager, []byte("other")) },
			wantErr: verify.ErrBadSignature, wantBan: true},
		{name: "peer sends garbage", peerSig: func(*testing.T, testPkg) []byte { return []byte("not a signature") },
			wantErr: verify.ErrBadSignature, wantBan: true},
		{name: "peer's key unknown here", peerSig: func(t *testing.T, _ testPkg) []byte { return sign(t, keys.stranger, []byte("x")) },
			wantErr: verify.ErrUnknownKey},
		{name: "no signature anywhere", wantErr: verify.ErrNoSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pkg := newTestPkg(t, "psig-1.0-1-x86_64.pkg.tar.zst", 16<<10, keys.packager)
			m := newFakeMirror(t, mirrorMode{}, map[string][]byte{pkg.name: pkg.data}) // no .sig
			n, st := newTestNode(t, []string{m.template()})
			const sigPeer = peer.ID("sigpeer")
			n.peerSig = func(context.Context, cid.Cid) ([]byte, peer.ID, error) {
				if tt.peerSig == nil {
					return nil, "", ErrP2PDisabled
				}
				return tt.peerSig(t, pkg), sigPeer, nil
			}
			var mu sync.Mutex
			var banned []peer.ID
			n.ban = func(p peer.ID, _ string, _ Evidence) {
				mu.Lock()
				defer mu.Unlock()
				banned = append(banned, p)
			}
			_, err := fetchAndRead(t, n, pkg.expect(verify.SigRequired, false))
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err == nil {
				assertStored(t, st, pkg, pkg.sig)
			} else if st.Has(pkg.cid) {
				t.Error("refused package was stored")
			}
			mu.Lock()
			defer mu.Unlock()
			if wantBans := map[bool]int{true: 1}[tt.wantBan]; len(banned) != wantBans || (wantBans == 1 && banned[0] != sigPeer) {
				t.Errorf("bans = %v, want ban %v", banned, tt.wantBan)
			}
		})
	}
}
