// Package e2e holds black-box tests: the built flocon binary, a local
// upstream mirror that logs requests, the real pacman client and, for the
// LAN tests, several daemons in network namespaces.
package e2e
