package node

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/flocon/flocon/verify"
)

// writeKeyringFiles writes an Arch-style keyring (test.gpg, test-trusted)
// into dir the way a package upgrade does: each file renamed into place.
// master is trusted fully (gpg ownertrust 5); the other keys are listed as they are.
func writeKeyringFiles(t *testing.T, dir string, master *openpgp.Entity, others ...*openpgp.Entity) {
	t.Helper()
	var ring bytes.Buffer
	for _, e := range append([]*openpgp.Entity{master}, others...) {
		if err := e.Serialize(&ring); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string][]byte{
		"test.gpg":     ring.Bytes(),
		"test-trusted": fmt.Appendf(nil, "%X:5:\n", master.PrimaryKey.Fingerprint),
	}
	for name, b := range files {
		tmp := filepath.Join(dir, "."+name+".new")
		if err := os.WriteFile(tmp, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
}

// newCertifiedKey is a packager key whose user ID master certified.
func newCertifiedKey(t *testing.T, master *openpgp.Entity) *openpgp.Entity {
	t.Helper()
	cfg := &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA, Time: func() time.Time { return time.Now().Add(-time.Hour) }}
	e, err := openpgp.NewEntity("new packager", "", "new@example.org", cfg)
	if err != nil {
		t.Fatal(err)
	}
	for uid := range e.Identities {
		if err := e.SignIdentity(uid, master, cfg); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// TestKeyringReloadWhileRunning: a package signed by a packager key the
// keyring does not have yet is refused; once the keyring files are replaced
// on disk, the running node picks them up by itself and the same package
// is accepted, with no restart.
func TestKeyringReloadWhileRunning(t *testing.T) {
	t.Parallel()
	cfg := &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA, Time: func() time.Time { return time.Now().Add(-time.Hour) }}
	master, err := openpgp.NewEntity("master", "", "master@example.org", cfg)
	if err != nil {
		t.Fatal(err)
	}
	packager := newCertifiedKey(t, master)
	dir := t.TempDir()
	writeKeyringFiles(t, dir, master)

	reloaded := make(chan error, 8)
	krs, err := LoadKeyrings(KeyringConfig{Dir: dir, Debounce: 20 * time.Millisecond,
		OnReload: func(err error) { reloaded <- err }})
	if err != nil {
		t.Fatal(err)
	}
	if st := krs.Status(); st.Keys != 1 || st.Verdicts[verify.KeyValid] != 1 {
		t.Fatalf("status before = %+v", st)
	}
	pkg := newTestPkg(t, "rekey-1.0-1-any.pkg.tar.zst", 16<<10, packager)
	m := newFakeMirror(t, mirrorMode{}, map[string][]byte{pkg.name: pkg.data, pkg.name + ".sig": pkg.sig})
	n, st := newTestNode(t, []string{m.template()}, func(c *Config) { c.Keyrings = krs })

	if _, err := fetchAndRead(t, n, pkg.expect(verify.SigRequired, false)); !errors.Is(err, verify.ErrUnknownKey) {
		t.Fatalf("before the keyring upgrade: err = %v, want ErrUnknownKey", err)
	}
	if st.Has(pkg.cid) {
		t.Fatal("refused package was stored")
	}

	ctx := t.Context()
	watchDone := make(chan error, 1)
	go func() { watchDone <- krs.Watch(ctx) }()
	// The watcher may start after the files change; keep writing until a
	// reload lands (each write is a complete keyring).
	deadline := time.After(20 * time.Second)
	for krs.Status().Keys != 2 {
		writeKeyringFiles(t, dir, master, packager)
		select {
		case err := <-reloaded:
			if err != nil {
				t.Fatalf("reload: %v", err)
			}
		case <-deadline:
			t.Fatal("keyring change not picked up")
		case <-time.After(time.Second):
		}
	}
	got, err := fetchAndRead(t, n, pkg.expect(verify.SigRequired, false))
	if err != nil || !bytes.Equal(got, pkg.data) {
		t.Fatalf("after the keyring upgrade: %d bytes, err %v; want the package", len(got), err)
	}
	assertStored(t, st, pkg, pkg.sig)
}

// TestKeyringReloadKeepsGoodOnError: a broken keyring on disk never
// replaces the one in use, and the error names the file.
func TestKeyringReloadKeepsGoodOnError(t *testing.T) {
	t.Parallel()
	keys := testKeyring(t)
	dir := t.TempDir()
	writeKeyringFiles(t, dir, keys.packager)
	krs, err := LoadKeyrings(KeyringConfig{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	before := krs.For("core")
	if err := os.WriteFile(filepath.Join(dir, "test-trusted"), []byte("not a fingerprint:x:\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err = krs.Reload()
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "test-trusted")) {
		t.Fatalf("Reload of a broken keyring = %v, want an error naming the file", err)
	}
	if krs.For("core") != before {
		t.Fatal("a failed reload replaced the keyring in use")
	}
}

// TestKeyringMayBeMissing: zero configuration without archlinux-keyring
// runs with an empty keyring and says why.
func TestKeyringMayBeMissing(t *testing.T) {
	t.Parallel()
	missing := filepath.Join(t.TempDir(), "none")
	if _, err := LoadKeyrings(KeyringConfig{Dir: missing}); err == nil {
		t.Fatal("a missing explicit keyring loaded")
	}
	krs, err := LoadKeyrings(KeyringConfig{Dir: missing, MayBeMissing: true})
	if err != nil {
		t.Fatal(err)
	}
	if st := krs.Status(); st.Keys != 0 || st.Missing == "" {
		t.Fatalf("status = %+v, want no keys and a reason", st)
	}
}

// TestDebounce: a burst of changes reloads once, after the quiet time.
func TestDebounce(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		changed := make(chan struct{})
		var n atomic.Int32
		calls := func() int32 { return n.Load() }
		go func() { _ = debounce(t.Context(), changed, 2*time.Second, func() { n.Add(1) }) }()
		for range 5 {
			changed <- struct{}{}
			time.Sleep(500 * time.Millisecond)
		}
		synctest.Wait()
		if calls() != 0 {
			t.Fatalf("reloaded %d times during the burst", calls())
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if calls() != 1 {
			t.Fatalf("reloaded %d times after the burst, want 1", calls())
		}
		changed <- struct{}{}
		time.Sleep(3 * time.Second)
		synctest.Wait()
		if calls() != 2 {
			t.Fatalf("reloaded %d times after a second change, want 2", calls())
		}
	})
}
