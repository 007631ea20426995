// Package gateway is the HTTP side pacman talks to: the mirror layout
// GET|HEAD /{repo}/os/{arch}/{file}, plus GET /healthz and GET /metrics.
// Repo databases come from the upstream mirrors with conditional GET
// (If-Modified-Since, shared by concurrent clients, stale copy when every
// mirror is unreachable); packages and their .sig come from the store, or
// from one shared, verified download (Fetcher) that every waiting client
// streams from as it grows. Stored or in flight, a package is answered by
// http.ServeContent (Range, If-Range, HEAD, conditional requests). Nothing
// unverified is ever served complete: a download that fails after the
// response started cuts the connection, and a resume that would complete a
// partial copy holding thrown-away bytes gets a 416. Each write to a client
// has its own deadline (Config.WriteStall).
//
//	g, err := gateway.New(gateway.Config{Store: s, Fetcher: n, Repos: repos})
//	ln, err := gateway.Listen(ctx, "127.0.0.1:19433") // TCP_DEFER_ACCEPT: see listen.go
//	srv := &http.Server{Handler: g, ConnContext: gateway.ConnContext,
//		ReadHeaderTimeout: gateway.ServerReadHeaderTimeout, IdleTimeout: gateway.ServerIdleTimeout}
//	err = g.Serve(srv, ln) // or srv.Serve(ln): the same answers, all through net/http
//
// Served with [Gateway.Serve], plain GETs of stored packages and signatures
// on keep-alive connections are answered outside net/http's per-request
// path, everything else through it (keepalive.go, whose comment maps the
// keepalive_*.go beside it).
//
// Paths are validated before anything else (configured repo, [a-z0-9_]+
// arch, a db or package file name); nothing of a URL ever names a file.
// Errors map to one status each (statusOf): not found 404, bad bytes or
// upstream failure 502, deadline 504, busy 429 with Retry-After.
//
// The gateway declares the interface it consumes (Fetcher); cmd/flocon passes
// a *node.Node.
package gateway
