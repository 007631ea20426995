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
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/flocon/flocon/node/nodetest"
	"github.com/flocon/flocon/store"
	"github.com/flocon/flocon/verify"
)

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
	<-pendings[0].Done() // readers finish once the bytes are proven; the blob is published just after
	assertStored(t, st, pkg, pkg.sig)
	if reqs := m.requests(pkg.name); len(reqs) != 1 {
		t.Errorf("upstream GETs = %d, want 1", len(reqs))
	}
}

// TestFetchJoinerBuildsNoVerifier: a client joining a download in flight
// gets it at once, without a verifier of its own — its first byte waits
// for nothing — even with a signature that would not even parse: the
// running download's verifier decides for every client, as for a stored
// blob.
func TestFetchJoinerBuildsNoVerifier(t *testing.T) {
	t.Parallel()
	pkg := newTestPkg(t, "qux-1.0-1-x86_64.pkg.tar.zst", 64<<10, testKeyring(t).packager)
	m := newFakeMirror(t, mirrorMode{}, map[string][]byte{pkg.name: pkg.data})
	m.gate = make(chan struct{})
	n, st := newTestNode(t, []string{m.template()})
	leader, err := n.Fetch(t.Context(), "core", "x86_64", pkg.expect(verify.SigRequired, true))
	if err != nil || leader == nil {
		close(m.gate)
		t.Fatalf("leader Fetch = %v, %v", leader, err)
	}
	garbled := pkg.expect(verify.SigRequired, true)
	garbled.Signature = []byte("not a signature")
	if _, err := verify.NewVerifier(nil, garbled); err == nil {
		t.Fatal("the garbled signature parses: the test proves nothing")
	}
	joiner, err := n.Fetch(t.Context(), "core", "x86_64", garbled)
	close(m.gate)
	if err != nil || joiner != leader {
		t.Fatalf("joiner Fetch = %p, %v; want the running download %p", joiner, err, leader)
	}
	if b, err := readPending(t, joiner); err != nil || !bytes.Equal(b, pkg.data) {
		t.Fatalf("joiner read %d bytes, %v", len(b), err)
	}
	<-leader.Done()
	assertStored(t, st, pkg, pkg.sig)
}

// TestFetchDigestMismatch: a lying mirror's bytes are never released
// whole, for a small body held in memory as for one in a temp file.
func TestFetchDigestMismatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		size       int
		secondMode mirrorMode
		wantErr    error
	}{
		{"every mirror sends bad bytes", 128 << 10, mirrorMode{corrupt: true}, verify.ErrDigestMismatch},
		{"second mirror is good", 128 << 10, mirrorMode{}, nil},
		{"every mirror sends bad bytes, body past memory", store.DefaultMemoryBody + 1, mirrorMode{corrupt: true}, verify.ErrDigestMismatch},
		{"second mirror is good, body past memory", store.DefaultMemoryBody + 1, mirrorMode{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pkg := newTestPkg(t, "qux-1.0-1-x86_64.pkg.tar.zst", tt.size, testKeyring(t).packager)
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
	junk    int // bytes of garbage sent after the data
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
	if f.junk > 0 {
		data = append(bytes.Clone(data), bytes.Repeat([]byte{'j'}, f.junk)...)
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
			n.peers = func(context.Context, cid.Cid) ([]source, <-chan source) {
				out := make([]source, len(fakes))
				for i, f := range fakes {
					out[i] = f
				}
				return out, nil
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

// A peer that sends the right bytes and then more (or announced a larger
// size) is banned, and the download completes from the verified bytes
// without asking the mirror.
func TestFetchPeerOverrun(t *testing.T) {
	t.Parallel()
	pkg := newTestPkg(t, "overrun-1.0-1-x86_64.pkg.tar.zst", 64<<10, testKeyring(t).packager)
	m := newFakeMirror(t, mirrorMode{}, map[string][]byte{pkg.name: pkg.data})
	n, st := newTestNode(t, []string{m.template()})
	liar := &fakePeer{id: "peerJ", data: pkg.data, junk: 4096}
	n.peers = func(context.Context, cid.Cid) ([]source, <-chan source) { return []source{liar}, nil }
	var mu sync.Mutex
	var bans []peer.ID
	n.ban = func(p peer.ID, _ string, _ Evidence) {
		mu.Lock()
		defer mu.Unlock()
		bans = append(bans, p)
	}
	got, err := fetchAndRead(t, n, pkg.expect(verify.SigRequired, true))
	if err != nil {
		t.Fatalf("download: %v", err)
	}
	if !bytes.Equal(got, pkg.data) {
		t.Fatal("reader got other bytes than the package")
	}
	assertStored(t, st, pkg, pkg.sig)
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(bans, []peer.ID{"peerJ"}) {
		t.Errorf("bans = %v, want [peerJ]", bans)
	}
	if reqs := m.requests(pkg.name); len(reqs) != 0 {
		t.Errorf("mirror asked %d times; the verified bytes were complete", len(reqs))
	}
}

// BenchmarkFetchMirror measures a cold miss end to end: GET from a local
// mirror, sha256 + signature check in the same pass, temp file, commit.
func BenchmarkFetchMirror(b *testing.B) {
	const size = 32 << 20
	k := nodetest.SharedKeys(b)
	keys := &testKeys{packager: k.Packager, stranger: k.Stranger, keyring: k.Keyring}
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

// A db entry that names another package's validly signed bytes (an unsigned
// db lying, a downgrade) is refused: the .PKGINFO must match the name.
func TestFetchRefusesRenamedPackage(t *testing.T) {
	t.Parallel()
	real := newTestPkg(t, "hello-1.0-1-x86_64.pkg.tar.zst", 64<<10, testKeyring(t).packager)
	renamed := real
	renamed.name = "renamedpkg-1.0-1-x86_64.pkg.tar.zst"
	m := newFakeMirror(t, mirrorMode{}, map[string][]byte{renamed.name: renamed.data})
	n, st := newTestNode(t, []string{m.template()})
	_, err := fetchAndRead(t, n, renamed.expect(verify.SigRequired, true))
	if !errors.Is(err, verify.ErrIdentityMismatch) {
		t.Fatalf("err = %v, want verify.ErrIdentityMismatch", err)
	}
	if st.Has(real.cid) {
		t.Error("the renamed package was stored")
	}
	// Under its own name the same bytes are accepted, and the stored row
	// carries the proven identity for the gateway to check.
	m2 := newFakeMirror(t, mirrorMode{}, map[string][]byte{real.name: real.data})
	n2, st2 := newTestNode(t, []string{m2.template()})
	if _, err := fetchAndRead(t, n2, real.expect(verify.SigRequired, true)); err != nil {
		t.Fatalf("download under its own name: %v", err)
	}
	info, err := st2.Info(real.cid)
	if err != nil || info.Identity != "hello-1.0-1-x86_64" {
		t.Fatalf("stored identity = %q, %v; want hello-1.0-1-x86_64", info.Identity, err)
	}
}
