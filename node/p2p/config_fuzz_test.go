package p2p

import (
	"os"
	"path/filepath"
	"testing"

	ma "github.com/multiformats/go-multiaddr"
)

// FuzzPeerSettings feeds one configured value to each parser of the p2p
// settings (--bootstrap, --p2p-listen, --allow-peer, --psk-file): each gives
// a value or an error, never a panic, and what it accepts holds.
func FuzzPeerSettings(f *testing.F) {
	f.Add("/ip4/192.0.2.1/tcp/19432/p2p/12D3KooWGzBMJpfWNgWq5j9w4oJ2XSv5aL9JmDZZd79QPdtVhiUF",
		[]byte("/key/swarm/psk/1.0.0/\n/base16/\n"+"0011223344556677889900112233445566778899001122334455667788990011\n"))
	f.Add("/ip4/0.0.0.0/udp/19432/quic-v1", []byte("/key/swarm/psk/1.0.0/\n/bin/\n0123456789abcdef0123456789abcdef"))
	f.Add("12D3KooWGzBMJpfWNgWq5j9w4oJ2XSv5aL9JmDZZd79QPdtVhiUF", []byte("/key/swarm/psk/1.0.0/\n/base64/\nAAAA\n"))
	f.Add("/dns4/example.org/tcp/1/p2p/x", []byte{})
	f.Add("/dnsaddr/bootstrap.example.org", []byte{})
	pskPath := filepath.Join(f.TempDir(), "swarm.key")
	f.Fuzz(func(t *testing.T, s string, psk []byte) {
		if infos, err := parseBootstrap([]string{s}); err == nil {
			for _, bp := range infos {
				if bp.info.ID == "" && bp.dnsaddr == nil {
					t.Fatalf("bootstrap %q: a peer with neither an ID nor a /dnsaddr name", s)
				}
			}
		}
		for _, withPSK := range []bool{false, true} {
			addrs, _, err := listenAddrs([]string{s}, withPSK)
			if err != nil {
				continue
			}
			for _, a := range addrs {
				if _, err := a.ValueForProtocol(ma.P_QUIC_V1); err == nil && withPSK {
					t.Fatalf("listen %q: quic accepted with a private network key", s)
				}
			}
		}
		if ids, err := parsePeerIDs([]string{s}); err == nil && (len(ids) != 1 || ids[0].Validate() != nil) {
			t.Fatalf("allow-peer %q: %v", s, ids)
		}
		if err := os.WriteFile(pskPath, psk, 0o600); err != nil {
			t.Fatal(err)
		}
		if key, err := loadPSK(pskPath); err == nil && len(key) != 32 {
			t.Fatalf("psk of %d bytes", len(key))
		}
	})
}
