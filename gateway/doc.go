// Package gateway is the HTTP side pacman talks to: the mirror layout
// GET|HEAD /{repo}/os/{arch}/{file}. Repo databases come from the upstream
// mirrors with conditional GET; packages and their .sig come from the store,
// or from one shared, verified download (Fetcher) that every waiting client
// streams from as it grows. Nothing unverified is ever served complete.
//
//	g, err := gateway.New(gateway.Config{Store: s, Fetcher: n, Repos: repos})
//	http.ListenAndServe("127.0.0.1:19433", g)
//
// The gateway declares the interface it consumes (Fetcher); cmd/flocon passes
// a *node.Node.
package gateway
