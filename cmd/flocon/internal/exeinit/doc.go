// Package exeinit drops the executable's cached pages before the large
// packages initialise, for `flocon serve` (exeinit.go; Linux on amd64 and
// arm64, elsewhere it does nothing).
package exeinit
