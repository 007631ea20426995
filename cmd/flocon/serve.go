package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
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
	log := o.logger(os.Stderr)
	repos, err := o.gatewayRepos()
	if err != nil {
		return err
	}
	mirrors, err := o.upstream()
	if err != nil {
		return err
	}
	kr, repoKeyrings, err := o.loadKeyrings(log)
	if err != nil {
		return err
	}
	st, err := store.Open(store.Config{
		Dir: o.dataDir, Logger: log.With("component", "store"),
		KeepVersions: o.keepVersions, MaxBytes: o.maxSize,
	})
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	defer func() {
		if err := st.Close(); err != nil {
			log.Error("store close failed", "err", err)
		}
	}()
	n, err := node.New(node.Config{
		Store: st, Keyring: kr, RepoKeyrings: repoKeyrings, Mirrors: mirrors,
		Logger: log.With("component", "node"),
		P2P:    !o.noP2P, DataDir: o.dataDir, ListenAddrs: o.p2pListen, Bootstrap: o.bootstrap,
		MDNS: !o.noMDNS, ShareDirs: o.share,
		PSKFile: o.pskFile, AllowPeers: o.allowPeers, BlobStreamsPerPeer: o.blobStreams,
		PeerBytesPerSec: o.peerRate, HaveTimeout: o.haveTimeout,
	})
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	started := time.Now()
	g, err := gateway.New(gateway.Config{
		Store: st, Fetcher: n, Repos: repos, Logger: log.With("component", "gateway"), DBMaxAge: o.dbMaxAge,
		Registry: reg,
		Status: &statusSource{n: n, st: st, keyring: func() *verify.Keyring { return kr }, keyringDir: o.keyring,
			loadedAt: started, quota: o.maxSize, p2p: !o.noP2P, started: started},
	})
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", o.listen)
	if err != nil {
		return fmt.Errorf("gateway listen: %w", err)
	}
	adminLn, err := listenAdmin(o.adminSocketPath())
	if err != nil {
		ln.Close()
		return err
	}
	srv := &http.Server{Handler: g, ReadHeaderTimeout: readHeaderTimeout, // no WriteTimeout: big downloads
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	admin := &http.Server{ReadHeaderTimeout: readHeaderTimeout, Handler: newAdminMux(adminInfo{
		listen: ln.Addr().String(), dataDir: o.dataDir, socket: o.adminSocketPath(), p2p: !o.noP2P,
		repos: repos, mirrors: mirrors, started: started,
		storeStats: func() (any, error) { return st.Stats(), nil },
		identity:   n.ID,
		metrics:    promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
	}, n)}

	eg, ctx := errgroup.WithContext(ctx)
	eg.Go(func() error { return st.Run(ctx) })
	eg.Go(func() error { return n.Run(ctx) })
	eg.Go(func() error { return serveHTTP(srv, ln) })
	eg.Go(func() error { return serveHTTP(admin, adminLn) })
	eg.Go(func() error { return shutdownOnDone(ctx, log, srv, admin) })
	eg.Go(func() error { return logPeersOnSignal(ctx, n) })
	log.Info("flocon serving", "listen", ln.Addr().String(), "dataDir", o.dataDir,
		"adminSocket", o.adminSocketPath(), "p2p", !o.noP2P, "mirrors", len(mirrors.Default), "repos", len(repos))
	err = eg.Wait()
	log.Info("flocon stopped")
	return err
}

func serveHTTP(srv *http.Server, ln net.Listener) error {
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
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

// logPeersOnSignal logs the peer table on SIGUSR1.
func logPeersOnSignal(ctx context.Context, n *node.Node) error {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGUSR1)
	defer signal.Stop(ch)
	for {
		select {
		case <-ch:
			n.LogPeers()
		case <-ctx.Done():
			return nil
		}
	}
}

// loadKeyrings loads the main keyring and each custom repo's own one.
// Without an explicit --keyring, a machine with no archlinux-keyring still
// runs (zero config works) and refuses every signed package, saying why.
func (o *options) loadKeyrings(log *slog.Logger) (*verify.Keyring, map[string]*verify.Keyring, error) {
	kr, err := verify.LoadKeyring(o.keyring)
	if err != nil && o.keyring == verify.DefaultKeyringDir() {
		log.Warn("no Arch keyring found: every signed package will be refused until archlinux-keyring is installed",
			"keyring", o.keyring, "err", err)
		kr, err = verify.EmptyKeyring(), nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%w (package signatures are checked against it: install archlinux-keyring "+
			"or point --keyring / FLOCON_KEYRING at a directory with NAME.gpg and NAME-trusted)", err)
	}
	per := map[string]*verify.Keyring{}
	for _, rc := range o.repos {
		if rc.Keyring == "" {
			continue
		}
		k, err := verify.LoadKeyring(rc.Keyring)
		if err != nil {
			return nil, nil, fmt.Errorf("repo %s: %w", rc.Name, err)
		}
		per[rc.Name] = k
	}
	return kr, per, nil
}
