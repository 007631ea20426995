package p2p

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/flocon/flocon/node/routing"
	"github.com/flocon/flocon/store"
	"github.com/flocon/flocon/store/repodb"
	"github.com/flocon/flocon/verify"
)

// memStore is a hand-written localStore: blobs are files in a temp dir,
// everything else lives in maps. It lets the protocol tests run without the
// badger store.
type memStore struct {
	dir     string
	mu      sync.Mutex
	blobs   map[cid.Cid]int64 // size
	sigs    map[cid.Cid][]byte
	meta    map[string][]byte // ns + "\x00" + key
	grow    map[cid.Cid]*memGrowing
	entries map[cid.Cid]repodb.Entry
	removed []cid.Cid
}

var _ localStore = (*memStore)(nil)

func newMemStore(t testing.TB) *memStore {
	t.Helper()
	return &memStore{
		dir: t.TempDir(), blobs: map[cid.Cid]int64{}, sigs: map[cid.Cid][]byte{},
		meta: map[string][]byte{}, grow: map[cid.Cid]*memGrowing{}, entries: map[cid.Cid]repodb.Entry{},
	}
}

func cidOf(t testing.TB, data []byte) cid.Cid {
	t.Helper()
	sum := sha256.Sum256(data)
	c, err := verify.CIDFromSHA256(sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// addBlob stores data as a verified blob and returns its CID.
func (m *memStore) addBlob(t testing.TB, data []byte) cid.Cid {
	t.Helper()
	c := cidOf(t, data)
	if err := os.WriteFile(m.path(c), data, 0o444); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	m.blobs[c] = int64(len(data))
	m.mu.Unlock()
	return c
}

func (m *memStore) path(c cid.Cid) string { return filepath.Join(m.dir, c.String()) }

func (m *memStore) Has(c cid.Cid) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.blobs[c]
	return ok
}

func (m *memStore) OpenBlob(c cid.Cid) (*os.File, store.BlobInfo, error) {
	m.mu.Lock()
	size, ok := m.blobs[c]
	m.mu.Unlock()
	if !ok {
		return nil, store.BlobInfo{}, store.ErrNotFound
	}
	f, err := os.Open(m.path(c))
	return f, store.BlobInfo{CID: c, Size: size}, err
}

func (m *memStore) RemoveBlob(c cid.Cid) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.blobs, c)
	m.removed = append(m.removed, c)
	return os.Remove(m.path(c))
}

func (m *memStore) Blobs(fn func(store.BlobInfo) error) error {
	m.mu.Lock()
	infos := make([]store.BlobInfo, 0, len(m.blobs))
	for c, size := range m.blobs {
		infos = append(infos, store.BlobInfo{CID: c, Size: size})
	}
	m.mu.Unlock()
	for _, b := range infos {
		if err := fn(b); err != nil {
			return err
		}
	}
	return nil
}

func (m *memStore) Sig(c cid.Cid) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s, ok := m.sigs[c]; ok {
		return s, nil
	}
	return nil, store.ErrNotFound
}

func (m *memStore) EntryByCID(c cid.Cid) (string, string, repodb.Entry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.entries[c]; ok {
		return "core", e.Arch, e, nil
	}
	return "", "", repodb.Entry{}, store.ErrNotFound
}

func (m *memStore) Meta(ns, key string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if v, ok := m.meta[ns+"\x00"+key]; ok {
		return v, nil
	}
	return nil, store.ErrNotFound
}

func (m *memStore) PutMeta(ns, key string, value []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if value == nil {
		delete(m.meta, ns+"\x00"+key)
	} else {
		m.meta[ns+"\x00"+key] = bytes.Clone(value)
	}
	return nil
}

func (m *memStore) MetaList(ns string, fn func(string, []byte) error) error {
	m.mu.Lock()
	rows := map[string][]byte{}
	for k, v := range m.meta {
		if after, ok := cutPrefix(k, ns+"\x00"); ok {
			rows[after] = v
		}
	}
	m.mu.Unlock()
	for k, v := range rows {
		if err := fn(k, v); err != nil {
			return err
		}
	}
	return nil
}

func cutPrefix(s, p string) (string, bool) {
	if len(s) >= len(p) && s[:len(p)] == p {
		return s[len(p):], true
	}
	return "", false
}

func (m *memStore) growing(c cid.Cid) growingBlob {
	m.mu.Lock()
	defer m.mu.Unlock()
	if g, ok := m.grow[c]; ok {
		return g
	}
	return nil
}

// memGrowing is an in-flight download with the store's rule: readers never
// get the last byte before Commit.
type memGrowing struct {
	mu      sync.Mutex
	size    int64
	data    []byte
	done    bool
	err     error
	changed chan struct{}
}

func (m *memStore) begin(c cid.Cid, size int64) *memGrowing {
	g := &memGrowing{size: size, changed: make(chan struct{})}
	m.mu.Lock()
	m.grow[c] = g
	m.mu.Unlock()
	return g
}

func (g *memGrowing) Size() int64 { return g.size }

func (g *memGrowing) Written() int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return int64(len(g.data))
}

func (g *memGrowing) write(b []byte) {
	g.mu.Lock()
	g.data = append(g.data, b...)
	close(g.changed)
	g.changed = make(chan struct{})
	g.mu.Unlock()
}

func (g *memGrowing) finish(err error) {
	g.mu.Lock()
	g.done, g.err = true, err
	close(g.changed)
	g.changed = make(chan struct{})
	g.mu.Unlock()
}

func (g *memGrowing) NewReader(ctx context.Context, off int64) io.ReadCloser {
	return &growReader{g: g, ctx: ctx, off: off}
}

type growReader struct {
	g   *memGrowing
	ctx context.Context //nolint:containedctx // mirrors store.Pending.NewReader
	off int64
}

func (r *growReader) Read(p []byte) (int, error) {
	for {
		r.g.mu.Lock()
		avail := int64(len(r.g.data))
		if !r.g.done {
			avail = min(avail, r.g.size-1) // hold back the last byte
		}
		done, err, ch := r.g.done, r.g.err, r.g.changed
		if r.off < avail {
			n := copy(p, r.g.data[r.off:avail])
			r.g.mu.Unlock()
			r.off += int64(n)
			return n, nil
		}
		r.g.mu.Unlock()
		if done {
			if err != nil {
				return 0, err
			}
			return 0, io.EOF
		}
		select {
		case <-ch:
		case <-r.ctx.Done():
			return 0, r.ctx.Err()
		}
	}
}

func (r *growReader) Close() error { return nil }

// testNode is a running p2p side over a store.
type testNode struct {
	s  *Host
	st localStore
}

func (tn *testNode) id() peer.ID { return tn.s.h.ID() }

func (tn *testNode) addrInfo() peer.AddrInfo {
	return peer.AddrInfo{ID: tn.s.h.ID(), Addrs: tn.s.h.Addrs()}
}

// bootstrapAddrs are tn's addresses as another node's Config.Bootstrap.
func (tn *testNode) bootstrapAddrs() []string {
	var out []string
	for _, a := range tn.s.h.Addrs() {
		out = append(out, fmt.Sprintf("%s/p2p/%s", a, tn.s.h.ID()))
	}
	return out
}

// startNode runs a p2p side on 127.0.0.1 (no mDNS) until the test ends.
func startNode(t testing.TB, st localStore, opts ...func(*Config)) *testNode {
	t.Helper()
	cfg := Config{
		DataDir:     t.TempDir(),
		ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"},
		HaveTimeout: 2 * time.Second, // generous: the race detector on 2 shared CPUs
		SingleSite:  true,            // loopback hosts are one site (lan_test.go turns it off)
	}
	for _, o := range opts {
		o(&cfg)
	}
	h, err := newHost(cfg, st)
	if err != nil {
		t.Fatalf("newHost: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return &testNode{s: h, st: st}
}

// peerSource is one provider as the fetch path uses it: Fetch goes through
// the blob transfer.
type peerSource struct {
	s  *Host
	p  peer.ID
	pr routing.Provider
}

func (ps *peerSource) Peer() peer.ID { return ps.p }

func (ps *peerSource) Fetch(ctx context.Context, c cid.Cid, off int64, w io.Writer) (int64, error) {
	return ps.s.FetchBlob(ctx, ps.p, c, off, w)
}

// peerSources runs a LAN lookup of c and returns the providers, complete
// copies first.
func (tn *testNode) peerSources(ctx context.Context, c cid.Cid) []*peerSource {
	var complete, inflight []*peerSource
	for pr := range tn.s.LAN().FindProviders(ctx, c) {
		if pr.InFlight {
			inflight = append(inflight, &peerSource{s: tn.s, p: pr.ID, pr: pr})
		} else {
			complete = append(complete, &peerSource{s: tn.s, p: pr.ID, pr: pr})
		}
	}
	return append(complete, inflight...)
}

// peerSignature asks the providers of c for its signature, in lookup order.
func (tn *testNode) peerSignature(ctx context.Context, c cid.Cid) ([]byte, peer.ID, error) {
	err := ErrPeerNotFound
	for _, src := range tn.peerSources(ctx, c) {
		var sig []byte
		if sig, err = tn.s.FetchSig(ctx, src.p, c); err == nil {
			return sig, src.p, nil
		}
	}
	return nil, "", err
}

// withBootstrap makes a node dial others at start.
func withBootstrap(others ...*testNode) func(*Config) {
	return func(c *Config) {
		for _, o := range others {
			c.Bootstrap = append(c.Bootstrap, o.bootstrapAddrs()...)
		}
	}
}

// waitConnected waits until a has a connection to b.
func waitConnected(t *testing.T, a host.Host, b peer.ID) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for a.Network().Connectedness(b) != network.Connected {
		if time.Now().After(deadline) {
			t.Fatalf("%s never connected to %s", a.ID(), b)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// newRawHost is a bare libp2p host for hostile peers built by the tests.
func newRawHost(t *testing.T) host.Host {
	t.Helper()
	h, err := libp2p.New(
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
		libp2p.DisableRelay(), libp2p.DisableMetrics(),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

// cutWriter collects bytes and calls cut once it holds at least at bytes.
type cutWriter struct {
	buf  bytes.Buffer
	at   int
	cut  func()
	once sync.Once
}

func (w *cutWriter) Write(p []byte) (int, error) {
	n, _ := w.buf.Write(p)
	if w.cut != nil && w.buf.Len() >= w.at {
		w.once.Do(w.cut)
	}
	return n, nil
}

// notifyWriter collects bytes and signals each write.
type notifyWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	wrote chan struct{}
}

func (w *notifyWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.buf.Write(p)
	w.mu.Unlock()
	select {
	case w.wrote <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (w *notifyWriter) len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Len()
}

func (w *notifyWriter) bytes() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return bytes.Clone(w.buf.Bytes())
}

// blackhole relays TCP connections to a host until cut; from then on it
// forwards nothing either way and closes nothing, like a machine that lost
// power (or a process killed over QUIC): no reset, no answer to anything.
type blackhole struct {
	ln   net.Listener
	cut  chan struct{}
	once sync.Once
}

// newBlackhole relays to target (host:port) until its cut is called.
func newBlackhole(t *testing.T, target string) *blackhole {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &blackhole{ln: ln, cut: make(chan struct{})}
	var mu sync.Mutex
	var conns []net.Conn
	var wg sync.WaitGroup
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				_ = in.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, in, out)
			mu.Unlock()
			wg.Go(func() { b.relay(out, in) })
			wg.Go(func() { b.relay(in, out) })
		}
	})
	return b
}

// relay copies src to dst until cut, then swallows src.
func (b *blackhole) relay(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			return
		}
		select {
		case <-b.cut:
			continue
		default:
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return
		}
	}
}

// cutNow makes the relayed host dead to its peers.
func (b *blackhole) cutNow() { b.once.Do(func() { close(b.cut) }) }

// addr is the relay's address as a libp2p TCP multiaddr.
func (b *blackhole) addr(t *testing.T) ma.Multiaddr {
	t.Helper()
	a, err := manet.FromNetAddr(b.ln.Addr())
	if err != nil {
		t.Fatal(err)
	}
	return a
}
