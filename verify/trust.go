package verify

import (
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// gpg ownertrust levels as written in NAME-trusted (gpg --export-ownertrust).
const (
	trustMarginal = 4
	trustFull     = 5 // and 6, ultimate
)

// verifyMasterCerts checks, once, every certification a master made on a
// user ID of another key, and keeps the good ones with their times so that
// verdicts can be evaluated later at any instant without crypto.
func (k *Keyring) verifyMasterCerts() {
	for _, e := range k.keys {
		if e.entity == nil || e.ownertrust > 0 {
			continue
		}
		for name, id := range e.entity.Identities {
			for _, sig := range id.Signatures {
				if !isCertType(sig.SigType) {
					continue
				}
				for _, m := range k.masters {
					if m.entity == nil || !sig.CheckKeyIdOrFingerprint(m.entity.PrimaryKey) {
						continue
					}
					if m.entity.PrimaryKey.VerifyUserIdSignature(name, e.entity.PrimaryKey, sig) != nil {
						continue
					}
					if e.certs == nil {
						e.certs = map[string][]masterCert{}
					}
					e.certs[name] = append(e.certs[name], masterCert{master: m, sig: sig})
				}
			}
		}
	}
}

// dropCertifications lets go of every user ID's list of signatures once
// verifyMasterCerts has kept the certifications that count: the verdicts
// read only certs, the self-signatures and the revocations. The lists hold
// every third-party certification of the keyring, each with go-crypto's
// parse buffers: 8.8 MiB of live heap for archlinux.gpg (164 keys), most
// of a small daemon's heap, for nothing after start.
func (k *Keyring) dropCertifications() {
	for _, e := range k.keys {
		if e.entity == nil {
			continue
		}
		for _, id := range e.entity.Identities {
			id.Signatures = nil
		}
	}
}

// Keys lists every key with its verdict at time now.
func (k *Keyring) Keys(now time.Time) []KeyInfo {
	out := make([]KeyInfo, 0, len(k.keys))
	for _, e := range k.keys {
		out = append(out, KeyInfo{
			Fingerprint: e.fpr, UID: e.uid, Verdict: k.verdict(e, now), Master: e.ownertrust > 0,
		})
	}
	return out
}

// Len is the number of keys in the keyring.
func (k *Keyring) Len() int { return len(k.keys) }

// verdict is gpg's validity for e at now after pacman-key --populate: masters
// are lsigned by the local ultimate key; other keys need enough certifying
// masters (pgp trust model, marginals-needed 3, completes-needed 1).
func (k *Keyring) verdict(e *keyEntry, now time.Time) KeyVerdict {
	if v, done := selfVerdict(e, now); done {
		return v
	}
	if e.ownertrust > 0 {
		return KeyValid
	}
	best := KeyUntrusted
	for name, certs := range e.certs {
		id := e.entity.Identities[name]
		if id.Revoked(now) || id.SelfSignature.SigExpired(now) {
			continue
		}
		switch k.uidValidity(certs, now) {
		case KeyValid:
			return KeyValid
		case KeyMarginal:
			best = KeyMarginal
		}
	}
	return best
}

// selfVerdict is what the key says of itself (and the revoked list), which
// takes precedence over certifications.
func selfVerdict(e *keyEntry, now time.Time) (KeyVerdict, bool) {
	if e.entity == nil {
		return KeyUntrusted, true
	}
	if e.entity.Revoked(now) {
		return KeyRevoked, true
	}
	selfSig, _ := e.entity.PrimarySelfSignature()
	if selfSig == nil {
		return KeyExpired, true
	}
	if e.entity.PrimaryKey.CreationTime.After(now) || selfSig.CreationTime.After(now) {
		return KeyNotYetValid, true
	}
	if e.entity.PrimaryKey.KeyExpired(selfSig, now) || sigLifetimeOver(selfSig, now) {
		return KeyExpired, true
	}
	if e.disabled {
		return KeyDisabled, true
	}
	return "", false
}

// uidValidity counts the masters whose latest statement on a user ID, as
// of now, is a live certification.
func (k *Keyring) uidValidity(certs []masterCert, now time.Time) KeyVerdict {
	latest := map[*keyEntry]*packet.Signature{}
	for _, c := range certs {
		if c.sig.CreationTime.After(now) {
			continue // not said yet at now: an earlier statement stands
		}
		if cur, ok := latest[c.master]; !ok || c.sig.CreationTime.After(cur.CreationTime) {
			latest[c.master] = c.sig
		}
	}
	var full, marginal int
	for m, sig := range latest {
		if sig.SigType == packet.SigTypeCertificationRevocation || sigLifetimeOver(sig, now) {
			continue
		}
		if v, done := selfVerdict(m, now); done && v != "" {
			continue
		}
		switch {
		case m.ownertrust >= trustFull:
			full++
		case m.ownertrust == trustMarginal:
			marginal++
		}
	}
	switch {
	case full >= k.complete || marginal >= k.marginal:
		return KeyValid
	case full+marginal > 0:
		return KeyMarginal
	}
	return KeyUntrusted
}

// sigLifetimeOver reports whether sig has a lifetime that ended before now.
// Unlike go-crypto's SigExpired it does not call a signature made after now
// expired: a clock running behind is not an expiry (package doc, Time).
func sigLifetimeOver(sig *packet.Signature, now time.Time) bool {
	if sig.SigLifetimeSecs == nil || *sig.SigLifetimeSecs == 0 {
		return false
	}
	return now.After(sig.CreationTime.Add(time.Duration(*sig.SigLifetimeSecs) * time.Second))
}
