// Package nodetest holds test fixtures shared by node and its subpackages:
// a keyring built in code (three trusted masters, a packager they certify,
// a stranger in no keyring) and detached signatures by its keys.
//
//	keys, err := nodetest.NewKeys()
//	sig := nodetest.Sign(t, keys.Packager, data)
package nodetest
