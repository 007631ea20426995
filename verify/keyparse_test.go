package verify

import (
	"bytes"
	"crypto"
	"fmt"
	"log/slog"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// TestParseKeysOddSignatures: a key carrying a signature of a type that does
// not belong after a user ID (go-crypto refuses the whole key; gpg ignores
// the signature, see D4DE5ABD... in the real keyring) is still read, and a
// key that cannot be used at all is still listed (Keys says untrusted).
func TestParseKeysOddSignatures(t *testing.T) {
	t.Parallel()
	e, err := newKey("odd", cfgAt(fixtureNow.AddDate(0, -1, 0)))
	if err != nil {
		t.Fatal(err)
	}
	id := e.PrimaryKey.KeyId
	odd := &packet.Signature{Version: 4, SigType: packet.SigTypeDirectSignature, PubKeyAlgo: e.PrimaryKey.PubKeyAlgo,
		Hash: crypto.SHA256, CreationTime: fixtureNow.AddDate(0, -1, 0), IssuerKeyId: &id}
	if err := odd.SignDirectKeyBinding(e.PrimaryKey, e.PrivateKey, cfgAt(fixtureNow.AddDate(0, -1, 0))); err != nil {
		t.Fatal(err)
	}
	ident := e.Identities[uidOf(e)]
	ident.Signatures = append(ident.Signatures, odd)
	var good bytes.Buffer
	if err := e.Serialize(&good); err != nil {
		t.Fatal(err)
	}
	// a primary key and a user ID without any self-signature: unusable
	var bare bytes.Buffer
	if err := e.PrimaryKey.Serialize(&bare); err != nil {
		t.Fatal(err)
	}
	if err := ident.UserId.Serialize(&bare); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		data     []byte
		readable bool
	}{
		{"wrong signature type after user id", good.Bytes(), true},
		{"no self-signature", bare.Bytes(), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			keys, err := parseKeys(tt.data, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatalf("parseKeys: %v", err)
			}
			if len(keys) != 1 || keys[0].fpr != fmt.Sprintf("%X", e.PrimaryKey.Fingerprint) {
				t.Fatalf("keys %+v", keys)
			}
			if (keys[0].entity != nil) != tt.readable || keys[0].uid != uidOf(e) {
				t.Fatalf("entity %v uid %q, want readable %v", keys[0].entity != nil, keys[0].uid, tt.readable)
			}
		})
	}
}
