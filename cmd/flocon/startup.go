package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/flocon/flocon/node"
)

// Start-up checks of `flocon serve`: everything that can be refused is
// refused before the daemon says it is serving, in words that say what to
// change.

const lockFile = "flocon.lock"

// lockDataDir takes an exclusive lock on $DATA/flocon.lock for the life of
// the process: a second daemon on the same data dir fails at once (the lock
// goes with the process, so a crash leaves nothing stale).
func lockDataDir(dataDir string) (unlock func(), err error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir %s: %w", dataDir, err)
	}
	path := filepath.Join(dataDir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data dir %s: %w", dataDir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("data dir %s: %w (stop it, or give this one its own --data-dir)", dataDir, errDaemonRunning)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

// probeP2PPorts binds each fixed TCP and UDP port of the p2p listen
// addresses once, without SO_REUSEPORT, and lets it go. libp2p binds its TCP
// ports with SO_REUSEPORT, so a second daemon would otherwise share the port
// with the first without a word; a plain bind fails while anyone holds it.
func probeP2PPorts(addrs []string) error {
	var errs []error
	for _, s := range addrs {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			continue // node.New says what is wrong with it
		}
		if err := probeAddr(a); err != nil {
			errs = append(errs, fmt.Errorf("p2p listen %s: port in use (another flocon daemon, or another program): "+
				"stop it, or choose another port with --p2p-listen: %w", s, err))
		}
	}
	return errors.Join(errs...)
}

func probeAddr(a ma.Multiaddr) error {
	if _, err := a.ValueForProtocol(ma.P_QUIC_V1); err == nil {
		a = a.Decapsulate(ma.StringCast("/quic-v1"))
	}
	network, host, err := manet.DialArgs(a)
	if err != nil || strings.HasSuffix(host, ":0") {
		return nil // not a fixed TCP/UDP port: nothing to collide with
	}
	switch network {
	case "tcp", "tcp4", "tcp6":
		ln, err := net.Listen(network, host)
		if err != nil {
			return err
		}
		return ln.Close()
	case "udp", "udp4", "udp6":
		pc, err := net.ListenPacket(network, host)
		if err != nil {
			return err
		}
		return pc.Close()
	}
	return nil
}

// warnListen says so when the gateway is reachable from other machines.
func warnListen(log *slog.Logger, listen string) {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return // the listener reports it
	}
	if host == "localhost" {
		return
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return
	}
	log.Warn("the gateway listens beyond this machine: anyone who reaches this address can use it as a mirror "+
		"(the default 127.0.0.1:19433 is loopback only)", "listen", listen)
}

// logMirrors says which mirrors are used and where the list came from, and
// warns about templates that cannot reach every repository.
func logMirrors(log *slog.Logger, m node.Mirrors, source string) {
	log.Info("upstream mirrors", "source", source, "count", len(m.Default), "mirrors", m.Default)
	for _, tpl := range m.Default {
		if !strings.Contains(tpl, "$repo") {
			log.Warn("mirror URL has no $repo: every repository is fetched from the same path, "+
				"so all but one will 404 (use …/$repo/os/$arch)", "mirror", tpl)
		}
	}
	for repo, tpls := range m.PerRepo {
		log.Info("repository mirrors", "repo", repo, "mirrors", tpls)
	}
}
