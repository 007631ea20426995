// Package flocon is a peer-to-peer, content-addressed cache of Arch Linux
// packages. Every machine runs one daemon (cmd/flocon); pacman uses it as its
// first mirror. The daemon finds each package on another machine of the LAN
// or on a real mirror, proves with the Arch keyring that the bytes are the
// ones Arch signed, and only then serves them.
//
// Goals, in priority order:
//
//  1. Integrity: nothing unverified is ever served, to pacman or to a peer,
//     and nothing unverified enters the store. A peer that lies is banned.
//  2. No new trust: the Arch keyring and pacman's own trust rules decide.
//  3. Each package crosses the Internet once per LAN.
//  4. Speed: serving from the store runs at disk speed.
//
// Layout (imports point down only):
//
//	cmd/flocon   flags, config, env → wiring; CLI subcommands via the admin socket
//	gateway      the pacman mirror layout over HTTP; declares the Fetcher it needs
//	node         libp2p host, discovery, blob protocol, bans; upstream mirrors
//	store        blobs named by CID on disk, badger index, in-flight downloads
//	store/repodb parser of pacman sync databases
//	verify       sha256/CID and OpenPGP checks with pacman's trust model
//	test/e2e     real binary, real pacman, network namespaces
package flocon
