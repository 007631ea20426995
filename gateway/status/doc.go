// Package status is the operator's view of a flocon daemon: an HTML page
// at GET / (server-rendered, no JavaScript, refreshed every few seconds),
// its JSON twin at GET /status.json, and the Prometheus metrics derived
// from the same numbers, so page and /metrics never disagree.
//
// The page is fed through [Source], a one-method interface that
// cmd/flocon implements over the node, the store and the keyring; the
// gateway adds its own counters ([Served]) and mounts the [Page] on its
// own address:
//
//	page, err := status.New(status.Config{Source: src, Served: gw.Served, Registry: reg})
//	mux.Handle("GET /{$}", page)
//	mux.Handle("GET /status.json", page)
//
// What it shows is what the gateway would give anyone who can reach it
// anyway, plus the peer and ban tables: no file-system path, no mirror
// credentials, no private key material.
package status
