package verify

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

const armorBegin = "-----BEGIN PGP PUBLIC KEY BLOCK-----"

// parseKeys reads every key of a keyring file: one or more armored blocks
// (possibly separated by text), or binary packets.
func parseKeys(data []byte, logger *slog.Logger) ([]*keyEntry, error) {
	if !bytes.Contains(data, []byte(armorBegin)) {
		return parsePackets(bytes.NewReader(data), logger)
	}
	var out []*keyEntry
	for {
		i := bytes.Index(data, []byte(armorBegin))
		if i < 0 {
			return out, nil
		}
		data = data[i:]
		block, err := armor.Decode(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("armored block: %w", err)
		}
		keys, err := parsePackets(block.Body, logger)
		if err != nil {
			return nil, err
		}
		out = append(out, keys...)
		data = data[len(armorBegin):]
	}
}

// parsePackets groups packets by primary key and parses each group. A group
// that go-crypto refuses is retried without the signatures that do not
// belong where they are (gpg ignores them too); a key that still cannot be
// parsed is kept, untrusted, so that listings stay complete.
func parsePackets(r io.Reader, logger *slog.Logger) ([]*keyEntry, error) {
	pr := packet.NewReader(r)
	var groups [][]packet.Packet
	for {
		p, err := pr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read key packets: %w", err)
		}
		if pk, ok := p.(*packet.PublicKey); ok && !pk.IsSubkey {
			groups = append(groups, nil)
		}
		if len(groups) > 0 {
			groups[len(groups)-1] = append(groups[len(groups)-1], p)
		}
	}
	out := make([]*keyEntry, 0, len(groups))
	for _, g := range groups {
		out = append(out, parseGroup(g, logger))
	}
	return out, nil
}

func parseGroup(g []packet.Packet, logger *slog.Logger) *keyEntry {
	pk := g[0].(*packet.PublicKey)
	e := &keyEntry{fpr: fmt.Sprintf("%X", pk.Fingerprint)}
	ent, err := readEntity(g)
	if err != nil {
		ent, err = readEntity(filterGroup(g))
	}
	if err != nil {
		logger.Warn("key not usable", "fingerprint", e.fpr, "err", err)
		for _, p := range g {
			if u, ok := p.(*packet.UserId); ok {
				e.uid = u.Id
				break
			}
		}
		return e
	}
	e.entity = ent
	if id := ent.PrimaryIdentity(); id != nil {
		e.uid = id.Name
	}
	return e
}

// readEntity feeds already-read packets to openpgp.ReadEntity.
func readEntity(g []packet.Packet) (*openpgp.Entity, error) {
	pr := packet.NewReader(bytes.NewReader(nil))
	for i := len(g) - 1; i >= 0; i-- {
		pr.Unread(g[i])
	}
	return openpgp.ReadEntity(pr)
}

// filterGroup drops signatures whose type does not fit their place (after a
// user ID: certifications; after a subkey: bindings) and key revocations not
// made by the key itself.
func filterGroup(g []packet.Packet) []packet.Packet {
	out := []packet.Packet{g[0]}
	primary := g[0].(*packet.PublicKey)
	var after packet.Packet = g[0]
	for _, p := range g[1:] {
		sig, ok := p.(*packet.Signature)
		if !ok {
			after = p
			out = append(out, p)
			continue
		}
		keep := false
		switch a := after.(type) {
		case *packet.UserId:
			keep = isCertType(sig.SigType) &&
				(!sig.CheckKeyIdOrFingerprint(primary) || primary.VerifyUserIdSignature(a.Id, primary, sig) == nil)
		case *packet.PublicKey:
			if a.IsSubkey {
				keep = (sig.SigType == packet.SigTypeSubkeyBinding || sig.SigType == packet.SigTypeSubkeyRevocation) &&
					primary.VerifyKeySignature(a, sig) == nil
			} else {
				keep = sig.SigType == packet.SigTypeDirectSignature ||
					(sig.SigType == packet.SigTypeKeyRevocation && primary.VerifyRevocationSignature(sig) == nil)
			}
		}
		if keep {
			out = append(out, p)
		}
	}
	return dropUnboundSubkeys(out)
}

// dropUnboundSubkeys removes subkeys left without any binding signature.
func dropUnboundSubkeys(g []packet.Packet) []packet.Packet {
	out := g[:0:0]
	for i, p := range g {
		if pk, ok := p.(*packet.PublicKey); ok && pk.IsSubkey {
			if i+1 >= len(g) {
				continue
			}
			if _, ok := g[i+1].(*packet.Signature); !ok {
				continue
			}
		}
		out = append(out, p)
	}
	return out
}

func isCertType(t packet.SignatureType) bool {
	switch t {
	case packet.SigTypeGenericCert, packet.SigTypePersonaCert, packet.SigTypeCasualCert,
		packet.SigTypePositiveCert, packet.SigTypeCertificationRevocation:
		return true
	}
	return false
}
