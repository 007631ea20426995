package main

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/flocon/flocon/store/repodb"
	"github.com/flocon/flocon/verify"
)

// errRefused is returned after the verdict was printed, so that the exit
// status is 1 without repeating the reason.
var errRefused = errors.New("package refused")

type verifyOpts struct {
	sig, db, keyring, policy, at string
	json                         bool
}

// verifyVerdict is the printed (and --json) outcome of flocon verify.
type verifyVerdict struct {
	File        string `json:"file"`
	Valid       bool   `json:"valid"`
	Reason      string `json:"reason,omitempty"`
	Error       string `json:"error,omitempty"`
	SHA256      string `json:"sha256,omitempty"`
	CID         string `json:"cid,omitempty"`
	Size        int64  `json:"size,omitempty"`
	Fingerprint string `json:"fingerprint,omitempty"` // the first signer
	UID         string `json:"uid,omitempty"`
	SubKey      string `json:"subkey,omitempty"`
	// Signers lists every signature's signer when the .sig holds several
	// (all were checked and valid).
	Signers []verify.Signer `json:"signers,omitempty"`
	At      string          `json:"at,omitempty"` // the --at instant, when given
}

func newVerifyCmd() *cobra.Command {
	var o verifyOpts
	cmd := &cobra.Command{
		Use:   "verify FILE",
		Short: "Verify a package file as the daemon would (signature, trust, digest, identity)",
		Long: "Verify a package with pacman's trust rules against the Arch keyring and print the verdict.\n" +
			"The signature is --sig, else the db's %PGPSIG% (--db), else FILE.sig. A file with an entry in\n" +
			"--db must match its %SHA256SUM%; its .PKGINFO must always match its file name.\n" +
			"A .sig may hold several signatures: each is checked and all must be valid, as pacman does.\n" +
			"--at checks keys and signatures at another instant (as `flocon keys --at` lists them).\n" +
			"Exit status: 0 for a valid package, 1 otherwise.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return runVerify(cmd.OutOrStdout(), args[0], o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.sig, "sig", "", "detached signature file (default: db %PGPSIG%, else FILE.sig)")
	f.StringVar(&o.db, "db", "", "sync database (core.db) holding the file's entry")
	f.StringVar(&o.keyring, "keyring", envOr("FLOCON_KEYRING", verify.DefaultKeyringDir()),
		"keyring folder with NAME.gpg, NAME-trusted, NAME-revoked (env FLOCON_KEYRING)")
	f.StringVar(&o.policy, "policy", envOr("FLOCON_SIG_POLICY", "required"),
		"signature policy: required, optional or never (env FLOCON_SIG_POLICY)")
	f.StringVar(&o.at, "at", "", "verify at this RFC 3339 time instead of now")
	f.BoolVar(&o.json, "json", false, "print JSON")
	return cmd
}

// parseAt reads an --at flag: an RFC 3339 time, or now when empty.
func parseAt(at string) (time.Time, error) {
	if at == "" {
		return time.Now(), nil
	}
	t, err := time.Parse(time.RFC3339, at)
	if err != nil {
		return time.Time{}, fmt.Errorf("--at: want an RFC 3339 time such as 2026-01-02T15:04:05Z: %w", err)
	}
	return t, nil
}

func runVerify(w io.Writer, file string, o verifyOpts) error {
	res, err := verifyFile(file, o)
	out := verifyVerdict{File: file, Valid: err == nil, Reason: verify.Reason(err), At: o.at}
	if err != nil {
		out.Error = err.Error()
	} else {
		sum, _ := verify.SHA256Of(res.CID)
		out.SHA256, out.CID, out.Size = hex.EncodeToString(sum), res.CID.String(), res.Size
		if res.Signer != nil {
			out.Fingerprint, out.UID, out.SubKey = res.Signer.Fingerprint, res.Signer.UID, res.Signer.SubKey
		}
		if len(res.Signers) > 1 {
			out.Signers = res.Signers
		}
	}
	if perr := printVerdict(w, out, o.json); perr != nil {
		return perr
	}
	if err != nil {
		return errRefused
	}
	return nil
}

func printVerdict(w io.Writer, v verifyVerdict, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return enc.Encode(v)
	}
	if !v.Valid {
		_, err := fmt.Fprintf(w, "%s: REFUSED (%s)\n  %s\n", v.File, v.Reason, v.Error)
		return err
	}
	signers := v.Signers
	if len(signers) == 0 && v.Fingerprint != "" {
		signers = []verify.Signer{{Fingerprint: v.Fingerprint, UID: v.UID, SubKey: v.SubKey}}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: VALID\n", v.File)
	if len(signers) == 0 {
		b.WriteString("  signer  none (policy allows no signature)\n")
	}
	for _, s := range signers {
		fmt.Fprintf(&b, "  signer  %s %s", s.Fingerprint, s.UID)
		if s.SubKey != "" {
			fmt.Fprintf(&b, " (subkey %s)", s.SubKey)
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "  sha256  %s\n  cid     %s\n  size    %d\n", v.SHA256, v.CID, v.Size)
	if v.At != "" {
		fmt.Fprintf(&b, "  at      %s\n", v.At)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// verifyFile builds the expectation from the flags, then streams the file
// once through a verifier.
func verifyFile(file string, o verifyOpts) (verify.Result, error) {
	policy, err := verify.ParseSigPolicy(o.policy)
	if err != nil {
		return verify.Result{}, err
	}
	at, err := parseAt(o.at)
	if err != nil {
		return verify.Result{}, err
	}
	f, err := os.Open(file)
	if err != nil {
		return verify.Result{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return verify.Result{}, err
	}
	exp := verify.Expect{Size: fi.Size(), Filename: filepath.Base(file), Policy: policy, CheckIdentity: true}
	if err := expectFromDB(&exp, o.db); err != nil {
		return verify.Result{}, err
	}
	if err := signatureFor(&exp, file, o.sig); err != nil {
		return verify.Result{}, err
	}
	var kr *verify.Keyring
	if policy != verify.SigNever {
		if kr, err = verify.LoadKeyring(o.keyring); err != nil {
			return verify.Result{}, err
		}
	}
	v, err := verify.NewVerifierAt(kr, exp, at)
	if err != nil {
		return verify.Result{}, err
	}
	defer v.Close()
	if _, err := io.Copy(v, f); err != nil && !errors.Is(err, verify.ErrSizeMismatch) {
		return verify.Result{}, fmt.Errorf("read %s: %w", file, err)
	}
	return v.Finish()
}

// expectFromDB takes the CID and %PGPSIG% of the file's db entry, if any.
func expectFromDB(exp *verify.Expect, dbPath string) error {
	if dbPath == "" {
		return nil
	}
	f, err := os.Open(dbPath)
	if err != nil {
		return err
	}
	defer f.Close()
	db, err := repodb.Parse(f)
	if err != nil {
		return fmt.Errorf("read db %s: %w", dbPath, err)
	}
	e, ok := db.ByFilename[exp.Filename]
	if !ok {
		return nil // like an old package in a cache: signature and .PKGINFO identity decide
	}
	if exp.CID, err = verify.CIDFromHex(e.SHA256); err != nil {
		return fmt.Errorf("db entry %s: %w", exp.Filename, err)
	}
	exp.Signature = e.PGPSig
	return nil
}

// signatureFor applies --sig, or FILE.sig when there is no other signature.
func signatureFor(exp *verify.Expect, file, sigPath string) error {
	if sigPath == "" && len(exp.Signature) > 0 {
		return nil
	}
	explicit := sigPath != ""
	if !explicit {
		sigPath = file + ".sig"
	}
	b, err := os.ReadFile(sigPath)
	if err != nil {
		if !explicit && errors.Is(err, os.ErrNotExist) {
			return nil // verdict: no signature (unless the policy allows it)
		}
		return fmt.Errorf("read signature: %w", err)
	}
	exp.Signature = b
	return nil
}

func newKeysCmd() *cobra.Command {
	var keyring, at string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "List the keyring's keys with pacman's verdict on each",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			now, err := parseAt(at)
			if err != nil {
				return err
			}
			kr, err := verify.LoadKeyring(keyring)
			if err != nil {
				return err
			}
			return printKeys(cmd.OutOrStdout(), kr.Keys(now), asJSON)
		},
	}
	f := cmd.Flags()
	f.StringVar(&keyring, "keyring", envOr("FLOCON_KEYRING", verify.DefaultKeyringDir()),
		"keyring folder with NAME.gpg, NAME-trusted, NAME-revoked (env FLOCON_KEYRING)")
	f.StringVar(&at, "at", "", "evaluate validity at this RFC 3339 time instead of now")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func printKeys(w io.Writer, keys []verify.KeyInfo, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return enc.Encode(keys)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FINGERPRINT\tVERDICT\tROLE\tUID")
	for _, k := range keys {
		role := "packager"
		if k.Master {
			role = "master"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", k.Fingerprint, k.Verdict, role, k.UID)
	}
	return tw.Flush()
}
