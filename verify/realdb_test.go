package verify

import (
	"archive/tar"
	"compress/gzip"
	"encoding/base64"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

// realDB is a real Arch core.db (Feb 2025): every entry carries %PGPSIG%.
const realDB = "../store/repodb/testdata/arch-core-2025-02.db" // one copy, beside the parser

// realSignatures returns filename → decoded %PGPSIG% of every db entry.
func realSignatures(t *testing.T) map[string][]byte {
	t.Helper()
	f, err := os.Open(realDB)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	sigs := map[string][]byte{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return sigs
		}
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(h.Name, "/desc") {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		desc := descFields(string(b))
		sig, err := base64.StdEncoding.DecodeString(desc["%PGPSIG%"])
		if err != nil {
			t.Fatalf("%s: %%PGPSIG%%: %v", h.Name, err)
		}
		sigs[desc["%FILENAME%"]] = sig
	}
}

// descFields reads the first value of each %FIELD% of a desc file.
func descFields(s string) map[string]string {
	out := map[string]string{}
	lines := strings.Split(s, "\n")
	for i := 0; i+1 < len(lines); i++ {
		if strings.HasPrefix(lines[i], "%") && strings.HasSuffix(lines[i], "%") {
			out[lines[i]] = lines[i+1]
		}
	}
	return out
}

// TestRealDBSignatures parses every real %PGPSIG% of an Arch core.db and
// resolves its signer in the real keyring as of the db's date: every
// signature is well-formed with an allowed hash, and the verdicts are only
// the ones a 2023 keyring can give for 2025 signatures.
func TestRealDBSignatures(t *testing.T) {
	t.Parallel()
	sigs := realSignatures(t)
	if len(sigs) != 265 {
		t.Fatalf("%d entries, want 265", len(sigs))
	}
	var kr *Keyring
	if _, err := os.Stat(archKeyringDir + "/archlinux.gpg"); err == nil {
		if kr, err = LoadKeyring(archKeyringDir); err != nil {
			t.Fatal(err)
		}
	}
	dbTime := time.Date(2025, 2, 15, 0, 0, 0, 0, time.UTC)
	verdicts := map[string]int{}
	for name, b := range sigs {
		sig, err := ParseSignature(b)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if sig.CreationTime.After(dbTime.AddDate(0, 1, 0)) {
			t.Errorf("%s: signature made %s, after the db", name, sig.CreationTime)
		}
		if kr == nil {
			continue
		}
		_, err = kr.findSigner(sig, dbTime)
		verdicts[Reason(err)]++
	}
	if kr == nil {
		t.Skip("signatures parsed; archlinux-keyring not installed for the signer check")
	}
	for r := range verdicts {
		if r != "" && r != "unknown-key" && r != "expired-key" && r != "untrusted-key" {
			t.Errorf("verdict %q on a real Arch signature", r)
		}
	}
	if verdicts[""] < len(sigs)/2 {
		t.Errorf("only %d of %d real signatures have a valid signer: %v", verdicts[""], len(sigs), verdicts)
	}
	t.Logf("signers as of %s: %v", dbTime.Format(time.DateOnly), verdicts)
}
