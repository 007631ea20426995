package gateway

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/flocon/flocon/store"
	"github.com/flocon/flocon/verify"
)

// testPkg is a package of the generated test repo.
type testPkg struct {
	name, version, filename string
	data                    []byte
	sig                     []byte // %PGPSIG%, nil for none
	buildDate               int64
}

func (p testPkg) sha256() string {
	s := sha256.Sum256(p.data)
	return hex.EncodeToString(s[:])
}

func (p testPkg) cid(t testing.TB) cid.Cid {
	t.Helper()
	c, err := verify.CIDFromHex(p.sha256())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newTestPkg(t testing.TB, name, version string, size int, sig []byte) testPkg {
	t.Helper()
	data := make([]byte, size)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	return testPkg{
		name: name, version: version, filename: name + "-" + version + "-x86_64.pkg.tar.zst",
		data: data, sig: sig, buildDate: 1_700_000_000,
	}
}

// makeDB builds a gzip'd sync database with repo-add's desc layout.
func makeDB(t testing.TB, pkgs ...testPkg) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, p := range pkgs {
		dir := p.name + "-" + p.version + "/"
		desc := fmt.Sprintf("%%FILENAME%%\n%s\n\n%%NAME%%\n%s\n\n%%VERSION%%\n%s\n\n"+
			"%%CSIZE%%\n%d\n\n%%ISIZE%%\n%d\n\n%%SHA256SUM%%\n%s\n\n%%ARCH%%\nx86_64\n\n%%BUILDDATE%%\n%d\n\n",
			p.filename, p.name, p.version, len(p.data), len(p.data)*2, p.sha256(), p.buildDate)
		if p.sig != nil {
			desc += "%PGPSIG%\n" + base64.StdEncoding.EncodeToString(p.sig) + "\n\n"
		}
		for _, h := range []*tar.Header{
			{Name: dir, Typeflag: tar.TypeDir, Mode: 0o755},
			{Name: dir + "desc", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(desc))},
		} {
			if err := tw.WriteHeader(h); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := tw.Write([]byte(desc)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// upstreamFile is what the fake mirror has for one db file name.
type upstreamFile struct {
	data    []byte
	lastMod time.Time
}

// fakeFetcher is a hand-written Fetcher: a mirror of db files honouring
// If-Modified-Since, and package downloads the test drives by hand through
// the real store's Pending.
type fakeFetcher struct {
	st *store.Store

	dbGate chan struct{} // when set, FetchDB waits for it to close

	mu          sync.Mutex
	dbs         map[string]upstreamFile // by db file name
	unreachable bool
	dbCalls     map[string]int
	dbIMS       []time.Time
	pkgs        map[string]testPkg // downloadable packages by file name
	fetches     int
	started     chan *store.Pending // a new download, for the test to feed
	sigs        map[string][]byte   // signature each download commits with
}

func newFakeFetcher() *fakeFetcher {
	return &fakeFetcher{
		dbs: map[string]upstreamFile{}, dbCalls: map[string]int{},
		pkgs: map[string]testPkg{}, sigs: map[string][]byte{},
		started: make(chan *store.Pending, 8),
	}
}

func (f *fakeFetcher) FetchDB(ctx context.Context, repo, arch, name string, ims time.Time) (*http.Response, error) {
	if f.dbGate != nil {
		f.mu.Lock()
		f.dbCalls[name+" (gated)"]++
		f.mu.Unlock()
		select {
		case <-f.dbGate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dbCalls[name]++
	f.dbIMS = append(f.dbIMS, ims)
	if f.unreachable {
		return nil, fmt.Errorf("fake mirror: connection refused")
	}
	u, ok := f.dbs[name]
	if !ok {
		return nil, fmt.Errorf("fetch db %s/%s/%s: %w", repo, arch, name, store.ErrNotFound)
	}
	rec := httptest.NewRecorder()
	rec.Header().Set("Last-Modified", u.lastMod.UTC().Format(http.TimeFormat))
	if !ims.IsZero() && !u.lastMod.After(ims) {
		rec.WriteHeader(http.StatusNotModified)
	} else {
		rec.Header().Set("Content-Length", strconv.Itoa(len(u.data)))
		rec.WriteHeader(http.StatusOK)
		_, _ = rec.Write(u.data)
	}
	return rec.Result(), nil
}

func (f *fakeFetcher) Fetch(_ context.Context, repo, arch string, exp verify.Expect) (*store.Pending, error) {
	f.mu.Lock()
	f.fetches++
	_, ok := f.pkgs[exp.Filename]
	f.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("fetch %s: %w", exp.Filename, store.ErrNotFound)
	}
	if f.st.Has(exp.CID) { // like node: nothing to download
		return nil, nil
	}
	pend, leader, err := f.st.Begin(exp.CID, exp.Size)
	if err != nil {
		return nil, err
	}
	if leader {
		f.started <- pend
	}
	return pend, nil
}

func (f *fakeFetcher) calls(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dbCalls[name]
}

func (f *fakeFetcher) lastIMS() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.dbIMS) == 0 {
		return time.Time{}
	}
	return f.dbIMS[len(f.dbIMS)-1]
}

// commit finishes a download the test fed, as node would after verifying.
func commit(t testing.TB, p *store.Pending, pkg testPkg, sig []byte) {
	t.Helper()
	err := p.Commit(store.BlobInfo{
		CID: p.CID(), Size: int64(len(pkg.data)), Repo: "core", Arch: "x86_64",
		Filename: pkg.filename, Added: time.Now(),
	}, sig)
	if err != nil {
		t.Fatalf("commit: %v", err)
	}
}

// storeBlob puts a verified package in the store, as a finished download.
func storeBlob(t testing.TB, st *store.Store, pkg testPkg, sig []byte) {
	t.Helper()
	p, leader, err := st.Begin(pkg.cid(t), int64(len(pkg.data)))
	if err != nil || !leader {
		t.Fatalf("begin: leader=%v err=%v", leader, err)
	}
	if _, err := p.Write(pkg.data); err != nil {
		t.Fatal(err)
	}
	commit(t, p, pkg, sig)
}

// publishStored lists pkgs in core's db (at dbTime, synced) and stores each
// one's verified blob without a signature beside it: a stored-path test's
// set-up.
func (e *env) publishStored(t testing.TB, pkgs ...testPkg) {
	t.Helper()
	e.publish(t, dbTime, pkgs...)
	e.sync(t)
	for _, p := range pkgs {
		storeBlob(t, e.st, p, nil)
	}
}

// env is a gateway over a real store in a temp dir with a fake fetcher.
type env struct {
	st      *store.Store
	f       *fakeFetcher
	g       *Gateway
	srv     *httptest.Server
	entered atomic.Int64 // requests that reached the gateway
}

func newEnv(t testing.TB, cfg Config) *env {
	return newEnvWith(t, cfg, nil)
}

func newEnvWith(t testing.TB, cfg Config, dbGate chan struct{}) *env {
	t.Helper()
	st, err := store.Open(store.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("store.Open: %v", err)
	}
	f := newFakeFetcher()
	f.st, f.dbGate = st, dbGate
	cfg.Store, cfg.Fetcher = st, f
	g, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e := &env{st: st, f: f, g: g}
	e.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.entered.Add(1)
		g.ServeHTTP(w, r)
	}))
	e.srv.Config.ConnContext = ConnContext // as cmd/flocon serves it
	e.srv.Start()
	t.Cleanup(func() {
		e.srv.Close()
		if err := st.Close(); err != nil {
			t.Errorf("store close: %v", err)
		}
	})
	return e
}

// publish puts a db with pkgs on the fake mirror and makes them downloadable.
func (e *env) publish(t testing.TB, lastMod time.Time, pkgs ...testPkg) []byte {
	t.Helper()
	db := makeDB(t, pkgs...)
	e.f.mu.Lock()
	defer e.f.mu.Unlock()
	e.f.dbs["core.db"] = upstreamFile{data: db, lastMod: lastMod}
	for _, p := range pkgs {
		e.f.pkgs[p.filename] = p
	}
	return db
}

// sync fetches core.db through the gateway, as pacman -Sy does.
func (e *env) sync(t testing.TB) {
	t.Helper()
	resp := e.do(t, http.MethodGet, "/core/os/x86_64/core.db", nil)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("sync: status %d", resp.StatusCode)
	}
}

func (e *env) do(t testing.TB, method, path string, hdr map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, e.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp
}

// doAsync does a request whose headers only come once the test feeds the
// download it starts.
func (e *env) doAsync(t testing.TB, method, path string, hdr map[string]string) <-chan *http.Response {
	t.Helper()
	ch := make(chan *http.Response, 1)
	go func() { ch <- e.do(t, method, path, hdr) }()
	return ch
}

// get does a request and reads the whole body.
func (e *env) get(t testing.TB, method, path string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	resp := e.do(t, method, path, hdr)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp, body
}

// awaitStart returns the download the gateway started.
func (e *env) awaitStart(t testing.TB) *store.Pending {
	t.Helper()
	select {
	case p := <-e.f.started:
		return p
	case <-time.After(10 * time.Second):
		t.Fatal("no download started")
		return nil
	}
}
