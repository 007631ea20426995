package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/flocon/flocon/gateway"
	"github.com/flocon/flocon/node"
	"github.com/flocon/flocon/store"
	"github.com/flocon/flocon/verify"
)

const (
	readHeaderTimeout = 10 * time.Second
	shutdownTimeout   = 10 * time.Second
	// startSettle after it serves, the daemon's start-up is over: the p2p
	// host has started its loops and made its first rounds (measured: 5 s
	// after start, 8 MiB of the executable less resident than right after
	// the host started). Then what start-up alone ran is released.
	startSettle = 5 * time.Second
)

func newServeCmd() *cobra.Command {
	cmd, _ := newServeCmdWith(defaultConfigFile, os.LookupEnv)
	return cmd
}

// newServeCmdWith is newServeCmd with its outside inputs as seams for
// tests, which also get the options the command fills in.
func newServeCmdWith(configFile string, lookupEnv func(string) (string, bool)) (*cobra.Command, *options) {
	o := &options{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the daemon: the pacman mirror on --listen and the peer-to-peer node",
		Long: "Run the daemon. Settings come from the config file (--config, default " + defaultConfigFile +
			"), then FLOCON_* environment variables (FLOCON_DATA_DIR for --data-dir, ...), then flags; later wins.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.resolve(cmd.Flags(), lookupEnv); err != nil {
				return err
			}
			o.logOut = cmd.ErrOrStderr()
			return serve(cmd.Context(), o)
		},
	}
	o.addFlags(cmd.Flags(), configFile)
	return cmd, o
}

// serve wires store, keyrings, node, gateway and admin server and runs them
// until SIGINT or SIGTERM. The store is closed last.
func serve(ctx context.Context, o *options) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	applyGCPolicy()
	logOut := newBatchWriter(o.logOut)
	if o.logOut == nil {
		logOut = newBatchWriter(os.Stderr)
	}
	defer logOut.Flush()
	log := o.logger(logOut)
	releaseStartPages(log, "init") // package initialisation ran once
	repos, err := o.gatewayRepos()
	if err != nil {
		return err
	}
	warnListen(log, o.listen)
	mirrors, err := o.upstream()
	if err != nil {
		return err
	}
	ncfg := node.Config{
		Mirrors: mirrors, Logger: log.With("component", "node"),
		P2P: !o.noP2P, DataDir: o.dataDir, ListenAddrs: o.p2pListen, Bootstrap: o.bootstrap,
		MDNS: !o.noMDNS, ShareDirs: o.share,
		PSKFile: o.pskFile, AllowPeers: o.allowPeers, BlobStreamsPerPeer: o.blobStreams,
		PeerBytesPerSec: o.peerRate, HaveTimeout: o.haveTimeout,
		WANBytesPerSec: o.wanRate, SingleSite: o.singleSite, DisableDHT: o.noDHT,
		Relay: o.relay,
	}
	if err := ncfg.Check(); err != nil { // before the slow keyring and store
		return err
	}
	unlock, err := lockDataDir(o.dataDir)
	if err != nil {
		return err
	}
	defer unlock()
	if !o.noP2P {
		if err := probeP2PPorts(o.p2pListen); err != nil {
			return err
		}
	}
	krs, err := o.loadKeyrings(log)
	if err != nil {
		return err
	}
	st, err := store.Open(store.Config{
		Dir: o.dataDir, Logger: log.With("component", "store"),
		KeepVersions: o.keepVersions, MaxBytes: o.maxSize,
	})
	if err != nil {
		return err // store.Open names the operation
	}
	defer func() {
		if err := st.Close(); err != nil {
			log.Error("store close failed", "err", err)
		}
	}()
	ncfg.Store, ncfg.Keyrings = st, krs
	n, err := node.New(ncfg)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	started := time.Now()
	g, err := gateway.New(gateway.Config{
		Store: st, Fetcher: n, Repos: repos, Logger: log.With("component", "gateway"), DBMaxAge: o.dbMaxAge,
		Registry: reg,
		Status: &statusSource{n: n, st: st, keyring: func() *verify.Keyring { return krs.For("") }, keyringDir: o.keyring,
			loadedAt: func() time.Time { return krs.Status().LoadedAt }, quota: o.maxSize, p2p: !o.noP2P, started: started},
	})
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	ln, err := gateway.Listen(ctx, o.listen)
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	adminLn, err := listenAdmin(o.adminSocketPath())
	if err != nil {
		ln.Close()
		return err
	}
	// No WriteTimeout: a download takes what the client's link needs; the
	// gateway bounds each write instead (gateway.Config.WriteStall).
	srv := &http.Server{Handler: g, ReadHeaderTimeout: gateway.ServerReadHeaderTimeout,
		ReadTimeout: gateway.ServerReadTimeout, IdleTimeout: gateway.ServerIdleTimeout,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn), ConnContext: gateway.ConnContext}
	admin := &http.Server{ReadHeaderTimeout: readHeaderTimeout, Handler: newAdminMux(adminInfo{
		listen: ln.Addr().String(), dataDir: o.dataDir, socket: o.adminSocketPath(), p2p: !o.noP2P,
		repos: repos, mirrors: mirrors, mirrorSource: o.mirrorSource, started: started,
		maxBytes: o.maxSize, keepVersions: o.keepVersions,
		storeStats: st.Stats, keyring: krs.Status, peers: n,
		metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
	})}

	eg, ctx := errgroup.WithContext(ctx)
	eg.Go(func() error { return st.Run(ctx) })
	eg.Go(func() error { return n.Run(ctx) })
	eg.Go(func() error { return serveHTTP(g.Serve(srv, ln)) })
	eg.Go(func() error { return serveHTTP(admin.Serve(adminLn)) })
	eg.Go(func() error { return shutdownOnDone(ctx, log, srv, admin) })
	eg.Go(func() error { return krs.Watch(ctx) })
	eg.Go(func() error { return onSignals(ctx, n, krs) })
	logMirrors(log, mirrors, o.mirrorSource)
	log.Info("flocon serving", "version", node.Version, "listen", ln.Addr().String(), "dataDir", o.dataDir,
		"adminSocket", o.adminSocketPath(), "p2p", !o.noP2P, "mirrors", len(mirrors.Default), "repos", len(repos))
	eg.Go(func() error { releaseWhenStarted(ctx, log, n.Started()); return nil })
	settled := time.AfterFunc(startSettle, func() { releaseStartPages(log, "start") })
	defer settled.Stop()
	err = eg.Wait()
	log.Info("flocon stopped")
	return err
}

// serveHTTP is what a server's Serve returned, nil after a shutdown.
func serveHTTP(err error) error {
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// shutdownOnDone stops the servers when ctx ends, giving requests in flight
// shutdownTimeout to finish before their connections are closed.
func shutdownOnDone(ctx context.Context, log *slog.Logger, servers ...*http.Server) error {
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	for _, srv := range servers {
		if err := srv.Shutdown(sctx); err != nil {
			log.Warn("shutdown timed out, closing connections", "err", err)
			_ = srv.Close()
		}
	}
	return nil
}

// onSignals logs the peer table on SIGUSR1; on SIGHUP (systemctl reload)
// it reads the keyrings again and logs the peer table.
func onSignals(ctx context.Context, n *node.Node, krs *node.Keyrings) error {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGUSR1, syscall.SIGHUP)
	defer signal.Stop(ch)
	for {
		select {
		case sig := <-ch:
			if sig == syscall.SIGHUP {
				_ = krs.Reload() // logged either way; a failure keeps the keyring in use
			}
			n.LogPeers()
		case <-ctx.Done():
			return nil
		}
	}
}

// loadKeyrings loads the main keyring and each custom repo's own one, and
// logs what was loaded. Without an explicit --keyring, a machine with no
// archlinux-keyring still runs (zero config works) and refuses every
// signed package, saying why.
func (o *options) loadKeyrings(log *slog.Logger) (*node.Keyrings, error) {
	repoDirs := map[string]string{}
	for _, rc := range o.repos {
		if rc.Keyring != "" {
			repoDirs[rc.Name] = rc.Keyring
		}
	}
	krs, err := node.LoadKeyrings(node.KeyringConfig{
		Dir: o.keyring, MayBeMissing: o.keyring == verify.DefaultKeyringDir(), RepoDirs: repoDirs,
		Logger: log.With("component", "keyring"),
	})
	if err != nil {
		return nil, fmt.Errorf("%w (package signatures are checked against it: install archlinux-keyring "+
			"or point --keyring / FLOCON_KEYRING at a directory with NAME.gpg and NAME-trusted)", err)
	}
	st := krs.Status()
	if st.Missing != "" {
		log.Warn("no Arch keyring found: every signed package will be refused until archlinux-keyring is installed",
			"keyring", o.keyring, "err", st.Missing)
		return krs, nil
	}
	log.Info("keyring loaded", "keyring", st.Dir, "keys", st.Keys, "valid", st.Verdicts[verify.KeyValid],
		"expired", st.Verdicts[verify.KeyExpired], "revoked", st.Verdicts[verify.KeyRevoked]+st.Verdicts[verify.KeyDisabled])
	for repo, keys := range st.Repos {
		log.Info("repository keyring loaded", "repo", repo, "keyring", repoDirs[repo], "keys", keys)
	}
	return krs, nil
}
