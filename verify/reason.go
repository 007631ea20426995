package verify

import "errors"

// reasons maps each sentinel to a stable, machine-readable refusal code.
var reasons = []struct {
	err  error
	code string
}{
	{ErrDigestMismatch, "digest-mismatch"},
	{ErrSizeMismatch, "size-mismatch"},
	{ErrNoSignature, "missing-signature"},
	{ErrUnknownKey, "unknown-key"},
	{ErrUntrustedKey, "untrusted-key"},
	{ErrRevokedKey, "revoked-key"},
	{ErrDisabledKey, "disabled-key"},
	{ErrExpiredKey, "expired-key"},
	{ErrIdentityMismatch, "identity-mismatch"},
	{ErrBadFilename, "bad-filename"},
	{ErrBadSignature, "bad-signature"},
}

// Reason is the refusal code of a verification error ("bad-signature",
// "unknown-key", ...), "" for nil and "error" for anything else (I/O).
func Reason(err error) string {
	if err == nil {
		return ""
	}
	for _, r := range reasons {
		if errors.Is(err, r.err) {
			return r.code
		}
	}
	return "error"
}
