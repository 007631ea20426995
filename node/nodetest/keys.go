package nodetest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/flocon/flocon/verify"
)

// Keys is a keyring folder built in code: three master keys
// (NAME-trusted), a packager key certified by all three, and a stranger
// key that is in no keyring.
type Keys struct {
	Packager *openpgp.Entity
	Stranger *openpgp.Entity
	Keyring  *verify.Keyring
}

var (
	keysOnce sync.Once
	keysFix  *Keys
	keysErr  error
)

// SharedKeys returns one Keys per test binary (key generation is slow).
func SharedKeys(t testing.TB) *Keys {
	t.Helper()
	keysOnce.Do(func() { keysFix, keysErr = NewKeys() })
	if keysErr != nil {
		t.Fatalf("build test keyring: %v", keysErr)
	}
	return keysFix
}

// NewKeys builds a fresh keyring.
func NewKeys() (*Keys, error) {
	dir, err := os.MkdirTemp("", "flocon-node-keyring-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir) // the keyring is loaded in memory
	cfg := &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA, Time: func() time.Time { return time.Now().Add(-time.Hour) }}
	newKey := func(name string) (*openpgp.Entity, error) {
		return openpgp.NewEntity(name, "flocon node test", name+"@example.org", cfg)
	}
	k := &Keys{}
	var masters []*openpgp.Entity
	for i := range 3 {
		m, err := newKey(fmt.Sprintf("master%d", i))
		if err != nil {
			return nil, err
		}
		masters = append(masters, m)
	}
	if k.Packager, err = newKey("packager"); err != nil {
		return nil, err
	}
	if k.Stranger, err = newKey("stranger"); err != nil {
		return nil, err
	}
	if err := certify(k.Packager, masters, cfg); err != nil {
		return nil, err
	}
	if err := writeKeyring(dir, masters, k.Packager); err != nil {
		return nil, err
	}
	if k.Keyring, err = verify.LoadKeyring(dir); err != nil {
		return nil, err
	}
	return k, nil
}

// certify signs key's user ID with every master.
func certify(key *openpgp.Entity, masters []*openpgp.Entity, cfg *packet.Config) error {
	var uid string
	for name := range key.Identities {
		uid = name
	}
	for _, m := range masters {
		if err := key.SignIdentity(uid, m, cfg); err != nil {
			return err
		}
	}
	return nil
}

// writeKeyring writes test.gpg, test-trusted and test-revoked into dir.
func writeKeyring(dir string, masters []*openpgp.Entity, packager *openpgp.Entity) error {
	var ring bytes.Buffer
	w, err := armor.Encode(&ring, openpgp.PublicKeyType, nil)
	if err != nil {
		return err
	}
	for _, e := range append(masters, packager) {
		if err := e.Serialize(w); err != nil {
			return err
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	var trusted strings.Builder
	for _, m := range masters {
		fmt.Fprintf(&trusted, "%X:4:\n", m.PrimaryKey.Fingerprint)
	}
	files := map[string][]byte{"test.gpg": ring.Bytes(), "test-trusted": []byte(trusted.String()), "test-revoked": nil}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// Sign makes a detached signature of data by key.
func Sign(t testing.TB, key *openpgp.Entity, data []byte) []byte {
	t.Helper()
	var sig bytes.Buffer
	cfg := &packet.Config{DefaultHash: 0, Time: func() time.Time { return time.Now().Add(-time.Minute) }}
	if err := openpgp.DetachSign(&sig, key, bytes.NewReader(data), cfg); err != nil {
		t.Fatalf("sign: %v", err)
	}
	return sig.Bytes()
}

// WaitFor polls cond until it holds, failing the test after 15 s.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
