package verify

import "time"

// Keyring is a parsed Arch-style keyring folder with pacman's trust decisions.
type Keyring struct {
	// STUB: the verify implementation fills this in.
}

// KeyVerdict is the validity of one key, as gpg would report it after
// pacman-key --populate.
type KeyVerdict string

const (
	KeyValid     KeyVerdict = "valid"
	KeyMarginal  KeyVerdict = "marginal"
	KeyRevoked   KeyVerdict = "revoked"
	KeyExpired   KeyVerdict = "expired"
	KeyUntrusted KeyVerdict = "untrusted"
	KeyDisabled  KeyVerdict = "disabled"
)

// KeyInfo describes one key of the keyring.
type KeyInfo struct {
	Fingerprint string     `json:"fingerprint"`
	UID         string     `json:"uid"`
	Verdict     KeyVerdict `json:"verdict"`
	Master      bool       `json:"master"`
}

// DefaultKeyringDir is the first of /usr/share/pacman/keyrings and
// /usr/share/keyrings that exists.
func DefaultKeyringDir() string { panic("unimplemented") }

// LoadKeyring reads every NAME.gpg / NAME-trusted / NAME-revoked set in dir.
func LoadKeyring(dir string) (*Keyring, error) { panic("unimplemented") }

// Keys lists every key with its verdict at time now.
func (k *Keyring) Keys(now time.Time) []KeyInfo { panic("unimplemented") }
